"""The Nexgent protocol (PROTOCOL.md section 2), sans-IO.

- ``{api_url with http->ws}/ws?token=JWT&agentId=ID``; a missing, invalid or
  expired token is refused at the handshake with 401.
- Envelopes ``{type, data?, timestamp?}``: ``connected``, ``initial_data``,
  ``position_update``, ``price_update_batch``, ``ping``, ``pong``,
  ``subscribed``, ``error``. Numbers are JSON numbers; ``tokenAddress`` in price
  updates is lower-cased while positions keep base58 case.
- Pings are answered with ``{"type":"pong","timestamp":...}``.
- Close 1008 "Agent not found" is fatal; 1000 "New connection established"
  means another client took the agent over; other closes reconnect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

import attrs

from ..errors import ProtocolError
from ..models import (
    POSITION_TYPES,
    Position,
    PositionChange,
    PositionEventType,
    PriceBatch,
    PriceUpdate,
    camel,
)
from . import ErrorMessage, Ping, Pong, Subscribed, Verdict, loads
from ._wire import (
    Endpoint,
    as_bool,
    as_dict,
    as_key,
    as_opt_dec,
    as_opt_str,
    as_opt_ts,
    as_price,
    basic_auth,
    userinfo_secrets,
    websocket_endpoint,
)

__all__ = [
    "AgentConnected",
    "InitialData",
    "NexgentDialect",
    "RefreshPolicy",
    "build_url",
    "decode",
    "encode_initial",
    "encode_prices",
    "parse_position",
]

REPLACED_REASON: Final = "New connection established"
INITIAL_DATA_FAILED: Final = "Failed to load initial data"
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)


@attrs.frozen
class AgentConnected:
    """The server's ``connected`` message."""

    agent_id: str | None


@attrs.frozen
class InitialData:
    """The full set of positions, as parsed field dicts (snake_case keys)."""

    positions: tuple[dict[str, Any], ...]


# -- positions -------------------------------------------------------------------


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise ProtocolError(f"field {name!r} is {type(value).__name__}, not an integer")


