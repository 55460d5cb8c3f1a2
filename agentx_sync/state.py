"""The state cache: the latest value of everything, under one lock.

The IO thread is its only writer and applies a whole batch of events (all
the messages of one socket read) under one acquisition, then wakes waiters
once. Readers get immutable records: single lookups read one dict entry,
which is atomic in CPython, so the hot getters do not touch the lock at all
and never slow the writer down; snapshots and waits take the lock.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any, TypeVar

from .dialects.nexgent import PositionChange, recompute
from .models import (
    Candle,
    Order,
    Portfolio,
    Position,
    PositionEvent,
    PositionEventType,
    PriceBatch,
    Ticker,
)

__all__ = ["PositionBook", "State"]

T = TypeVar("T")


class State:
    """Latest tickers and candles, the last ``max_orders`` order updates, the portfolio."""

    def __init__(self, max_orders: int = 100) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.tickers: dict[str, Ticker] = {}
        self.candles: dict[tuple[str, str], Candle] = {}
        self.orders: deque[Order] = deque(maxlen=max_orders)
        self.portfolio: Portfolio | None = None
        self.book = PositionBook()
        self._stop: Exception | None = None

    # -- writing (IO thread) ---------------------------------------------------

    def apply(self, events: Iterable[Any]) -> None:
        """Apply a batch of events as one state change and wake every waiter."""
        tickers = self.tickers
        with self.cond:
            for event in events:
                kind = type(event)
                if kind is Ticker:
                    tickers[event.symbol] = event
                elif kind is Candle:
                    self.candles[(event.symbol, event.interval)] = event
                elif kind is Order:
                    self.orders.append(event)
                elif kind is Portfolio:
                    self.portfolio = event
            self.cond.notify_all()

    def mutate(self, change: Callable[[], T]) -> T:
        """Run ``change()`` under the lock as one state change; wake waiters."""
        with self.cond:
            result = change()
            self.cond.notify_all()
            return result

    def stop_waiters(self, error: Exception | None) -> None:
        """Make current and future waits raise ``error`` (``None`` re-arms them)."""
        with self.cond:
            self._stop = error
            self.cond.notify_all()

    def clear(self) -> None:
        with self.cond:
            self.tickers.clear()
            self.candles.clear()
            self.orders.clear()
            self.portfolio = None
            self.book.clear()

    # -- reading (any thread) --------------------------------------------------

    def order(self, order_id: str) -> Order | None:
        """The latest update of an order among the last ``max_orders``."""
        with self.cond:
            return self._order(order_id)

    def _order(self, order_id: str) -> Order | None:
        for order in reversed(self.orders):
            if order.order_id == order_id:
                return order
        return None

    def order_list(self) -> list[Order]:
        with self.cond:
            return list(self.orders)

    def ticker_snapshot(self) -> dict[str, Ticker]:
        with self.cond:
            return dict(self.tickers)

    def wait(self, probe: Callable[[], T | None], timeout: float | None, what: str) -> T:
        """Block until ``probe()`` (called under the lock) returns non-None.

        Raises:
            TimeoutError: nothing came within ``timeout`` seconds.
            Exception: the error given to :meth:`stop_waiters` (closed, fatal).
        """
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        result: list[T] = []

        def ready() -> bool:
            if self._stop is not None:
                return True
            value = probe()
            if value is None:
                return False
            result.append(value)
            return True

        with self.cond:
            if not self.cond.wait_for(ready, timeout):
                raise TimeoutError(f"no {what} within {timeout} s")
            if result:
                return result[0]
            assert self._stop is not None
            # A copy: one exception instance raised in several threads would
            # share (and garble) its traceback.
            raise copy.copy(self._stop)


class PositionBook:
    """Nexgent positions and token prices. Pure; the State's lock guards it.

    Positions are kept as parsed wire fields, merged as updates arrive, and
    turned into :class:`Position` records with their P/L recomputed from the
    latest price of their token (matched case-insensitively).
    """

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
        self.records: dict[str, Position] = {}
        self.prices: dict[str, tuple[Decimal, Decimal | None]] = {}  # lower-case address
        self.loaded = False  # initial_data seen on the current connection
        self.stale = False  # kept from a connection that was lost
        self.error: Exception | None = None  # the server could not load positions
        self._early: list[PositionChange] = []

    def initial(self, positions: Iterable[dict[str, Any]]) -> list[PositionEvent]:
        """Replace every position; then replay updates that came before it."""
        self.fields = {f["id"]: dict(f) for f in positions}
        for f in self.fields.values():
            price = f.get("current_price")
            if price is not None:
                self.prices[f["token_address"].lower()] = (price, f.get("current_price_usd"))
        # The server computed these values itself: take them as they are.
        self.records = {pid: _position(f) for pid, f in self.fields.items()}
        self.loaded, self.stale, self.error = True, False, None
        early, self._early = self._early, []
        return [event for change in early if (event := self.change(change)) is not None]

    def change(self, change: PositionChange) -> PositionEvent | None:
        """Apply a created/updated/closed event (held back until initial data)."""
        if not self.loaded:
            self._early.append(change)
            return None
        pid = change.position_id
        if change.type is PositionEventType.CLOSED:
            self.fields.pop(pid, None)
            return PositionEvent(change.type, pid, self.records.pop(pid, None))
        merged = {**self.fields.get(pid, {}), **(change.fields or {})}
        if "token_address" not in merged:
            return None  # a partial update of a position never seen
        self.fields[pid] = merged
        self.records[pid] = self._build(merged)
        return PositionEvent(change.type, pid, self.records[pid])

    def price_batch(self, batch: PriceBatch) -> None:
        """Apply every price of a batch, then recompute the positions it touches."""
        touched = set()
        for update in batch.updates:
            self.prices[update.token_address] = (update.price, update.price_usd)
            touched.add(update.token_address)
        for pid, f in self.fields.items():
            if f["token_address"].lower() in touched:
                self.records[pid] = self._build(f)

    def _build(self, f: dict[str, Any]) -> Position:
        price = self.prices.get(f["token_address"].lower())
        if price is None:
            return _position(f)
        return _position({**f, **recompute(f, *price)})

    def disconnected(self) -> None:
        self.loaded = False
        self.stale = bool(self.records)
        self._early.clear()

    def clear(self) -> None:
        self.fields.clear()
        self.records.clear()
        self.prices.clear()
        self._early.clear()
        self.loaded = self.stale = False
        self.error = None


def _position(fields: dict[str, Any]) -> Position:
    # ``fields`` holds only converted, known fields (see parse_position).
    return Position(**fields)
