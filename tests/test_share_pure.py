"""The shared feed's pure parts, as plain calls: wire encoders, interest, names, entries,
the write rate and the packing of a write."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from agentx_sync.dialects.agentexchange import Interest, decode, encode
from agentx_sync.dialects.nexgent import InitialData, encode_initial, encode_prices, parse_position
from agentx_sync.dialects.nexgent import decode as ndecode
from agentx_sync.models import PriceBatch
from agentx_sync.share import (
    PUBLISH_RATE,
    RateLimit,
    _join,
    _pack_args,
    _pack_head,
    _publish_rate,
    _split,
    _who,
    safe_redis_url,
)
from agentx_sync.state import PositionBook

MESSAGES: list[dict[str, Any]] = [
    {
        "channel": "ticker",
        "symbol": "BTCUSDT",
        "data": {"price": "64521.30", "quantity": "0.012", "timestamp": "2026-11-21T12:00:00.123Z"},
    },
    {
        "channel": "candles",
        "symbol": "ETHUSDT",
        "interval": "1m",
        "data": {
            "time": "2026-11-21T12:00:00Z",
            "open": "1",
            "high": "2",
            "low": "0.5",
            "close": "1.5",
            "volume": "10",
            "is_closed": True,
        },
    },
    {
        "channel": "orders",
        "data": {
            "order_id": "o-1",
            "status": "filled",
            "symbol": "BTCUSDT",
            "side": "buy",
            "type": "market",
            "quantity": "0.5",
            "executed_price": "64000",
            "executed_quantity": "0.5",
            "fee": "0.032",
            "filled_at": "2026-11-21T12:00:01Z",
        },
    },
    {"channel": "orders", "data": {"order_id": "o-2", "status": "some_new_status"}},
    {
        "channel": "portfolio",
        "data": {
            "total_equity": "10000.5",
            "unrealized_pnl": "-1.25",
            "realized_pnl": "0",
            "timestamp": "2026-11-21T12:00:02Z",
            "available_cash": "9000",
            "roi_pct": "0.005",
        },
    },
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: str(m["channel"]))
def test_a_record_encodes_to_a_message_that_decodes_to_it(message: dict[str, Any]) -> None:
    record = decode(json.dumps(message), 1.0)
    again = decode(encode(record), 2.0)  # type: ignore[arg-type]
    assert type(again) is type(record) and again == record


def test_positions_and_prices_encode_to_messages_that_rebuild_the_same_book() -> None:
    raw = {
        "id": "p1",
        "tokenAddress": "So1TokenABC",
        "tokenSymbol": "BONK",
        "purchasePrice": 0.0001,
        "purchaseAmount": 1000,
        "remainingAmount": 400,
        "realizedProfitSol": 0.06,
        "dcaTransactionIds": ["t1", "t2"],
        "createdAt": "2026-11-21T12:00:00.000Z",
        "moonBagActivated": False,
    }
    book = PositionBook()
    book.initial([parse_position(raw), parse_position({**raw, "id": "p2", "tokenAddress": "Other"})])
    batch = ndecode(
        json.dumps(
            {
                "type": "price_update_batch",
                "data": {"updates": [{"tokenAddress": "so1tokenabc", "price": 0.0002, "priceUsd": 0.03}]},
            }
        ),
        0.0,
    )
    assert isinstance(batch, PriceBatch)
    book.price_batch(batch)
    prices = [(token, price, usd) for token, (price, usd) in book.prices.items()]
    copy = PositionBook()
    for text in (encode_prices(prices), encode_initial(book.records.values())):
        event = ndecode(text, 0.0)
        if isinstance(event, PriceBatch):
            copy.price_batch(event)
        else:
            assert isinstance(event, InitialData)
            copy.initial(event.positions)
    assert copy.records == book.records and copy.prices == book.prices
    assert copy.records["p1"].profit_loss_sol == Decimal("0.1000")


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        (
            {"tickers": ["btcusdt", "ETHUSDT"], "all": False, "candles": [["solusdt", "1m"]]},
            "BTC ETH + SOL/1m",
        ),
        ({"tickers": ["BTC-USDT", "x" * 40, 7, None], "candles": [["SOLUSDT", "15m"], "bad", [1, "1m"]]}, ""),
        ({"all": "yes", "orders": 1, "portfolio": True}, "portfolio"),
        ([1, 2, 3], ""),
        ("not a dict", ""),
        (None, ""),
    ],
)
def test_another_process_interest_is_read_warily(published: Any, expected: str) -> None:
    interest = Interest.from_json(published)
    shown = " ".join(sorted(s.removesuffix("USDT") for s in interest.tickers))
    if interest.candles:
        shown += " + " + " ".join(f"{s.removesuffix('USDT')}/{i}" for s, i in sorted(interest.candles))
    if interest.portfolio:
        shown += "portfolio"
    assert shown == expected
    assert not interest.all_tickers and not interest.orders


def test_interests_add_up_and_survive_their_json_form() -> None:
    mine = Interest({"BTCUSDT"}, orders=True)
    theirs = Interest({"ETHUSDT"}, candles={("SOLUSDT", "5m")}, portfolio=True)
    both = mine.union(theirs)
    assert both.tickers == {"BTCUSDT", "ETHUSDT"} and both.candles == {("SOLUSDT", "5m")}
    assert both.orders and both.portfolio and not both.all_tickers
    assert Interest.from_json(json.loads(json.dumps(both.to_json()))) == both
    assert mine.union(Interest(all_tickers=True)).plan().via_ticker_all


def test_names_and_entries() -> None:
    assert safe_redis_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert safe_redis_url("rediss://user:s3cret@[::1]:6380/2") == "rediss://[::1]:6380/2"
    assert "s3cret" not in safe_redis_url("redis://:s3cret@host:notaport/0")
    assert _who("3:host-a:4242:abcdef12") == "host-a:4242" and _who("garbage") == "?"
    for texts in (["a"], ['{"x":1}', '{"y":2}'], ["with\x00nul", "b"], ["\x01first"]):
        assert _split(_join(texts)) == texts


def test_a_write_is_packed_as_redis_py_packs_it() -> None:
    import redis

    args = ("EVALSHA", "a" * 40, 2, "k:lease", "k:feed", "7:host:42:ab", 10_000, "host:42:ab#1")
    tail = (123_456, 3, '{"x":"\u20ac"}\x00{"y":2}\x00é', 86_400_000)
    connection = redis.Connection()  # type: ignore[no-untyped-call]
    packed = b"".join(connection.pack_command(*args, *tail))  # type: ignore[no-untyped-call]
    assert _pack_head(12, *args) + _pack_args(*tail) == packed


def test_the_write_rate_lets_a_feed_at_its_pace_through_and_spaces_a_faster_one() -> None:
    rate = RateLimit(1000.0, 2.0)
    # Reads every 1 ms, some 0.2 ms late: none is held back.
    for i in range(1_000):
        assert rate.take(i * 0.001 + (0.0002 if i % 3 else 0.0)) is None
    # Reads every 0.1 ms: the burst at once, then one write a millisecond; a held read is
    # told when it may go, never more than a millisecond away.
    start, written, now = 1.0, 0, 1.0
    while now < start + 0.1:
        due = rate.take(now)
        if due is None:
            written += 1
        else:
            assert now < due <= now + 0.001
        now += 0.0001
    assert 100 <= written <= 102
    # After a quiet spell only the burst is banked.
    now += 1.0
    assert rate.take(now) is None and rate.take(now) is None and rate.take(now) is not None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, PUBLISH_RATE),
        ("250", 250.0),
        ("1e6", 1e6),
        ("0", PUBLISH_RATE),
        ("-5", PUBLISH_RATE),
        ("inf", PUBLISH_RATE),
        ("nan", PUBLISH_RATE),
        ("fast", PUBLISH_RATE),
    ],
)
def test_the_write_rate_setting_is_read_warily(
    value: str | None, expected: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("AGENTX_SYNC_PUBLISH_RATE", raising=False)
    else:
        monkeypatch.setenv("AGENTX_SYNC_PUBLISH_RATE", value)
    assert _publish_rate() == expected
