"""Immutable records the library hands out: market data, orders, lifecycle events.

(Longer than 500 lines on purpose: every record the library hands out, with
its dict-like access and JSON form, so that one module tells them all.)

Every record is immutable (frozen, slotted attrs classes; the two built in
bulk, Ticker and Position, are NamedTuples), so getters return them
without copying and without holding a lock. Records also read like the dicts the
platforms' own clients pass around: ``data["price"]`` and ``data.price`` are
the same value, and ``keys()``, ``get()``, ``in`` and ``to_dict()`` work.

``to_dict(json=True)`` gives the JSON-ready form of any record, for
``json.dumps``, an LLM's tool answer or a web response: decimals as exact
strings (as the wire carries them), datetimes as ISO 8601, enums as their
value, nested records as dicts, errors as their type and message.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple, TypeAlias

import attrs

from .errors import safe_str

__all__ = [
    "POSITION_FIELDS",
    "POSITION_TYPES",
    "PRICE_FIELDS",
    "Candle",
    "ClientEvent",
    "Connected",
    "ConnectionState",
    "Disconnected",
    "ErrorEvent",
    "Health",
    "Order",
    "OrderSide",
    "OrderStatus",
    "Portfolio",
    "Position",
    "PositionChange",
    "PositionEvent",
    "PositionEventType",
    "PriceBatch",
    "PriceUpdate",
    "Record",
    "Ticker",
    "camel",
    "jsonable",
]


def _meta(default: Any = 0.0) -> Any:
    """A field that is bookkeeping, not wire data: hidden from keys() and eq."""
    return attrs.field(default=default, eq=False, repr=False, metadata={"meta": True})


_KEYS: dict[type, tuple[str, ...]] = {}


def _keys(cls: type) -> tuple[str, ...]:
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = tuple(f.name for f in attrs.fields(cls) if not f.metadata.get("meta"))
    return keys


class Record:
    """Mixin: read-only mapping access over a record's wire fields (attrs fields, or ``_KEYS``)."""

    __slots__ = ()
    _aliases: ClassVar[dict[str, str]] = {}

    def keys(self) -> tuple[str, ...]:
        return _keys(type(self))

    def __getitem__(self, key: str) -> Any:
        name = self._aliases.get(key, key)
        if name in _keys(type(self)):
            return getattr(self, name)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._aliases.get(key, key) in _keys(type(self))

    def __iter__(self) -> Iterator[str]:
        return iter(_keys(type(self)))

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def to_dict(self, *, json: bool = False) -> dict[str, Any]:
        """The wire fields by name; with ``json=True``, as JSON-ready values (see the module)."""
        if json:
            return {k: jsonable(getattr(self, k)) for k in _keys(type(self))}
        return {k: getattr(self, k) for k in _keys(type(self))}


def jsonable(value: Any) -> Any:  # noqa: C901, PLR0911 - a flat switch on the value's type
    """``value`` as what ``json.dumps`` takes: str, int, float, bool, None, list, dict."""
    if value is None or type(value) in (str, int, bool):
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        if value.utcoffset() == _ZERO:
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, (Record, _TupleRecord)):
        return value.to_dict(json=True)
    if isinstance(value, BaseException):
        return {"type": type(value).__name__, "message": safe_str(value)}
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, str):  # a str subclass
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    return f"<{type(value).__name__}>"  # nothing a record holds; never a crash in json.dumps


_ZERO = timedelta(0)


