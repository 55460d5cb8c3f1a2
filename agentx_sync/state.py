"""The state cache: the latest value of everything, under its condition lock.

(Longer than 500 lines on purpose: the cache and the Nexgent position book
with its P/L, which change under the same lock and are read together.)

(``client.py`` lists every lock of a client and their order.)

The IO thread is its only writer and applies a whole batch of events (all
the messages of one socket read) under one acquisition, then wakes waiters
once. Readers get immutable records. Snapshots and waits take the lock;
single lookups read one dict entry, which is atomic in CPython, after
:meth:`State.settle`: while the IO thread holds ``batch`` (decoding and
applying a read), a getter sleeps until the batch is in rather than take the
GIL from it. Without that, two threads calling a getter in a tight loop each
hold the interpreter for whole switch intervals and the feed falls behind.
"""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from time import monotonic as _monotonic
from typing import Any, NamedTuple, TypeVar

from .models import (
    POSITION_FIELDS,
    PRICE_FIELDS,
    Candle,
    Order,
    Portfolio,
    Position,
    PositionChange,
    PositionEvent,
    PositionEventType,
    PriceBatch,
    Ticker,
)
from .numbers import CONTEXT

__all__ = [
    "MAX_EARLY",
    "MAX_KEYS",
    "REPLAY_WINDOW",
    "SIGNAL_SLICE",
    "PositionBook",
    "State",
    "Terms",
    "terms",
    "valuation",
]

#: The longest a wait in the main thread blocks at once (see ``State._wait_for``).
SIGNAL_SLICE = 0.2

_ZERO = Decimal(0)

T = TypeVar("T")