def _ids(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ProtocolError(f"field {name!r} is not a list of strings")
    return tuple(value)


def _quote(value: Any, name: str) -> Decimal | None:
    """An optional price where the server writes 0 for "unknown"."""
    price = as_opt_dec(value, name)
    if price is None or price == 0:
        return None
    if price < 0:
        raise ProtocolError(f"field {name!r} is not a price (negative)")
    return price


def _key(value: Any, name: str) -> str:
    if type(value) is int:
        return str(value)
    return as_key(value, name)


#: How each field type of :class:`~agentx_sync.models.Position` is read off the wire.
_BY_TYPE: Final[dict[str, Callable[[Any, str], Any]]] = {
    "str | None": as_opt_str,
    "Decimal | None": as_opt_dec,
    "int | None": _int,
    "datetime | None": as_opt_ts,
    "bool | None": as_bool,
    "tuple[str, ...]": _ids,
}
#: Fields read otherwise than their type says.
_SPECIAL: Final[dict[str, Callable[[Any, str], Any]]] = {
    "id": _key,
    "token_address": as_key,
    # The server writes 0 when it has no price (no feed, no purchase price): unknown.
    "current_price": _quote,
    "current_price_usd": _quote,
}
#: Wire (camelCase) name -> (field name, converter), made from Position's one field list.
_FIELDS: Final[dict[str, tuple[str, Callable[[Any, str], Any]]]] = {
    camel(name): (name, _SPECIAL.get(name) or _BY_TYPE[kind]) for name, kind in POSITION_TYPES.items()
}


def encode_initial(positions: Iterable[Position]) -> str:
    """An ``initial_data`` message holding ``positions`` with their price and P/L fields.

    ``parse_position`` reads each back as the same record (share.py's snapshots).
    """
    wire = [{camel(k): v for k, v in p.to_dict(json=True).items()} for p in positions]
    return json.dumps({"type": "initial_data", "data": {"positions": wire}})


def encode_prices(prices: Iterable[tuple[str, Decimal, Decimal | None]]) -> str:
    """A ``price_update_batch`` of ``(token_address, price, price_usd)``."""
    updates = [
        {"tokenAddress": a, "price": str(p), "priceUsd": None if u is None else str(u)} for a, p, u in prices
    ]
    return json.dumps({"type": "price_update_batch", "data": {"updates": updates}})


def parse_position(raw: Any, *, partial: bool = False) -> dict[str, Any]:
    """Validate and convert a wire position into snake_case fields.

    Only the fields present are returned (unknown ones are ignored), so a
    partial update merges cleanly. ``id`` is always required, and
    ``tokenAddress`` too unless ``partial``.

    Raises:
        ProtocolError: a field has the wrong type or value.
    """
    raw = as_dict(raw, "position")
    if "id" not in raw or (not partial and "tokenAddress" not in raw):
        raise ProtocolError("a position without 'id' or 'tokenAddress'")
    fields: dict[str, Any] = {}
    for wire, value in raw.items():
        spec = _FIELDS.get(wire)
        if spec is not None:
            name, convert = spec
            fields[name] = convert(value, wire)
    return fields


# -- decoding ---------------------------------------------------------------------

Event = AgentConnected | InitialData | PositionChange | PriceBatch | Ping | Pong | Subscribed | ErrorMessage


def _data(msg: dict[str, Any]) -> dict[str, Any]:
    return as_dict(msg.get("data"), "data")


def _connected(msg: dict[str, Any]) -> Event:
    data = msg.get("data")
    return AgentConnected(as_opt_str(data.get("agentId"), "agentId") if type(data) is dict else None)


def _initial(msg: dict[str, Any]) -> Event:
    positions = _data(msg).get("positions")
    if positions is None:
        positions = []
    if type(positions) is not list:
        raise ProtocolError("'positions' is not a list")
    return InitialData(tuple(parse_position(p) for p in positions))


def _position_update(msg: dict[str, Any]) -> Event:
    data = _data(msg)
    try:
        kind = PositionEventType(str(data.get("eventType")))
    except ValueError:
        raise ProtocolError(f"unknown position eventType {str(data.get('eventType'))[:40]!r}") from None
    if kind is PositionEventType.CLOSED:
        position_id = data.get("positionId")
        if position_id is None and type(data.get("position")) is dict:
            position_id = data["position"].get("id")
        return PositionChange(kind, _key(position_id, "positionId"), None)
    fields = parse_position(data.get("position"), partial=kind is PositionEventType.UPDATED)
    return PositionChange(kind, fields["id"], fields)


def _prices(msg: dict[str, Any]) -> Event:
    """A price batch. One bad entry is refused alone (counted in ``refused``):
    the other tokens' prices in the batch still apply. A ``priceUsd`` of 0,
    which the server sends when it has no USD price, means "unknown"."""
    data = _data(msg)
    updates = data.get("updates")
    if type(updates) is not list:
        raise ProtocolError("'updates' is not a list")
    out = []
    first: ProtocolError | None = None
    for item in updates:
        try:
            update = as_dict(item, "update")
            out.append(
                PriceUpdate(
                    as_key(update.get("tokenAddress"), "tokenAddress").lower(),
                    as_price(update.get("price"), "price"),
                    _quote(update.get("priceUsd"), "priceUsd"),
                )
            )
        except ProtocolError as exc:
            first = first or exc
    if first is not None and not out:
        raise first
    refused = len(updates) - len(out)
    return PriceBatch(tuple(out), as_opt_ts(data.get("timestamp"), "timestamp"), refused)


def _error(msg: dict[str, Any]) -> Event:
    data = msg.get("data")
    text = data.get("message") if type(data) is dict else msg.get("message")
    return ErrorMessage(text if type(text) is str else "unspecified server error")


_DECODERS: Final[dict[str, Callable[[dict[str, Any]], Event]]] = {
    "connected": _connected,
    "initial_data": _initial,
    "position_update": _position_update,
    "price_update_batch": _prices,
    "ping": lambda msg: Ping(msg.get("timestamp") if type(msg.get("timestamp")) is str else None),
    "pong": lambda msg: Pong(),
    "subscribed": lambda msg: Subscribed("agent"),
    "error": _error,
}


def decode(text: str, now: float) -> Event | None:
    """One server message as an event; ``None`` for an unknown type.

    Raises:
        ProtocolError: the message is not JSON, or a field is malformed.
    """
    msg = loads(text)
    kind = msg.get("type")
    decoder = _DECODERS.get(kind) if type(kind) is str else None
    if decoder is None:
        return None
    try:
        return decoder(msg)
    except ProtocolError as exc:
        exc.raw = text[:200]
        raise


def build_url(api_url: str, token: str, agent_id: str) -> str:
    return f"{_endpoint(api_url).url}?token={quote(token, safe='')}&agentId={quote(agent_id, safe='')}"


def _endpoint(api_url: str) -> Endpoint:
    return websocket_endpoint(api_url, "/ws", "api_url")


class RefreshPolicy:
    """When a refused token (HTTP 401) is worth asking ``token_provider`` for a new one (pure).

    Once per run of refusals: a token the provider has just handed over and
    that is refused at once ends the client. A connection that opens, or an
    attempt that fails otherwise (an outage), ends the run, so that a token
    which expired during a long outage is refreshed again.
    """

    def __init__(self) -> None:
        self._asked = False

    def refused(self, has_provider: bool) -> str | None:
        """The token was refused: ``None`` to ask the provider now, else why to give up."""
        if not has_provider:
            return "no token_provider to refresh the token"
        if self._asked:
            return "a freshly provided token was refused too"
        self._asked = True
        return None

    def reset(self) -> None:
        """The run of refusals ended (a connection opened, or an attempt failed otherwise)."""
        self._asked = False

    @staticmethod
    def check(token: object) -> str | None:
        """Why the provider's answer is not a token, or None."""
        return None if isinstance(token, str) and token else "token_provider returned no token"


class NexgentDialect:
    """Everything platform-specific about Nexgent, for the IO layer."""

    #: Answers to the client's own probes prove nothing: after a takeover the
    #: server may keep a socket that answers pings but sends nothing else.
    pong_counts_as_liveness: Final = False
    #: The data messages: decoded and applied to the cache as one batch.
    records: Final = frozenset({PriceBatch, PositionChange})

    def __init__(self, api_url: str, token: str, agent_id: str) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if not isinstance(agent_id, str) or not agent_id:
            raise ValueError("agent_id must be a non-empty string")
        self._where = _endpoint(api_url)
        self._endpoint = self._where.url
        self.token = token
        self.agent_id = agent_id

    @property
    def url(self) -> str:
        """The connection URL (it carries the JWT: never log it)."""
        return f"{self._endpoint}?token={quote(self.token, safe='')}&agentId={quote(self.agent_id, safe='')}"

    @property
    def safe_url(self) -> str:
        return f"{self._where.safe}?token=***&agentId={quote(self.agent_id, safe='')}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret this dialect holds (the key or token, and a URL's userinfo)."""
        return (self.token, quote(self.token, safe=""), *userinfo_secrets(self._where))

    @property
    def headers(self) -> list[str]:
        """Extra HTTP headers of the upgrade: Basic auth from a URL's ``user:password@``."""
        return basic_auth(self._where)

    decode = staticmethod(decode)

    def pong(self, ping: Ping, now_iso: str) -> str:
        return json.dumps({"type": "pong", "timestamp": now_iso}, separators=(",", ":"))

    def handshake_verdict(self, status: int) -> Verdict:
        return Verdict.AUTH_FAILED if status in (401, 403) else Verdict.RECONNECT

    def close_verdict(self, code: int | None, reason: str) -> Verdict:
        if code == 1008:
            return Verdict.FATAL
        if code == 1000 and reason.strip() == REPLACED_REASON:
            return Verdict.REPLACED
        return Verdict.RECONNECT