class OrderStatus(enum.StrEnum):
    PENDING = "pending"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class OrderSide(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class ConnectionState(enum.StrEnum):
    """Where the IO thread is: the value ``health()["state"]`` reports."""

    NEW = "new"  # constructed, not started
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting before the next attempt
    REPLACED = "replaced"  # Nexgent: another client took this agent over
    FAILED = "failed"  # a fatal error (authentication...) ended it
    CLOSED = "closed"  # close() was called


class _TupleRecord(tuple):  # type: ignore[type-arg]
    """What the records that are tuples (Ticker, Position) share: read by name like the
    other records, equal by their data fields only, never equal to a plain tuple, not ordered.

    A subclass sets ``_DATA`` (the slice of its data fields: equality, ``keys()``,
    ``to_dict()``) and ``_INDEX`` (every name item access takes, to its index).
    """

    __slots__ = ()
    _DATA: ClassVar[slice]
    _INDEX: ClassVar[dict[str, int]]
    _NAMES: ClassVar[tuple[str, ...]]

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            data = self._DATA
            return tuple.__getitem__(self, data) == tuple.__getitem__(other, data)
        if isinstance(other, tuple):
            return False  # not NotImplemented: tuple's own == would compare the fields
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple.__getitem__(self, self._DATA))

    def __lt__(self, other: object) -> bool:
        return NotImplemented  # records are not ordered

    __le__ = __gt__ = __ge__ = __lt__

    def __getitem__(self, key: Any) -> Any:
        """``r["price"]`` (a field by name), or ``r[1]`` as for any tuple."""
        if type(key) is str:
            index = self._INDEX.get(key)
            if index is None:
                raise KeyError(key)
            return tuple.__getitem__(self, index)
        return tuple.__getitem__(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._INDEX

    def keys(self) -> tuple[str, ...]:
        """The data fields' names."""
        return self._NAMES

    def get(self, key: str, default: Any = None) -> Any:
        index = self._INDEX.get(key)
        return default if index is None else tuple.__getitem__(self, index)

    def to_dict(self, *, json: bool = False) -> dict[str, Any]:
        """The data fields by name; with ``json=True``, as JSON-ready values."""
        values = tuple.__getitem__(self, self._DATA)
        if json:
            return {k: jsonable(v) for k, v in zip(self._NAMES, values, strict=True)}
        return dict(zip(self._NAMES, values, strict=True))

    def __repr__(self) -> str:
        values = tuple.__getitem__(self, self._DATA)
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(self._NAMES, values, strict=True))
        return f"{type(self).__name__}({shown})"


class _TickerFields(NamedTuple):
    symbol: str
    price: Decimal
    quantity: Decimal | None
    timestamp: datetime | None
    is_buyer_maker: bool | None = None
    #: ``time.monotonic()`` when it arrived; ``AgentExchangeWS.price_age`` uses it.
    received_at: float = 0.0


class Ticker(_TickerFields, _TupleRecord):
    """The latest trade of a symbol (channel ``ticker``). Immutable.

    A :class:`~typing.NamedTuple`, because one is built per message (hundreds
    of thousands a second with ``ticker_all``) and a tuple builds in a quarter
    of an attrs record's time (see benchmarks/). It is a tuple of its six
    fields (``len()`` 6, iteration yields the values), and it reads like the
    other records too: ``t["price"]``, ``keys()``, ``get()``, ``"price" in t``,
    ``to_dict()``. Two tickers are equal when the trade is: ``received_at`` is
    left out (and from ``keys()``: bookkeeping, not wire data), and a ticker
    never equals a plain tuple.
    """

    __slots__ = ()
    _DATA = slice(0, 5)
    _NAMES = _TickerFields._fields[:5]
    _INDEX = {name: i for i, name in enumerate(_NAMES)}
    __repr__ = _TupleRecord.__repr__


@attrs.frozen(kw_only=True)
class Candle(Record):
    """An OHLCV candle (channel ``candles``); ``data["open_time"]`` is ``time``."""

    _aliases: ClassVar[dict[str, str]] = {"open_time": "time"}

    symbol: str
    interval: str
    time: datetime | None
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None
    is_closed: bool | None = None
    received_at: float = _meta()


@attrs.frozen(kw_only=True)
class Order(Record):
    """An order update (channel ``orders``). Unknown statuses stay plain ``str``."""

    order_id: str
    status: OrderStatus | str
    symbol: str | None = None
    side: OrderSide | str | None = None
    type: str | None = None
    quantity: Decimal | None = None
    executed_price: Decimal | None = None
    executed_quantity: Decimal | None = None
    fee: Decimal | None = None
    filled_at: datetime | None = None
    cancelled_at: datetime | None = None
    rejected_reason: str | None = None
    price: Decimal | None = None
    received_at: float = _meta()


@attrs.frozen(kw_only=True)
class Portfolio(Record):
    """A portfolio snapshot (channel ``portfolio``)."""

    total_equity: Decimal
    available_cash: Decimal | None = None
    unrealized_pnl: Decimal | None = None
    realized_pnl: Decimal | None = None
    timestamp: datetime | None = None
    roi_pct: Decimal | None = None
    received_at: float = _meta()