class State:
    """Latest tickers and candles, the last ``max_orders`` order updates, the portfolio."""

    def __init__(self, max_orders: int = 100) -> None:
        self.cond = threading.Condition(threading.Lock())
        #: Held by the IO thread while it decodes and applies one read.
        self.batch = threading.Lock()
        self.tickers: dict[str, Ticker] = {}
        self.candles: dict[tuple[str, str], Candle] = {}
        self.orders: deque[Order] = deque(maxlen=max_orders)
        self.portfolio: Portfolio | None = None
        self.book = PositionBook()
        self._stop: Exception | None = None
        #: Records refused because the cache already holds MAX_KEYS symbols (or tokens).
        self.overflow = 0
        #: Order id -> one list per waiter of the updates that arrived while it waits.
        self._watched: dict[str, list[list[Order]]] = {}
        self._waiting = 0  # threads blocked in wait(): only then is notify worth its cost

    # -- writing (IO thread) ---------------------------------------------------

    def apply(self, events: Iterable[Any]) -> None:  # noqa: C901, PLR0912 - the hot path: a read's records applied under one lock, a switch on type
        """Apply a batch of events as one state change and wake every waiter.

        A trade, candle or portfolio snapshot older (by its own timestamp, up
        to ``REPLAY_WINDOW``) than the one cached is not cached: a replay or a
        duplicate after a reconnect never moves the cache back in time. Order updates are a log (the last
        ``max_orders``); every update of an order someone waits for is also
        handed to that waiter, however many arrive in one batch.
        """
        tickers = self.tickers
        candles = self.candles
        watched = self._watched
        with self.cond:
            for event in events:
                kind = type(event)
                if kind is Ticker:
                    symbol = event.symbol
                    old = tickers.get(symbol)
                    if old is None and len(tickers) >= MAX_KEYS:
                        self.overflow += 1  # a server inventing symbols cannot fill memory
                        continue
                    if old is not None:  # _older(), inlined: this runs for every trade
                        stamp, cached = event.timestamp, old.timestamp
                        if (
                            stamp is not None
                            and cached is not None
                            and cached - REPLAY_WINDOW <= stamp < cached
                        ):
                            continue
                    tickers[symbol] = event
                elif kind is Candle:
                    key = (event.symbol, event.interval)
                    previous = candles.get(key)
                    if previous is None and len(candles) >= MAX_KEYS:
                        self.overflow += 1
                        continue
                    if previous is not None and _older(event.time, previous.time):
                        continue
                    candles[key] = event
                elif kind is Order:
                    self.orders.append(event)
                    if watched:
                        for seen in watched.get(event.order_id, ()):
                            seen.append(event)
                elif kind is Portfolio:
                    if self.portfolio is not None and _older(event.timestamp, self.portfolio.timestamp):
                        continue
                    self.portfolio = event
            if self._waiting:
                self.cond.notify_all()

    def mutate(self, change: Callable[[], T]) -> T:
        """Run ``change()`` under the lock as one state change; wake waiters."""
        with self.cond:
            result = change()
            if self._waiting:
                self.cond.notify_all()
            return result

    def after_fork(self, error: Exception) -> None:
        """In a forked child: fresh locks (the IO thread may have held them), waits raise ``error``."""
        self.cond = threading.Condition(threading.Lock())
        self.batch = threading.Lock()
        self._watched = {}
        self._waiting = 0
        self._stop = error

    def stop_waiters(self, error: Exception | None) -> None:
        """Make current and future waits raise ``error`` (``None`` re-arms them)."""
        with self.cond:
            self._stop = error
            self.cond.notify_all()

    # -- reading (any thread) --------------------------------------------------

    def settle(self) -> None:
        """Wait out the batch being applied, if any (there mostly is none)."""
        batch = self.batch
        if batch.locked():
            with batch:
                pass

    def ticker(self, symbol: str) -> Ticker | None:
        """The latest ticker of ``symbol`` (the hottest getter: settle()'s check is inlined)."""
        if self.batch.locked():
            self.settle()
        return self.tickers.get(symbol)

    def order(self, order_id: str) -> Order | None:
        """The latest update of an order among the last ``max_orders``."""
        self.settle()
        with self.cond:
            return self._order(order_id)

    def _order(self, order_id: str) -> Order | None:
        for order in reversed(self.orders):
            if order.order_id == order_id:
                return order
        return None

    def order_list(self) -> list[Order]:
        self.settle()
        with self.cond:
            return list(self.orders)

    def ticker_snapshot(self) -> dict[str, Ticker]:
        self.settle()
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
            self._waiting += 1
            try:
                arrived = self._wait_for(ready, timeout)
            finally:
                self._waiting -= 1
            if not arrived:
                raise TimeoutError(f"no {what} within {timeout} s")
            if result:
                return result[0]
            assert self._stop is not None
            # A copy: one exception instance raised in several threads would
            # share (and garble) its traceback.
            raise copy.copy(self._stop)

    def _wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """``cond.wait_for``, in slices of at most ``SIGNAL_SLICE`` in the main thread.

        Ctrl-C may be delivered to any thread of the process; the main thread,
        blocked on a lock without a timeout, would then never run Python's
        handler, and ``run_forever()`` would ignore Ctrl-C. Waking now and then
        lets the pending KeyboardInterrupt be raised within ``SIGNAL_SLICE``.
        """
        if threading.current_thread() is not threading.main_thread():
            return self.cond.wait_for(ready, timeout)
        if timeout is None:
            while not self.cond.wait_for(ready, SIGNAL_SLICE):
                pass
            return True
        deadline = _monotonic() + timeout
        while not ready():
            left = deadline - _monotonic()
            if left <= 0:
                return False
            self.cond.wait(min(left, SIGNAL_SLICE))
        return True

    def wait_order(
        self, order_id: str, accept: Callable[[Order], bool], timeout: float | None, what: str
    ) -> Order:
        """Block until an update of ``order_id`` that ``accept`` takes arrives (or is cached).

        Every update that arrives while the caller waits is offered, in
        order, even when more than ``max_orders`` arrive at once.
        """
        seen: list[Order] = []
        with self.cond:
            latest = self._order(order_id)
            if latest is not None:
                seen.append(latest)
            self._watched.setdefault(order_id, []).append(seen)
        offered = 0

        def probe() -> Order | None:
            nonlocal offered
            while offered < len(seen):
                order = seen[offered]
                offered += 1
                if accept(order):
                    return order
            return None

        try:
            return self.wait(probe, timeout, what)
        finally:
            with self.cond:
                lists = self._watched[order_id]
                del lists[next(i for i, mine in enumerate(lists) if mine is seen)]
                if not lists:
                    del self._watched[order_id]


#: Distinct symbols (tickers, candle series, Nexgent token prices) the cache holds
#: at most: AgentExchange lists about 600 pairs. Beyond it, new ones are refused.
MAX_KEYS = 10_000

#: Positions whose early changes (before initial_data) are held at most; the oldest go first.
MAX_EARLY = 10_000


# -- Nexgent P/L: the server's formulas, once ---------------------------------------


class Terms(NamedTuple):
    """What a position's valuation needs besides the price: computed once per change."""

    holding: Decimal  # remainingAmount if present, else purchaseAmount
    offset: Decimal  # (realizedProfitSol or 0) - purchasePrice * holding
    cost_centi: Decimal | None  # purchasePrice * purchaseAmount / 100 (exact); None for no cost
    purchase_price: Decimal
    price_centi: Decimal | None  # purchasePrice / 100 (exact); None for a zero price
    purchase_price_usd: Decimal | None  # kept from initial_data: the server's own figure


