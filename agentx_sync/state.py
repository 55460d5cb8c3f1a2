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
from typing import Any, TypeVar

from .models import Candle, Order, Portfolio, Ticker

__all__ = ["State"]

T = TypeVar("T")


class State:
    """Latest tickers and candles, the last ``max_orders`` order updates, the portfolio."""

    def __init__(self, max_orders: int = 100) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.tickers: dict[str, Ticker] = {}
        self.candles: dict[tuple[str, str], Candle] = {}
        self.orders: deque[Order] = deque(maxlen=max_orders)
        self.portfolio: Portfolio | None = None
        self.extra: dict[type, Callable[[Any], None]] = {}
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
                else:
                    handler = self.extra.get(kind)
                    if handler is not None:
                        handler(event)
            self.cond.notify_all()

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