@attrs.frozen
class Connected(Record):
    """A connection opened (``on_connect`` callbacks and ``get_event``)."""

    url: str  # credentials masked
    at: datetime
    reconnect: bool  # False for the first connection of a start()


@attrs.frozen
class Disconnected(Record):
    """A connection ended (``on_disconnect`` callbacks and ``get_event``).

    Attributes:
        error: why it ended.
        retry_in: seconds until the next attempt, or ``None`` when the client
            will not reconnect (fatal error, takeover, close).
        messages: messages received on the connection that ended.
    """

    error: Exception | None
    retry_in: float | None
    messages: int = 0


@attrs.frozen
class ErrorEvent(Record):
    """An error, as it travels through the event queue (``get_event``)."""

    error: Exception


@attrs.frozen
class Health(Record):
    """A snapshot of a client's connection, from ``health()``.

    Attributes:
        state: where the IO thread is.
        url: the endpoint, with credentials masked.
        connected_since: when the current connection opened, or ``None``.
        reconnects: connections opened after the first one.
        messages: data messages decoded since start.
        bad_messages: messages that could not be decoded (each was logged).
        ignored_messages: messages of an unknown type or channel (tolerated).
        dropped_events: events dropped from the full ``get_event`` queue.
        dropped_callbacks: events dropped because callbacks fell behind.
        callback_errors: exceptions raised by user callbacks.
        server_errors: ``error`` messages from the server.
        last_message_age: seconds since the server last sent anything.
        last_error: the most recent error, as text.
        subscriptions: channels the server has confirmed on this connection.
        role: with ``share=``, ``"leader"`` (this process holds the connection),
            ``"follower"`` (it mirrors the leader's feed through Redis) or
            ``"starting"``; ``None`` without sharing.
        leader: with ``share=``, ``host:pid`` of the process that leads.
        lag: a follower's delay behind the leader (seconds, the last entry applied).
        lease_changes: times this process took the lead.
        resyncs: times this process loaded the leader's snapshot (the first load included).
        missed_events: messages a follower could not see (Redis down, or the
            stream trimmed past it) before it reloaded the snapshot.
        share_error: the Redis outage going on now, or ``None``.
    """

    state: ConnectionState
    url: str
    connected_since: datetime | None
    reconnects: int
    messages: int
    bad_messages: int
    ignored_messages: int
    dropped_events: int
    dropped_callbacks: int
    callback_errors: int
    server_errors: int
    last_message_age: float | None
    last_error: str | None
    subscriptions: tuple[str, ...] = ()
    role: str | None = None
    leader: str | None = None
    lag: float | None = None
    lease_changes: int = 0
    resyncs: int = 0
    missed_events: int = 0
    share_error: str | None = None


# -- Nexgent --------------------------------------------------------------------


class _PositionFields(NamedTuple):
    id: str
    token_address: str
    agent_id: str | None = None
    wallet_address: str | None = None
    token_symbol: str | None = None
    purchase_transaction_id: str | None = None
    purchase_price: Decimal | None = None
    purchase_amount: Decimal | None = None
    total_invested_sol: Decimal | None = None
    dca_count: int | None = None
    last_dca_time: datetime | None = None
    lowest_price: Decimal | None = None
    dca_transaction_ids: tuple[str, ...] = ()
    current_stop_loss_percentage: Decimal | None = None
    peak_price: Decimal | None = None
    last_stop_loss_update: datetime | None = None
    remaining_amount: Decimal | None = None
    take_profit_levels_hit: int | None = None
    take_profit_transaction_ids: tuple[str, ...] = ()
    last_take_profit_time: datetime | None = None
    moon_bag_activated: bool | None = None
    moon_bag_amount: Decimal | None = None
    realized_profit_sol: Decimal | None = None
    tp_batch_start_level: int | None = None
    total_take_profit_levels: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # The price and P/L fields (PRICE_FIELDS): what a new price of the token changes.
    current_price: Decimal | None = None
    current_price_usd: Decimal | None = None
    purchase_price_usd: Decimal | None = None
    position_value_usd: Decimal | None = None
    position_value_sol: Decimal | None = None
    profit_loss_usd: Decimal | None = None
    profit_loss_sol: Decimal | None = None
    profit_loss_percent: Decimal | None = None
    price_change_percent: Decimal | None = None