def terms(fields: dict[str, Any]) -> Terms:
    """The price-independent part of the server's P/L formulas for a position.

    Computed with the library's :data:`~agentx_sync.numbers.CONTEXT`, never the
    calling thread's decimal context.
    """
    mul = CONTEXT.multiply
    purchase_price = fields.get("purchase_price") or _ZERO
    purchase_amount = fields.get("purchase_amount") or _ZERO
    remaining = fields.get("remaining_amount")
    holding = remaining if remaining is not None else purchase_amount
    cost = mul(purchase_price, purchase_amount)
    return Terms(
        holding,
        CONTEXT.subtract(fields.get("realized_profit_sol") or _ZERO, mul(purchase_price, holding)),
        cost.scaleb(-2, CONTEXT) if cost else None,
        purchase_price,
        purchase_price.scaleb(-2, CONTEXT) if purchase_price else None,
        fields.get("purchase_price_usd"),
    )


def valuation(t: Terms, price: Decimal, price_usd: Decimal | None) -> tuple[Decimal | None, ...]:
    """The price and P/L fields of a position, as the server computes them, in
    :data:`~agentx_sync.models.PRICE_FIELDS` order (the last nine of a Position).

    ``holding = remainingAmount or purchaseAmount``;
    ``positionValueSol = currentPrice * holding``;
    ``profitLossSol = (realizedProfitSol or 0) + positionValueSol - purchasePrice * holding``;
    ``profitLossPercent = profitLossSol / (purchasePrice * purchaseAmount) * 100`` (0 for no cost);
    ``priceChangePercent = (currentPrice - purchasePrice) / purchasePrice * 100`` (0 for no price);
    ``positionValueUsd = currentPriceUsd * holding``;
    ``profitLossUsd = profitLossSol * currentPriceUsd / currentPrice`` (SOL at its USD rate).
    Dividing by ``x / 100`` (an exact shift) is the same as ``/ x * 100`` with one rounding.
    All arithmetic uses the library's own decimal context, never the calling thread's.
    """
    holding, offset, cost_centi, purchase_price, price_centi, purchase_price_usd = t
    mul, div = CONTEXT.multiply, CONTEXT.divide
    value = mul(price, holding)
    pnl = CONTEXT.add(value, offset)
    return (
        price,  # current_price
        price_usd,  # current_price_usd
        purchase_price_usd,  # purchase_price_usd
        None if price_usd is None else mul(price_usd, holding),  # position_value_usd
        value,  # position_value_sol
        None if price_usd is None or not price else div(mul(pnl, price_usd), price),  # profit_loss_usd
        pnl,  # profit_loss_sol
        _ZERO if cost_centi is None else div(pnl, cost_centi),  # profit_loss_percent
        _ZERO if price_centi is None else div(CONTEXT.subtract(price, purchase_price), price_centi),
    )


