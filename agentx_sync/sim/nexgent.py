"""A local Nexgent server that behaves like the real one (PROTOCOL.md section 2).

JWTs that can expire (HTTP 401 at the handshake), agents owned by users (close
1008 for someone else's agent), one connection per agent (a newer one closes
the older with 1000 "New connection established", optionally with the real
server's defect), ``connected`` then ``initial_data``, position events with
raw positions, price batches with lower-cased addresses, pings, and a close
1000 "Connection timeout" when pongs stop.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import ssl
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from ._server import SimBase, SimConnection

__all__ = ["NexgentSimulator", "with_prices"]


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _base58(rng: random.Random, n: int = 44) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) for _ in range(n))


def with_prices(raw: dict[str, Any], price: float, price_usd: float) -> dict[str, Any]:
    """A raw position with the price and P/L fields, computed as the server does for initial_data."""
    purchase_price = raw.get("purchasePrice") or 0.0
    purchase_amount = raw.get("purchaseAmount") or 0.0
    remaining = raw.get("remainingAmount")
    holding = remaining if remaining is not None else purchase_amount
    value = price * holding
    pnl = (raw.get("realizedProfitSol") or 0.0) + value - purchase_price * holding
    cost = purchase_price * purchase_amount
    sol_usd = price_usd / price if price else 0.0
    return {
        **raw,
        "currentPrice": price,
        "currentPriceUsd": price_usd,
        "purchasePriceUsd": purchase_price * sol_usd,
        "positionValueUsd": price_usd * holding,
        "positionValueSol": value,
        "profitLossUsd": pnl * sol_usd,
        "profitLossSol": pnl,
        "profitLossPercent": pnl / cost * 100 if cost else 0.0,
        "priceChangePercent": (price - purchase_price) / purchase_price * 100 if purchase_price else 0.0,
    }


class NexgentSimulator(SimBase):
    """A Nexgent server on 127.0.0.1 for tests and demos.

    Args:
        ping_interval: seconds between server pings; a connection whose last
            pong (or client ping) is older than twice this is closed
            (1000 "Connection timeout"), checked on the ping ticks.
        price_interval: seconds between price batches (0: none; use ``send_prices()``).
        takeover_defect: emulate the real server's defect: after a takeover,
            the connection that took over gets no pings, prices or events.
        fail_initial_data: answer connections with "Failed to load initial data"
            instead of ``initial_data``.
        seed: for reproducible addresses and prices.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ping_interval: float = 30.0,
        price_interval: float = 1.5,
        takeover_defect: bool = False,
        fail_initial_data: bool = False,
        seed: int | None = None,
        max_size: int = 1 << 20,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float | None = None,
    ) -> None:
        super().__init__(
            host=host, port=port, max_size=max_size, ssl_context=ssl_context, keepalive=keepalive
        )
        self.ping_interval = ping_interval
        self.price_interval = price_interval
        self.takeover_defect = takeover_defect
        self.fail_initial_data = fail_initial_data
        self.rng = random.Random(seed)
        self.sol_usd = 150.0
        self._tokens: dict[str, tuple[str, float | None]] = {}  # jwt -> (user, expires at)
        self._agents: dict[str, str] = {}  # agent -> user
        self.positions: dict[str, dict[str, dict[str, Any]]] = {}  # agent -> id -> raw
        self.prices: dict[str, float] = {}  # token address (original case) -> SOL price
        self._live: dict[str, SimConnection] = {}  # agent -> its one connection
        self._served: set[SimConnection] = set()
        self.early_updates: list[dict[str, Any]] = []  # sent between connected and initial_data

    # -- users, tokens, agents --------------------------------------------------------

    def issue_token(self, user: str = "user-1", ttl: float | None = None) -> str:
        """A JWT-like token for ``user``, expiring after ``ttl`` seconds if given."""
        token = "eyJ." + secrets.token_urlsafe(24)
        self._tokens[token] = (user, None if ttl is None else time.monotonic() + ttl)
        return token

    def expire_token(self, token: str) -> None:
        user, _ = self._tokens[token]
        self._tokens[token] = (user, time.monotonic() - 1)

    def add_agent(self, agent_id: str | None = None, user: str = "user-1") -> str:
        agent_id = agent_id or str(uuid.uuid4())
        self._agents[agent_id] = user
        self.positions.setdefault(agent_id, {})
        return agent_id

    def authorize(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        if path.rstrip("/") != "/ws":
            return 404, "Not Found"
        grant = self._tokens.get(params.get("token", ""))
        if not params.get("agentId") or grant is None:
            return 401, "Unauthorized"
        if grant[1] is not None and time.monotonic() >= grant[1]:
            return 401, "Unauthorized"
        return 101, ""

    def credential(self, params: dict[str, str]) -> str:
        return params.get("agentId", "")

    # -- connections -----------------------------------------------------------------

    async def on_connect(self, conn: SimConnection) -> None:
        agent = conn.credential
        user = self._tokens[conn.params["token"]][0]
        if self._agents.get(agent) != user:
            await conn.ws.close(1008, "Agent not found")
            return
        previous = self._live.get(agent)
        self._live[agent] = conn
        self._served.add(conn)
        if previous is not None:
            self.spawn(previous.ws.close(1000, "New connection established"))
        conn.last_pong = time.monotonic()
        self.spawn(self._pinger(conn))
        await conn.send_json({"type": "connected", "data": {"agentId": agent, "timestamp": _now_iso()}})
        for update in self.early_updates:
            await conn.send_json({"type": "position_update", "data": update, "timestamp": _now_iso()})
        if self.fail_initial_data:
            await conn.send_json(
                {"type": "error", "data": {"message": "Failed to load initial data: database unavailable"}}
            )
            return
        await conn.send_json(
            {
                "type": "initial_data",
                "data": {"positions": self.initial_positions(agent), "timestamp": _now_iso()},
                "timestamp": _now_iso(),
            }
        )

    async def on_disconnect(self, conn: SimConnection) -> None:
        agent = conn.credential
        if conn not in self._served:
            return
        self._served.discard(conn)
        if self.takeover_defect:
            # The real server's close handler deletes the agent's entry even
            # when it already belongs to the connection that took over.
            if self._live.get(agent) is not None:
                del self._live[agent]
        elif self._live.get(agent) is conn:
            del self._live[agent]

    async def on_message(self, conn: SimConnection, raw: str | bytes, message: Any) -> None:
        if not isinstance(message, dict):
            await conn.send_json({"type": "error", "data": {"message": "Invalid message format"}})
            return
        kind = message.get("type")
        if kind == "pong":
            conn.last_pong = time.monotonic()
        elif kind == "ping":
            conn.last_pong = time.monotonic()
            await conn.send_json({"type": "pong", "timestamp": _now_iso()})
        elif kind == "subscribe":
            await conn.send_json({"type": "subscribed", "data": {"agentId": conn.credential}})

    def live(self, agent_id: str) -> SimConnection | None:
        """The connection the server currently serves ``agent_id`` on."""
        return self._live.get(agent_id)

    async def _pinger(self, conn: SimConnection) -> None:
        while conn in self._conns:
            await asyncio.sleep(self.ping_interval)
            if conn.frozen or self._live.get(conn.credential) is not conn:
                continue
            if time.monotonic() - conn.last_pong > 2 * self.ping_interval:
                await conn.ws.close(1000, "Connection timeout")
                return
            await conn.send_json({"type": "ping", "timestamp": _now_iso()})

    # -- positions and prices ---------------------------------------------------------

    def initial_positions(self, agent_id: str) -> list[dict[str, Any]]:
        out = []
        for raw in self.positions.get(agent_id, {}).values():
            price = self.prices.get(raw["tokenAddress"])
            out.append(raw if price is None else with_prices(raw, price, price * self.sol_usd))
        return out

    def open_position(
        self,
        agent_id: str,
        *,
        token_address: str | None = None,
        symbol: str = "TOKEN",
        purchase_price: float = 0.0001,
        amount: float = 1000.0,
        notify: bool = True,
    ) -> dict[str, Any]:
        """Open a position (and push ``position_created`` with the raw position)."""
        address = token_address or _base58(self.rng)
        self.prices.setdefault(address, purchase_price)
        now = _now_iso()
        raw: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "agentId": agent_id,
            "walletAddress": _base58(self.rng),
            "tokenAddress": address,
            "tokenSymbol": symbol,
            "purchaseTransactionId": str(uuid.uuid4()),
            "purchasePrice": purchase_price,
            "purchaseAmount": amount,
            "totalInvestedSol": purchase_price * amount,
            "dcaCount": 0,
            "lastDcaTime": None,
            "lowestPrice": purchase_price,
            "dcaTransactionIds": [],
            "currentStopLossPercentage": -32.0,
            "peakPrice": purchase_price,
            "lastStopLossUpdate": None,
            "remainingAmount": None,
            "takeProfitLevelsHit": 0,
            "takeProfitTransactionIds": [],
            "lastTakeProfitTime": None,
            "moonBagActivated": False,
            "moonBagAmount": None,
            "realizedProfitSol": 0.0,
            "tpBatchStartLevel": 0,
            "totalTakeProfitLevels": 4,
            "createdAt": now,
            "updatedAt": now,
        }
        self.positions.setdefault(agent_id, {})[raw["id"]] = raw
        if notify:
            self._event(agent_id, {"eventType": "position_created", "position": raw})
        return raw

    def update_position(
        self, agent_id: str, position_id: str, *, partial: bool = False, **fields: Any
    ) -> None:
        """Change wire fields of a position and push ``position_updated`` (whole, or only the change)."""
        raw = self.positions[agent_id][position_id]
        raw.update(fields, updatedAt=_now_iso())
        position = {"id": position_id, **fields} if partial else raw
        self._event(agent_id, {"eventType": "position_updated", "position": position})

    def take_profit(self, agent_id: str, position_id: str, sold: float, at_price: float) -> None:
        """Sell part of a position: remainingAmount and realizedProfitSol change."""
        raw = self.positions[agent_id][position_id]
        held = raw["remainingAmount"] if raw["remainingAmount"] is not None else raw["purchaseAmount"]
        self.update_position(
            agent_id,
            position_id,
            remainingAmount=held - sold,
            realizedProfitSol=(raw["realizedProfitSol"] or 0.0) + (at_price - raw["purchasePrice"]) * sold,
            takeProfitLevelsHit=raw["takeProfitLevelsHit"] + 1,
            lastTakeProfitTime=_now_iso(),
        )

    def close_position(self, agent_id: str, position_id: str) -> None:
        del self.positions[agent_id][position_id]
        self._event(agent_id, {"eventType": "position_closed", "positionId": position_id})

    def _event(self, agent_id: str, data: dict[str, Any]) -> None:
        async def push() -> None:
            conn = self._live.get(agent_id)
            if conn is not None:
                await conn.send_json({"type": "position_update", "data": data, "timestamp": _now_iso()})

        if self.loop is not None:
            self.call(push())

    def send_prices(self, agent_id: str, prices: dict[str, float] | None = None) -> None:
        """Push one price batch now (given prices, or a random step for every held token)."""
        self.call(self._batch(agent_id, prices))

    async def _batch(self, agent_id: str, prices: dict[str, float] | None = None) -> None:
        conn = self._live.get(agent_id)
        if conn is None:
            return
        if prices is None:
            held = {raw["tokenAddress"] for raw in self.positions.get(agent_id, {}).values()}
            prices = {a: self.prices.get(a, 0.0001) * (1 + self.rng.gauss(0, 0.01)) for a in held}
        if not prices:
            return
        self.prices.update(prices)
        updates = [
            {"tokenAddress": a.lower(), "price": p, "priceUsd": p * self.sol_usd} for a, p in prices.items()
        ]
        await conn.send_json(
            {"type": "price_update_batch", "data": {"updates": updates, "timestamp": _now_iso()}}
        )

    async def _started(self) -> None:
        if self.price_interval > 0:
            self.spawn(self._prices())

    async def _prices(self) -> None:
        while True:
            await asyncio.sleep(self.price_interval)
            for agent_id in list(self._live):
                await self._batch(agent_id)
