"""A local AgentExchange server that behaves like the real one (PROTOCOL.md section 1).

Random-walk prices for any number of symbols at a chosen rate, subscriptions
with the 10-slot limit and the server's own error codes and odd messages,
JSON pings with a disconnect when no ``{"action":"pong"}`` comes, orders that
fill or are rejected (beyond the cash or the holding, as the platform does),
and portfolio snapshots after each fill, from an average-cost account
(``_account.py``) whose figures add up.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import ssl
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from ._account import Account, quantity_for, tick_size
from ._server import SimBase, SimConnection

__all__ = ["DEFAULT_SYMBOLS", "AgentExchangeSimulator"]

DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
_START_PRICES = {"BTCUSDT": "64500", "ETHUSDT": "3400", "SOLUSDT": "150", "BNBUSDT": "580", "XRPUSDT": "0.52"}
INTERVALS = ("1m", "5m", "1h", "1d")
MAX_SUBSCRIPTIONS = 10


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def _missed_pong(conn: SimConnection, ping_sent: float) -> bool:
    return not conn.frozen and conn.last_pong < ping_sent


class AgentExchangeSimulator(SimBase):
    """An AgentExchange server on 127.0.0.1 for tests, demos and benchmarks.

    Args:
        symbols: symbol names, or a count (``SYM0000USDT``...); default: five majors.
        rate: ticker messages per second over all symbols (0: none; use ``tick()``).
        api_keys: the keys accepted; any other key gets HTTP 403.
        ping_interval: seconds between the server's ``{"type":"ping"}``.
        pong_timeout: seconds to wait for ``{"action":"pong"}`` before closing (1000).
        candle_interval: seconds between candle pushes to candle subscribers.
        fill_delay: seconds from "pending" to "filled" for placed orders.
        auto_trade: place a random order for each connected key every N seconds
            (a buy for a slice of the cash, or a sell of part of a holding).
        cash: each key's starting cash (the platform starts agents at 10,000 USDT).
        seed: for reproducible prices.
        auth_status: the HTTP status for a refused key (the real server: 403).
        max_subscriptions: subscriptions allowed per connection (the real server: 10).
        keepalive: protocol-level ping frames every N s, as uvicorn sends (see SimBase).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        symbols: Iterable[str] | int = DEFAULT_SYMBOLS,
        rate: float = 20.0,
        api_keys: Iterable[str] = ("ak_test",),
        ping_interval: float = 30.0,
        pong_timeout: float = 10.0,
        candle_interval: float = 1.0,
        fill_delay: float = 0.05,
        auto_trade: float | None = None,
        seed: int | None = None,
        max_size: int = 1 << 20,
        ssl_context: ssl.SSLContext | None = None,
        auth_status: int = 403,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        keepalive: float | None = None,
        cash: Decimal | str | int = 10_000,
    ) -> None:
        super().__init__(
            host=host, port=port, max_size=max_size, ssl_context=ssl_context, keepalive=keepalive
        )
        self.cash = Decimal(cash)
        if isinstance(symbols, int):
            symbols = [f"SYM{i:04d}USDT" for i in range(symbols)]
        self.symbols = [s.upper() for s in symbols]
        self.rate = rate
        self.api_keys = set(api_keys)
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.candle_interval = candle_interval
        self.fill_delay = fill_delay
        self.auto_trade = auto_trade
        self.auth_status = auth_status
        self.max_subscriptions = max_subscriptions
        self.rng = random.Random(seed)
        start = {s: Decimal(_START_PRICES.get(s, str(self.rng.uniform(1, 1000)))) for s in self.symbols}
        self.ticks = {s: tick_size(p) for s, p in start.items()}
        self.prices = {s: p.quantize(self.ticks[s]) for s, p in start.items()}
        self.sent_tickers = 0
        self._agents: dict[str, Account] = {}
        self._candle_open: dict[str, list[Decimal]] = {}
        self._next_symbol = itertools.cycle(self.symbols)
        self._paused = False

    # -- handshake -----------------------------------------------------------------

    def authorize(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        if path.rstrip("/") != "/ws/v1":
            return 404, "Not Found"
        if params.get("api_key") not in self.api_keys:
            return self.auth_status, "Forbidden" if self.auth_status == 403 else "Unauthorized"
        return 101, ""

    def credential(self, params: dict[str, str]) -> str:
        return params.get("api_key", "")

    def refuse_key(self, api_key: str) -> None:
        """From now on, ``api_key`` is refused at the handshake (403)."""
        self.api_keys.discard(api_key)

    def allow_key(self, api_key: str) -> None:
        self.api_keys.add(api_key)

    # -- connections -----------------------------------------------------------------

    async def on_connect(self, conn: SimConnection) -> None:
        conn.last_pong = time.monotonic()
        self._agent(conn.credential)
        self.spawn(self._pinger(conn))

    async def on_message(self, conn: SimConnection, raw: str | bytes, message: Any) -> None:
        if not isinstance(message, dict):
            await conn.send_json({"type": "error", "code": "UNKNOWN_ACTION", "message": "Invalid JSON."})
            return
        action = message.get("action")
        if action == "pong":
            conn.last_pong = time.monotonic()
        elif action in ("subscribe", "unsubscribe"):
            await self._subscription(conn, action, message)
        else:
            await conn.send_json(
                {"type": "error", "code": "UNKNOWN_ACTION", "message": f"Unknown action '{action}'."}
            )

    async def _subscription(self, conn: SimConnection, action: str, message: dict[str, Any]) -> None:
        channel = message.get("channel")
        symbol = str(message.get("symbol") or "").upper()
        interval = str(message.get("interval") or "")
        if channel == "ticker" and symbol:
            key = f"ticker:{symbol}"
        elif channel == "ticker_all":
            key = "ticker:all"
        elif channel == "candles" and symbol and interval in INTERVALS:
            key = f"candles:{symbol}:{interval}"
        elif channel in ("orders", "portfolio"):
            key = channel
        elif channel in ("ticker", "candles"):
            # The real server's message for a missing or unsupported field is this terse.
            missing = "symbol" if channel == "ticker" else ""
            await conn.send_json(
                {
                    "type": "error",
                    "code": "INVALID_CHANNEL",
                    "message": f"Channel '{channel}' requires {missing}.",
                }
            )
            return
        else:
            await conn.send_json(
                {"type": "error", "code": "INVALID_CHANNEL", "message": f"Unknown channel '{channel}'."}
            )
            return
        subs = conn.subs
        if action == "subscribe":
            if key not in subs and len(subs) >= self.max_subscriptions:
                await conn.send_json(
                    {
                        "type": "error",
                        "code": "SUBSCRIPTION_LIMIT",
                        "message": "Maximum of 10 subscriptions per connection reached.",
                    }
                )
                return
            subs.add(key)
            await conn.send_json({"type": "subscribed", "channel": key})
        else:
            subs.discard(key)
            await conn.send_json({"type": "unsubscribed", "channel": key})

    def subscriptions(self) -> list[set[str]]:
        """Each open connection's subscribed channel keys."""
        return [set(c.subs) for c in self.connections()]

    async def _pinger(self, conn: SimConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if conn.frozen:
                continue
            sent = time.monotonic()
            await conn.send_json({"type": "ping"})
            await asyncio.sleep(self.pong_timeout)
            if _missed_pong(conn, sent):
                await conn.ws.close(1000, "Pong timeout")
                return

    # -- the market --------------------------------------------------------------------

    async def _started(self) -> None:
        self.spawn(self._market())
        self.spawn(self._candles())
        if self.auto_trade:
            self.spawn(self._auto_trader())

    def pause_market(self, paused: bool = True) -> None:
        """Stop (or resume) generating ticker messages; pings continue."""
        self._paused = paused

    async def _market(self) -> None:
        if self.rate <= 0:
            return
        step = 0.01
        credit = 0.0
        while True:
            await asyncio.sleep(step)
            if self._paused:
                continue
            credit += self.rate * step
            count = int(credit)
            credit -= count
            for _ in range(count):
                await self._tick(next(self._next_symbol))

    def tick(self, symbol: str, price: str | None = None) -> None:
        """Send one ticker message now (from any thread), at ``price`` if given."""
        self.call(self._tick(symbol.upper(), price))

    async def _tick(self, symbol: str, price: str | None = None) -> None:
        if price is None:
            old, step = self.prices[symbol], self.ticks[symbol]
            new = (old * Decimal(1 + self.rng.gauss(0, 0.0005))).quantize(step, ROUND_HALF_UP)
            self.prices[symbol] = max(new, step)
        else:
            self.prices[symbol] = Decimal(price)
        self._candle_open.setdefault(symbol, []).append(self.prices[symbol])
        text = _dumps(
            {
                "channel": "ticker",
                "symbol": symbol,
                "data": {
                    "price": str(self.prices[symbol]),
                    "quantity": f"{self.rng.uniform(0.001, 2):.3f}",
                    "timestamp": _now_iso(),
                    "is_buyer_maker": self.rng.random() < 0.5,
                },
            }
        )
        one, every = f"ticker:{symbol}", "ticker:all"
        for conn in list(self._conns):
            if one in conn.subs or every in conn.subs:
                self.sent_tickers += 1
                await conn.send(text)

    async def _candles(self) -> None:
        while True:
            await asyncio.sleep(self.candle_interval)
            for conn in list(self._conns):
                for key in list(conn.subs):
                    if key.startswith("candles:"):
                        _, symbol, interval = key.split(":")
                        await conn.send(self._candle(symbol, interval))
            self._candle_open.clear()

    def _candle(self, symbol: str, interval: str) -> str:
        price = self.prices.get(symbol, Decimal("100"))
        seen = self._candle_open.get(symbol) or [price]
        return _dumps(
            {
                "channel": "candles",
                "symbol": symbol,
                "interval": interval,
                "data": {
                    "time": _now_iso(),
                    "open": str(seen[0]),
                    "high": str(max(seen)),
                    "low": str(min(seen)),
                    "close": str(seen[-1]),
                    "volume": f"{self.rng.uniform(1, 50):.4f}",
                    "is_closed": True,
                },
            }
        )

    # -- orders and the portfolio -----------------------------------------------------------

    def _agent(self, api_key: str) -> Account:
        return self._agents.setdefault(api_key, Account(self.cash))

    def account(self, api_key: str | None = None) -> Account:
        """The paper account of ``api_key`` (default: the first key)."""
        return self._agent(api_key or sorted(self.api_keys)[0])

    def place_order(
        self,
        symbol: str,
        side: str = "buy",
        quantity: str = "0.01",
        *,
        api_key: str | None = None,
        reject: str | None = None,
    ) -> str:
        """Place a market order for ``api_key`` (default: the first key); returns its id.

        It is pushed as ``pending``, then ``filled`` at the current price and
        followed by a portfolio snapshot, or ``rejected``: with ``reject`` as
        the reason when given, else when it costs more than the cash
        (``insufficient_balance``) or sells more than is held
        (``insufficient_holdings``).
        """
        key = api_key or sorted(self.api_keys)[0]
        order_id = str(uuid.uuid4())
        self.call(self._order(key, order_id, symbol.upper(), side, Decimal(quantity), reject))
        return order_id

    async def _order(
        self, key: str, order_id: str, symbol: str, side: str, qty: Decimal, reject: str | None
    ) -> None:
        base = {"order_id": order_id, "symbol": symbol, "side": side, "type": "market", "quantity": str(qty)}
        await self._push(key, {"channel": "orders", "data": {**base, "status": "pending"}})
        self.spawn(self._fill(key, base, reject))

    async def _fill(self, key: str, base: dict[str, Any], reject: str | None) -> None:
        await asyncio.sleep(self.fill_delay)
        symbol, qty = base["symbol"], Decimal(base["quantity"])
        price = self.prices.get(symbol, Decimal("100"))
        account = self._agent(key)
        fees_before = account.fees
        reject = reject or account.fill(symbol, base["side"], qty, price)
        if reject:
            await self._push(
                key,
                {"channel": "orders", "data": {**base, "status": "rejected", "rejected_reason": reject}},
            )
            return
        fee = account.fees - fees_before
        data = {
            **base,
            "status": "filled",
            "executed_price": str(price),
            "executed_quantity": str(qty),
            "fee": str(fee),
            "filled_at": _now_iso(),
            "cancelled_at": None,
            "rejected_reason": None,
            "price": None,
        }
        await self._push(key, {"channel": "orders", "data": data})
        await self._push(key, {"channel": "portfolio", "data": self.portfolio(key)})

    def portfolio(self, api_key: str) -> dict[str, str]:
        return {**self._agent(api_key).snapshot(self.prices), "timestamp": _now_iso()}

    async def _push(self, key: str, message: dict[str, Any]) -> None:
        # Like the real server: orders and portfolio go to the agent's
        # connections whether or not they subscribed.
        text = _dumps(message)
        for conn in list(self._conns):
            if conn.credential == key:
                await conn.send(text)

    async def _auto_trader(self) -> None:
        assert self.auto_trade
        while True:
            await asyncio.sleep(self.auto_trade)
            for key in sorted({c.credential for c in self._conns}):
                symbol, side, qty = self._random_order(self._agent(key))
                await self._order(key, str(uuid.uuid4()), symbol, side, qty, None)

    def _random_order(self, account: Account) -> tuple[str, str, Decimal]:
        """Sell part of a holding two times in five, else buy with 2-10 % of the cash."""
        held = sorted(account.holdings)
        if held and self.rng.random() < 0.4:
            symbol = self.rng.choice(held)
            whole = account.holdings[symbol].quantity
            part = (whole * Decimal(self.rng.choice((1, 2, 4))) / 4).quantize(Decimal("0.000001"), ROUND_DOWN)
            return symbol, "sell", part if part > 0 else whole
        symbol = self.rng.choice(self.symbols)
        notional = account.cash * Decimal(str(round(self.rng.uniform(0.02, 0.10), 4)))
        qty = quantity_for(notional, self.prices[symbol])
        return symbol, "buy", qty if qty > 0 else Decimal("0.000001")