#: Position fields in record order: what the wire carries, then the price and P/L fields.
#: The one list: the camelCase keys and the Nexgent dialect's parsing table are made from it.
POSITION_FIELDS: tuple[str, ...] = _PositionFields._fields
#: Each field's type as written above (the Nexgent dialect reads the wire by it).
POSITION_TYPES: dict[str, str] = {
    name: kind.__forward_arg__ for name, kind in _PositionFields.__annotations__.items()
}
#: The price and P/L fields, last in the record.
PRICE_FIELDS: tuple[str, ...] = POSITION_FIELDS[POSITION_FIELDS.index("current_price") :]


def camel(name: str) -> str:
    """The wire's camelCase for a snake_case field name: ``token_symbol`` -> ``tokenSymbol``."""
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


class Position(_PositionFields, _TupleRecord):
    """A Nexgent position, with its price and P/L fields. Immutable.

    Attributes are snake_case; item access also takes the wire's camelCase
    names, so ``p["tokenSymbol"]`` and ``p.get("profitLossPercent")`` work as
    in Nexgent's own examples. Amounts and prices are ``Decimal``; the price
    and P/L fields are ``None`` until a price for the token is known.

    A :class:`~typing.NamedTuple` as :class:`Ticker` is, and for the same
    reason: a price batch rebuilds every position of its tokens, and a
    36-field attrs record builds ten times slower (see benchmarks/). It is a
    tuple of its fields (iteration yields the values), reads like the other
    records (``keys()``, ``get()``, ``in``, ``to_dict()``), never equals a plain
    tuple and is not ordered.
    """

    __slots__ = ()
    _DATA = slice(0, len(POSITION_FIELDS))
    _NAMES = POSITION_FIELDS
    _INDEX = {
        **{n: i for i, n in enumerate(POSITION_FIELDS)},
        **{camel(n): i for i, n in enumerate(POSITION_FIELDS)},
    }
    __repr__ = _TupleRecord.__repr__

    def __getitem__(self, key: Any) -> Any:
        """``p["tokenSymbol"]`` or ``p["token_symbol"]``, or ``p[4]`` as for any tuple."""
        return _TupleRecord.__getitem__(self, key)

    @property
    def holding(self) -> Decimal | None:
        """What is still held: ``remaining_amount`` after a take-profit, else ``purchase_amount``."""
        return self.remaining_amount if self.remaining_amount is not None else self.purchase_amount


class PositionEventType(enum.StrEnum):
    CREATED = "position_created"
    UPDATED = "position_updated"
    CLOSED = "position_closed"


@attrs.frozen
class PositionEvent(Record):
    """A position was created, updated or closed (``on_position_update``).

    Attributes:
        type: what happened.
        position_id: the position's id.
        position: the position as now cached (with recomputed P/L), or, for a
            close, as it was last cached (``None`` if it was never seen).
    """

    type: PositionEventType
    position_id: str
    position: Position | None


@attrs.frozen
class PositionChange:
    """A ``position_update`` as the Nexgent dialect decodes it: ``fields`` is the (maybe
    partial) parsed position, snake_case keys. The position book applies it."""

    type: PositionEventType
    position_id: str
    fields: dict[str, Any] | None


@attrs.frozen
class PriceUpdate(Record):
    """One token's price in a batch; ``token_address`` as the server sent it (lower-case)."""

    token_address: str
    price: Decimal
    price_usd: Decimal | None


@attrs.frozen
class PriceBatch(Record):
    """A ``price_update_batch``: applied to the cache as one state change."""

    updates: tuple[PriceUpdate, ...]
    timestamp: datetime | None
    #: Entries of the server's batch refused as malformed (the rest apply).
    refused: int = _meta(0)


#: What ``get_event()`` returns: a data record, a lifecycle event, or (Nexgent)
#: the whole list of positions after a change.
ClientEvent: TypeAlias = (
    Ticker
    | Candle
    | Order
    | Portfolio
    | PositionEvent
    | PriceBatch
    | list[Position]
    | Connected
    | Disconnected
    | ErrorEvent
)