class PositionBook:
    """Nexgent positions and token prices. Pure; the State's lock guards it.

    Positions are kept as parsed wire fields, merged as updates arrive, and
    turned into :class:`Position` records whose price and P/L fields are
    recomputed from the latest price of their token (matched
    case-insensitively). A price batch touches only the positions of its
    tokens, with each position's price-independent terms computed in advance.
    """

    def __init__(self) -> None:
        self.fields: dict[str, dict[str, Any]] = {}
        self.records: dict[str, Position] = {}
        self.prices: dict[str, tuple[Decimal, Decimal | None]] = {}  # lower-case address
        self.loaded = False  # initial_data seen on the current connection
        self.stale = False  # kept from a connection that was lost
        self.error: Exception | None = None  # the server could not load positions
        #: Position changes that came before initial_data, merged per position id.
        self._early: dict[str, PositionChange] = {}
        self.early_dropped = 0
        self.overflow = 0  # token prices refused: MAX_KEYS tokens are known already
        # Per token (lower-case), per position: its non-price values (record
        # order) and its valuation terms; what a price batch needs, at hand.
        self._plans: dict[str, dict[str, tuple[tuple[Any, ...], Terms]]] = {}

    def initial(self, positions: Iterable[dict[str, Any]]) -> list[PositionEvent]:
        """Replace every position; then replay updates that came before it.

        A position that ``initial_data`` sends without price fields (or whose
        P/L fields are missing) is valued with the token's latest known price.
        """
        positions = list(positions)
        self.fields, self.records, self._plans = {}, {}, {}
        for f in positions:
            price = f.get("current_price")
            if price is not None and price > 0:
                self.prices[f["token_address"].lower()] = (price, f.get("current_price_usd"))
        for f in positions:
            self._index(dict(f))
            if f.get("current_price") is not None and f.get("profit_loss_sol") is not None:
                # The server computed these values itself: take them as they are.
                self.records[f["id"]] = Position(**f)
            else:
                self.records[f["id"]] = self._build(f["id"])
        self.loaded, self.stale, self.error = True, False, None
        return self._replay()

    def failed(self, error: Exception) -> list[PositionEvent]:
        """The server could not load this connection's initial data (and will send none).

        Waiters get ``error``; the position events held back are applied now,
        and later ones as they come, onto the positions already known.
        """
        self.error = error
        return self._replay()

    def _replay(self) -> list[PositionEvent]:
        early, self._early = self._early, {}
        return [event for change in early.values() if (event := self.change(change)) is not None]

    def change(self, change: PositionChange) -> PositionEvent | None:
        """Apply a created/updated/closed event.

        Before ``initial_data`` (and unless loading it failed) changes are held
        back, merged per position, at most ``MAX_EARLY`` positions' worth.
        """
        pid = change.position_id
        if not self.loaded and self.error is None:
            self._hold(change)
            return None
        if change.type is PositionEventType.CLOSED:
            self._forget(pid)
            return PositionEvent(change.type, pid, self.records.pop(pid, None))
        merged = {**self.fields.get(pid, {}), **(change.fields or {})}
        if "token_address" not in merged:
            return None  # a partial update of a position never seen
        self._forget(pid)
        self._index(merged)
        self.records[pid] = self._build(pid)
        return PositionEvent(change.type, pid, self.records[pid])

    def _hold(self, change: PositionChange) -> None:
        pid = change.position_id
        held = self._early.pop(pid, None)
        if (
            held is not None
            and change.type is not PositionEventType.CLOSED
            and held.type is not PositionEventType.CLOSED
        ):
            fields = {**(held.fields or {}), **(change.fields or {})}
            kind = held.type if held.type is PositionEventType.CREATED else change.type
            change = PositionChange(kind, pid, fields)
        self._early[pid] = change
        if len(self._early) > MAX_EARLY:
            del self._early[next(iter(self._early))]
            self.early_dropped += 1

    def price_batch(self, batch: PriceBatch) -> None:
        """Apply every price of a batch and revalue the positions of those tokens."""
        new = tuple.__new__  # Position._make without its length check: base + valuation fit
        plans = self._plans
        records = self.records
        prices = self.prices
        for update in batch.updates:
            price, usd = quote = (update.price, update.price_usd)
            if len(prices) >= MAX_KEYS and update.token_address not in prices:
                self.overflow += 1
                continue
            # Revalued even when the quote is unchanged: a position may have
            # come (without price fields) since that quote was first seen.
            prices[update.token_address] = quote
            for pid, (base, t) in plans.get(update.token_address, {}).items():
                records[pid] = new(Position, base + valuation(t, price, usd))

    def _index(self, f: dict[str, Any]) -> None:
        pid = f["id"]
        self.fields[pid] = f
        base = tuple(f.get(name, default) for name, default in _BASE)
        self._plans.setdefault(f["token_address"].lower(), {})[pid] = (base, terms(f))

    def _forget(self, pid: str) -> None:
        old = self.fields.pop(pid, None)
        if old is not None:
            self._plans.get(old["token_address"].lower(), {}).pop(pid, None)

    def _build(self, pid: str) -> Position:
        token = self.fields[pid]["token_address"].lower()
        base, t = self._plans[token][pid]
        price = self.prices.get(token)
        if price is None:
            return Position(**self.fields[pid])
        return Position._make(base + valuation(t, *price))

    def disconnected(self) -> None:
        self.loaded = False
        self.stale = bool(self.records)
        self.error = None
        self._early.clear()

    def clear(self) -> None:
        self.fields.clear()
        self.records.clear()
        self.prices.clear()
        self._plans.clear()
        self._early.clear()
        self.loaded = self.stale = False
        self.error = None


#: A record at most this much older than the cached one is a replay (a duplicate
#: after a reconnect) and is not cached. One older still means the cached time
#: was wrong (a server's clock, or a hostile far-future date): the new record
#: wins, so one bad timestamp cannot freeze a price.
REPLAY_WINDOW = timedelta(minutes=5)


def _older(stamp: datetime | None, than: datetime | None) -> bool:
    """True when both times are known and ``stamp`` is a replay of something before ``than``."""
    return stamp is not None and than is not None and than - REPLAY_WINDOW <= stamp < than


#: The fields before the price fields, with their defaults: a position's price-independent part.
_BASE = [(name, Position._field_defaults.get(name)) for name in POSITION_FIELDS[: -len(PRICE_FIELDS)]]
