"""The state cache, without sockets."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from agentx_sync.errors import ClientClosedError
from agentx_sync.models import Order, OrderStatus, Ticker
from agentx_sync.state import State

from .conftest import eventually


def ticker(symbol: str, price: str) -> Ticker:
    return Ticker(symbol, Decimal(price), None, None)


def test_latest_ticker_wins() -> None:
    s = State()
    s.apply([ticker("A", "1"), ticker("B", "2"), ticker("A", "3")])
    assert s.tickers["A"].price == Decimal(3)
    assert set(s.ticker_snapshot()) == {"A", "B"}


def test_orders_keep_exactly_the_last_100() -> None:
    s = State()
    s.apply([Order(order_id=str(i), status=OrderStatus.PENDING) for i in range(250)])
    orders = s.order_list()
    assert len(orders) == 100
    assert [o.order_id for o in orders] == [str(i) for i in range(150, 250)]
    assert s.order("149") is None and s.order("200") is not None


def test_wait_returns_what_is_there_and_times_out_otherwise() -> None:
    s = State()
    s.apply([ticker("A", "1")])
    assert s.wait(lambda: s.tickers.get("A"), 0, "A").price == 1
    with pytest.raises(TimeoutError):
        s.wait(lambda: s.tickers.get("B"), 0.01, "B")


def test_stopped_waits_raise_the_given_error() -> None:
    s = State()
    s.stop_waiters(ClientClosedError("closed"))
    with pytest.raises(ClientClosedError):
        s.wait(lambda: None, 5, "anything")


def test_a_getter_waits_for_the_batch_being_applied_and_sees_all_of_it() -> None:
    s = State()
    s.apply([ticker("A", "1"), ticker("B", "1")])
    got: list[tuple[Ticker | None, ...]] = []
    s.batch.acquire()  # as the IO thread does while it decodes and applies a read
    reader = threading.Thread(target=lambda: got.append((s.ticker("A"), s.tickers.get("B"))))
    reader.start()
    reader.join(0.2)
    assert reader.is_alive() and not got
    s.apply([ticker("A", "2")])
    s.apply([ticker("B", "2")])
    s.batch.release()
    reader.join(2)
    a, b = got[0]
    assert a is not None and b is not None and a.price == b.price == Decimal(2)


def test_an_older_trade_never_moves_the_cached_price_back() -> None:
    # Regression: a replay or a duplicate after a reconnect overwrote a newer trade.
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
    s = State()
    s.apply([Ticker("A", Decimal(2), None, t0 + timedelta(seconds=1))])
    s.apply([Ticker("A", Decimal(1), None, t0)])  # older: ignored
    assert s.tickers["A"].price == Decimal(2)
    s.apply([Ticker("A", Decimal(3), None, t0 + timedelta(seconds=1))])  # same instant: a later trade
    assert s.tickers["A"].price == Decimal(3)
    s.apply([Ticker("A", Decimal(4), None, None)])  # no time: taken as it comes
    assert s.tickers["A"].price == Decimal(4)


def test_one_far_future_timestamp_cannot_freeze_a_price() -> None:
    from datetime import UTC, datetime, timedelta

    from agentx_sync.state import REPLAY_WINDOW

    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    s = State()
    s.apply([Ticker("A", Decimal(9), None, datetime(9999, 12, 31, tzinfo=UTC))])  # hostile
    s.apply([Ticker("A", Decimal(2), None, now)])
    assert s.tickers["A"].price == Decimal(2)
    s.apply([Ticker("A", Decimal(1), None, now - REPLAY_WINDOW + timedelta(seconds=1))])  # a replay
    assert s.tickers["A"].price == Decimal(2)


def test_a_waiter_sees_its_order_update_among_hundreds_in_one_batch() -> None:
    # Regression: the awaited update arrived in one read with 100+ others and had
    # already left the last-100 window when the waiter looked.
    s = State()
    result: list[Order] = []

    def wait() -> None:
        result.append(s.wait_order("x", lambda o: o.status == OrderStatus.FILLED, 5, "order x"))

    thread = threading.Thread(target=wait)
    thread.start()
    eventually(lambda: s._watched, what="the waiter to register")
    s.apply(
        [Order(order_id="x", status=OrderStatus.FILLED)]
        + [Order(order_id=str(i), status=OrderStatus.PENDING) for i in range(150)]
    )
    thread.join(5)
    assert result and result[0].order_id == "x" and result[0].status == OrderStatus.FILLED
    assert s._watched == {}


def test_a_server_inventing_symbols_cannot_fill_memory() -> None:
    from agentx_sync.models import PriceBatch, PriceUpdate
    from agentx_sync.state import MAX_KEYS

    s = State()
    s.apply([ticker(f"S{i}", "1") for i in range(MAX_KEYS + 5)])
    assert len(s.tickers) == MAX_KEYS and s.overflow == 5
    s.apply([ticker("S1", "2")])  # known symbols still update
    assert s.tickers["S1"].price == 2
    updates = tuple(PriceUpdate(f"t{i}", Decimal(1), None) for i in range(MAX_KEYS + 3))
    s.book.price_batch(PriceBatch(updates, None))
    assert len(s.book.prices) == MAX_KEYS and s.book.overflow == 3
