"""Immutable records the library hands out: market data, orders, lifecycle events.

Every record is a frozen, slotted attrs class, so getters return them without
copying and without holding a lock. Records also read like the dicts the
platforms' own clients pass around: ``data["price"]`` and ``data.price`` are
the same value, and ``keys()``, ``get()``, ``in`` and ``to_dict()`` work.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

import attrs

__all__ = [
    "Candle",
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
    "PositionEvent",
    "PositionEventType",
    "PriceBatch",
    "PriceUpdate",
    "Record",
    "Ticker",
]


def _meta() -> Any:
    """A field that is bookkeeping, not wire data: hidden from keys() and eq."""
    return attrs.field(default=0.0, eq=False, repr=False, metadata={"meta": True})


_KEYS: dict[type, tuple[str, ...]] = {}


def _keys(cls: type) -> tuple[str, ...]:
    keys = _KEYS.get(cls)
    if keys is None:
        keys = _KEYS[cls] = tuple(f.name for f in attrs.fields(cls) if not f.metadata.get("meta"))
    return keys


class Record:
    """Mixin: read-only mapping access over an attrs record's wire fields."""

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

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _keys(type(self))}


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


@attrs.frozen
class Ticker(Record):
    """The latest trade of a symbol (channel ``ticker``)."""

    symbol: str
    price: Decimal
    quantity: Decimal | None
    timestamp: datetime | None
    is_buyer_maker: bool | None = None
    #: ``time.monotonic()`` when it arrived; ``AgentExchangeWS.price_age`` uses it.
    received_at: float = _meta()


@attrs.frozen
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


@attrs.frozen
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


@attrs.frozen
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


# -- Nexgent --------------------------------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@attrs.frozen
class Position(Record):
    """A Nexgent position, with its price and P/L fields.

    Attributes are snake_case; item access also takes the wire's camelCase
    names, so ``p["tokenSymbol"]`` and ``p.get("profitLossPercent")`` work as
    in Nexgent's own examples. Amounts and prices are ``Decimal``; the price
    and P/L fields are ``None`` until a price for the token is known.
    """

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
    current_price: Decimal | None = None
    current_price_usd: Decimal | None = None
    purchase_price_usd: Decimal | None = None
    position_value_usd: Decimal | None = None
    position_value_sol: Decimal | None = None
    profit_loss_usd: Decimal | None = None
    profit_loss_sol: Decimal | None = None
    profit_loss_percent: Decimal | None = None
    price_change_percent: Decimal | None = None

    @property
    def holding(self) -> Decimal | None:
        """What is still held: ``remaining_amount`` after a take-profit, else ``purchase_amount``."""
        return self.remaining_amount if self.remaining_amount is not None else self.purchase_amount


Position._aliases = {_camel(f.name): f.name for f in attrs.fields(Position) if "_" in f.name}


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
