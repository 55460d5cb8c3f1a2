"""The AgentExchange dialect, as plain function calls: URL, decoding, subscription plans."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentx_sync.dialects import ErrorMessage, Ping, Subscribed, Unsubscribed, Verdict
from agentx_sync.dialects.agentexchange import (
    AgentExchangeDialect,
    Interest,
    Subscription,
    SubscriptionBook,
    build_url,
    check_interval,
    decode,
)
from agentx_sync.errors import AgentXError, ProtocolError
from agentx_sync.models import Candle, Order, OrderSide, OrderStatus, Portfolio, Ticker

TICKER: dict[str, Any] = {
    "channel": "ticker",
    "symbol": "BTCUSDT",
    "data": {
        "price": "64521.30",
        "quantity": "0.012",
        "timestamp": "2026-11-21T12:00:00.123Z",
        "is_buyer_maker": False,
    },
}


def test_url_is_query_string_auth_and_url_encoded() -> None:
    assert build_url("ws://localhost:8000", "ak_live_x") == "ws://localhost:8000/ws/v1?api_key=ak_live_x"
    assert build_url("https://ex.com/", "a b&c=/") == "wss://ex.com/ws/v1?api_key=a%20b%26c%3D%2F"
    assert build_url("http://h:1/ws/v1", "k") == "ws://h:1/ws/v1?api_key=k"
    with pytest.raises(ValueError):
        build_url("ftp://h", "k")


def test_dialect_hides_the_key() -> None:
    d = AgentExchangeDialect("ws://h:1", "ak_live_SECRET")
    assert "SECRET" not in d.safe_url and "SECRET" in d.url
    assert d.handshake_verdict(403) is Verdict.AUTH_FAILED
    assert d.handshake_verdict(401) is Verdict.AUTH_FAILED
    assert d.handshake_verdict(502) is Verdict.RECONNECT
    assert d.pong(Ping(), "") == '{"action":"pong"}'


def test_ticker() -> None:
    t = decode(json.dumps(TICKER), 5.0)
    assert isinstance(t, Ticker)
    assert t.price == Decimal("64521.30") and isinstance(t.price, Decimal)
    assert t.quantity == Decimal("0.012")
    assert t.timestamp == datetime(2026, 11, 21, 12, 0, 0, 123000, tzinfo=UTC)
    assert t["symbol"] == t.symbol == "BTCUSDT"
    assert t["price"] == t.price
    assert t.received_at == 5.0
    assert set(t.keys()) == {"symbol", "price", "quantity", "timestamp", "is_buyer_maker"}
    assert t.get("nope", 1) == 1 and "price" in t
    with pytest.raises(KeyError):
        t["received_at"]


def test_a_ticker_is_an_immutable_record_like_the_others() -> None:
    t = decode(json.dumps(TICKER), 5.0)
    assert isinstance(t, Ticker)
    slow = _ticker_through_the_general_path(5.0)
    assert type(slow) is Ticker and slow == t and slow.received_at == 5.0
    later = decode(json.dumps(TICKER), 9.0)
    assert later == t and hash(later) == hash(t)  # the same trade, whenever it arrived
    assert t != decode(json.dumps({**TICKER, "data": {**TICKER["data"], "price": "1"}}), 5.0)
    # A tuple of its six fields, honestly: len, iteration and unpacking agree.
    assert len(t) == 6 and list(t) == [*t.to_dict().values(), 5.0]
    symbol, price, *_, received_at = t
    assert (symbol, price, received_at) == ("BTCUSDT", Decimal("64521.30"), 5.0)
    assert t["price"] == t.price == t[1] and "price" in t and "received_at" not in t
    assert t != tuple(t) and tuple(t) != t  # never equal to a plain tuple
    assert t.keys() == ("symbol", "price", "quantity", "timestamp", "is_buyer_maker")
    assert repr(t).startswith("Ticker(symbol='BTCUSDT', price=Decimal('64521.30')")
    for copied in (pickle.loads(pickle.dumps(t)), copy.copy(t), copy.deepcopy(t)):
        assert copied == t and copied.received_at == 5.0
    with pytest.raises(AttributeError):
        t.price = Decimal(1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        t < later  # noqa: B015  (records are not ordered)


def _ticker_through_the_general_path(now: float) -> Ticker:
    # The fast path takes only "Z" timestamps: "+00:00" goes the general way.
    stamp = TICKER["data"]["timestamp"].replace("Z", "+00:00")
    msg = {**TICKER, "data": {**TICKER["data"], "timestamp": stamp}}
    t = decode(json.dumps(msg), now)
    assert isinstance(t, Ticker)
    return t


def test_candle_order_portfolio() -> None:
    c = decode(
        json.dumps(
            {
                "channel": "candles",
                "symbol": "ETHUSDT",
                "interval": "1m",
                "data": {
                    "time": "2026-11-21T12:00:00Z",
                    "open": "1",
                    "high": "3",
                    "low": "0.5",
                    "close": "2",
                    "volume": "10",
                    "is_closed": True,
                },
            }
        ),
        0,
    )
    assert isinstance(c, Candle) and c.close == Decimal(2) and c["open_time"] == c.time and c.is_closed
    o = decode(
        json.dumps(
            {
                "channel": "orders",
                "data": {
                    "order_id": "o1",
                    "status": "filled",
                    "symbol": "btcusdt",
                    "side": "buy",
                    "type": "market",
                    "quantity": "0.5",
                    "executed_price": "100.5",
                    "executed_quantity": "0.5",
                    "fee": "0.05",
                    "filled_at": "2026-11-21T12:00:00+02:00",
                    "cancelled_at": None,
                    "rejected_reason": None,
                    "price": None,
                },
            }
        ),
        0,
    )
    assert isinstance(o, Order)
    assert o.status is OrderStatus.FILLED and o["status"] == "filled" and o.side is OrderSide.BUY
    assert o.symbol == "BTCUSDT" and o.executed_price == Decimal("100.5")
    assert o.filled_at == datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    minimal = decode('{"channel":"orders","data":{"order_id":"o2","status":"expired_by_venue"}}', 0)
    assert isinstance(minimal, Order) and minimal.status == "expired_by_venue" and minimal.fee is None
    p = decode(
        '{"channel":"portfolio","data":{"total_equity":"10000.5","unrealized_pnl":"1","realized_pnl":"2",'
        '"timestamp":"2026-11-21T12:00:00Z","available_cash":"9000","extra":"x"}}',
        0,
    )
    assert isinstance(p, Portfolio) and p.total_equity == Decimal("10000.5") and p["roi_pct"] is None


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ('{"type":"ping"}', Ping()),
        ('{"type":"subscribed","channel":"ticker:BTCUSDT"}', Subscribed("ticker:BTCUSDT")),
        ('{"type":"unsubscribed","channel":"candles:BTCUSDT:1m"}', Unsubscribed("candles:BTCUSDT:1m")),
        (
            '{"type":"error","code":"SUBSCRIPTION_LIMIT","message":"Maximum of 10 subscriptions per connection reached."}',
            ErrorMessage("Maximum of 10 subscriptions per connection reached.", "SUBSCRIPTION_LIMIT"),
        ),
        ('{"type":"something_new"}', None),
        ('{"channel":"news","data":{}}', None),
    ],
)
def test_control_and_unknown(text: str, event: Any) -> None:
    assert decode(text, 0) == event


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1,2]",
        '"str"',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"abc"}}',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"NaN"}}',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":Infinity}}',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":NaN}}',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":true}}',
        '{"channel":"ticker","symbol":"BTCUSDT","data":{}}',
        '{"channel":"ticker","symbol":5,"data":{"price":"1"}}',
        '{"channel":"ticker","symbol":"X","data":{"price":"1","timestamp":"yesterday"}}',
        '{"channel":"ticker","symbol":"X","data":[1]}',
        '{"channel":["ticker"],"data":{}}',
        '{"channel":"orders","data":{"order_id":"1"}}',
        '{"type":"subscribed"}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_bad_messages_raise_protocol_error_only(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode(text, 0)


def test_numbers_where_strings_belong_are_tolerated_exactly() -> None:
    t = decode('{"channel":"ticker","symbol":"X","data":{"price":0.1,"timestamp":"2026-11-21T12:00:00Z"}}', 0)
    assert isinstance(t, Ticker) and t.price == Decimal("0.1")


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "channel": st.sampled_from(["ticker", "candles", "orders", "portfolio", "x"]) | json_values,
        "type": st.sampled_from(["ping", "subscribed", "unsubscribed", "error"]) | json_values,
        "symbol": st.text(max_size=8) | json_values,
        "interval": st.sampled_from(["1m", "5m"]) | json_values,
        "data": st.dictionaries(
            st.sampled_from(
                ["price", "quantity", "timestamp", "order_id", "status", "total_equity", "open", "time"]
            ),
            json_values,
        )
        | json_values,
        "code": json_values,
        "message": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(envelopes.map(json.dumps), json_values.map(json.dumps), st.text()))
def test_any_input_gives_an_event_or_a_typed_error(text: str) -> None:
    try:
        decode(text, 0)
    except AgentXError:
        pass


def test_interval_validation_names_the_accepted_ones() -> None:
    assert check_interval("1h") == "1h"
    with pytest.raises(ValueError, match="1m, 5m, 1h, 1d"):
        check_interval("15m")


def test_plan_individual_tickers_while_they_fit() -> None:
    i = Interest(tickers={"A", "B"}, orders=True, portfolio=True)
    plan = i.plan()
    assert [s.key for s in plan.subscriptions] == ["ticker:A", "ticker:B", "orders", "portfolio"]
    assert not plan.via_ticker_all


def test_plan_counts_orders_and_portfolio_in_the_limit() -> None:
    tickers = {f"S{i}" for i in range(9)}
    plan = Interest(tickers=tickers, orders=True, portfolio=True).plan()
    # 9 tickers fit; one slot is left for orders; portfolio is pushed anyway.
    assert len(plan.subscriptions) == 10 and not plan.via_ticker_all
    assert "orders" in [s.key for s in plan.subscriptions]


def test_plan_moves_to_ticker_all_beyond_ten() -> None:
    plan = Interest(tickers={f"S{i}" for i in range(11)}, candles={("A", "1m")}, orders=True).plan()
    assert [s.key for s in plan.subscriptions] == ["ticker:all", "candles:A:1m", "orders"]
    assert plan.via_ticker_all
    assert Interest(tickers={f"S{i}" for i in range(11)}).wants_ticker("S3")
    assert not Interest(tickers={"S1"}).wants_ticker("S3")


def test_plan_reports_candles_that_cannot_fit() -> None:
    candles = {(f"S{i}", "1m") for i in range(11)}
    plan = Interest(candles=candles, tickers={"X", "Y"}).plan()
    assert len(plan.subscriptions) == 10 and plan.subscriptions[0].key == "ticker:all"
    assert len(plan.unserved) == 2


def test_plan_with_one_ticker_never_widens_to_ticker_all() -> None:
    # ticker_all would take the same slot as the one ticker and stream every pair.
    candles = {(f"S{i}", "1m") for i in range(11)}
    plan = Interest(candles=candles, tickers={"X"}).plan()
    assert plan.subscriptions[0].key == "ticker:X" and not plan.via_ticker_all
    assert len(plan.subscriptions) == 10 and len(plan.unserved) == 2


def test_plan_for_candles_alone_subscribes_no_ticker() -> None:
    # Regression: twelve candles and no ticker wanted gave ticker_all, spending a slot on it.
    candles = {(f"S{i}", "1m") for i in range(12)}
    plan = Interest(candles=candles).plan()
    keys = [s.key for s in plan.subscriptions]
    assert all(k.startswith("candles:") for k in keys) and not plan.via_ticker_all
    assert len(keys) == 10 and [s.key for s in plan.unserved] == ["candles:S8:1m", "candles:S9:1m"]


def test_subscription_messages() -> None:
    assert json.loads(Subscription("candles", "BTCUSDT", "1m").message()) == {
        "action": "subscribe",
        "channel": "candles",
        "symbol": "BTCUSDT",
        "interval": "1m",
    }
    assert (
        Subscription("ticker_all").message("unsubscribe") == '{"action":"unsubscribe","channel":"ticker_all"}'
    )


@pytest.mark.parametrize("choice", ["stdlib", ""])
def test_json_parser_choice(choice: str) -> None:
    import os
    import subprocess
    import sys

    code = "from agentx_sync.dialects import JSON_PARSER; print(JSON_PARSER)"
    env = {**os.environ, "AGENTX_SYNC_JSON": choice}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    try:
        import orjson  # noqa: F401

        expected = "stdlib" if choice == "stdlib" else "orjson"
    except ImportError:
        expected = "stdlib"
    assert out.strip() == expected


# -- the subscription book (pure) -----------------------------------------------------------


def test_the_book_sends_nothing_until_connected_then_everything_wanted() -> None:
    book = SubscriptionBook()
    book.interest.tickers.update({"BTCUSDT", "ETHUSDT"})
    book.interest.orders = True
    assert book.sync() == ([], None)  # not connected: nothing to send, nothing left out
    book.opened()
    requests, unserved = book.sync()
    assert [(s.key, a) for s, a in requests] == [
        ("ticker:BTCUSDT", "subscribe"),
        ("ticker:ETHUSDT", "subscribe"),
        ("orders", "subscribe"),
    ]
    assert unserved is None and book.sync() == ([], None)  # in line: nothing more
    assert book.keys() == ("ticker:BTCUSDT", "ticker:ETHUSDT", "orders")


def test_the_book_unsubscribes_before_it_subscribes_and_attributes_answers() -> None:
    book = SubscriptionBook()
    book.interest.tickers.add("BTCUSDT")
    book.opened()
    book.sync()
    book.answered("ticker:BTCUSDT", subscribed=True)
    assert book.confirmed() == ("ticker:BTCUSDT",)
    book.interest.tickers.discard("BTCUSDT")
    book.interest.tickers.add("NOPEUSDT")
    requests, _ = book.sync()
    assert [(s.key, a) for s, a in requests] == [
        ("ticker:BTCUSDT", "unsubscribe"),
        ("ticker:NOPEUSDT", "subscribe"),
    ]
    book.answered("ticker:BTCUSDT", subscribed=False)
    # The server's error names no channel: it answers the oldest unanswered request.
    assert book.refused() == {"action": "subscribe", "channel": "ticker", "symbol": "NOPEUSDT"}
    assert book.refused() is None
    assert book.confirmed() == ()


def test_the_book_reports_the_limit_once_per_change_and_forgets_the_wire_when_lost() -> None:
    book = SubscriptionBook()
    book.interest.candles.update({(f"S{i}USDT", "1m") for i in range(11)})  # candles cannot share ticker_all
    book.opened()
    requests, unserved = book.sync()
    assert len(requests) == 10 and unserved is not None and len(unserved) == 1
    assert book.sync()[1] is None  # the same shortfall is not reported again
    book.lost()
    assert book.confirmed() == () and book.refused() is None
    assert book.sync() == ([], None)
    book.opened()
    assert len(book.sync()[0]) == 10  # the new connection gets the whole plan again


def test_a_request_that_could_not_be_sent_awaits_no_answer() -> None:
    book = SubscriptionBook()
    book.interest.tickers.add("BTCUSDT")
    book.opened()
    [request], _ = book.sync()
    book.unsent(request)
    assert book.refused() is None
