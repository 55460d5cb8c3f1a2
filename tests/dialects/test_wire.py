"""The wire converters: what a real price, amount, timestamp and endpoint are."""

from __future__ import annotations

import decimal
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from agentx_sync import AgentExchangeWS, NexgentWS, ProtocolError
from agentx_sync.dialects._wire import as_dec, as_price, as_ts, websocket_endpoint
from agentx_sync.numbers import display

REFUSED_PRICES = [
    "-5",
    "0",
    "0.000",
    "-1e999",
    "1e999999",
    "1E-999999",
    "1_000",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: Decimal() accepts them
    " 5",
    "5 ",
    "NaN",
    "Infinity",
    "sNaN",
    "1" * 65,
    "1e41",
    "1e-41",
    "",
    "0x10",
]


@pytest.mark.parametrize("text", REFUSED_PRICES, ids=repr)
def test_what_is_not_a_price_is_refused(text: str) -> None:
    with pytest.raises(ProtocolError):
        as_price(text, "price")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("64521.30", Decimal("64521.30")),
        ("0.00000123", Decimal("0.00000123")),
        ("1e-40", Decimal("1e-40")),
        ("9.99e40", Decimal("9.99e40")),
        (0.0000123, Decimal("0.0000123")),
        (42, Decimal(42)),
    ],
)
def test_real_prices_pass_unchanged(value: object, expected: Decimal) -> None:
    assert as_price(value, "price") == expected


def test_amounts_may_be_zero_or_negative_but_stay_bounded() -> None:
    assert as_dec("0", "pnl") == 0 and as_dec("-12.5", "pnl") == Decimal("-12.5")
    for text in ("-1e999", "1e999999", "1_0", "\u0661"):
        with pytest.raises(ProtocolError):
            as_dec(text, "pnl")
    with pytest.raises(ProtocolError):
        as_dec(float("inf"), "pnl")
    with pytest.raises(ProtocolError):
        as_dec(10**70, "pnl")


def test_a_timestamp_out_of_range_in_utc_is_a_protocol_error() -> None:
    # Regression: valid ISO 8601, but 9999-12-31T23:59:59-01:00 is past year 9999 in UTC.
    with pytest.raises(ProtocolError):
        as_ts("9999-12-31T23:59:59-01:00", "timestamp")
    with pytest.raises(ProtocolError):
        as_ts("0001-01-01T00:00:00+01:00", "timestamp")
    assert as_ts("2026-11-21T12:00:00+01:00", "t") == datetime(2026, 11, 21, 11, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [Decimal("1E+999999"), Decimal("-1e-999999"), Decimal("1" * 200), Decimal("NaN"), Decimal("-Infinity")],
    ids=str,
)
def test_display_is_bounded_whatever_it_is_given(value: Decimal) -> None:
    assert len(display(value)) <= 30 and len(display(value, 2)) <= 30


def test_display_ignores_the_callers_decimal_context() -> None:
    with decimal.localcontext() as ctx:
        ctx.rounding, ctx.prec = decimal.ROUND_DOWN, 2
        ctx.traps[decimal.Inexact] = True
        assert display(Decimal("1.25"), 1) == "1.2" and display(Decimal("1.35"), 1) == "1.4"
        assert display(Decimal("64521.30")) == "64521.30"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ws://host:99999", "invalid port"),
        ("ws://host:abc", "invalid port"),
        ("ws://::1:8000", "IPv6 address in brackets"),
        ("ftp://host", "must be a ws://"),
        ("ws://", "must be a ws://"),
    ],
)
def test_malformed_endpoints_are_refused_at_construction(url: str, message: str) -> None:
    # Regression: these passed the constructor and crashed the IO thread later.
    with pytest.raises(ValueError, match=message):
        AgentExchangeWS("ak_test", url)
    with pytest.raises(ValueError, match=message):
        NexgentWS(url, "token", "agent")


def test_ipv6_in_brackets_is_accepted() -> None:
    assert websocket_endpoint("ws://[::1]:8000", "/ws/v1", "base_url").url == "ws://[::1]:8000/ws/v1"


def test_userinfo_is_kept_out_of_the_url_and_masked() -> None:
    where = websocket_endpoint("wss://bob:s%40cret@example.com/api", "/ws", "api_url")
    assert where.url == "wss://example.com/api/ws" and where.safe == "wss://***@example.com/api/ws"
    assert where.userinfo == "bob:s@cret"
    with pytest.raises(ValueError) as refused:
        websocket_endpoint("wss://bob:s3cret@example.com:99999", "/ws", "api_url")
    assert "s3cret" not in str(refused.value)


def test_wire_text_is_bounded() -> None:
    from agentx_sync.dialects import agentexchange, nexgent

    long_symbol = '{"channel":"ticker","symbol":"%s","data":{"price":"1"}}' % ("X" * 129)
    with pytest.raises(ProtocolError, match="longer than 128"):
        agentexchange.decode(long_symbol, 0.0)
    reason = '{"channel":"orders","data":{"order_id":"o","status":"rejected","rejected_reason":"%s"}}'
    with pytest.raises(ProtocolError, match="longer than 1024"):
        agentexchange.decode(reason % ("r" * 1025), 0.0)
    assert agentexchange.decode(reason % ("r" * 1024), 0.0) is not None
    batch = '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%s","price":1}]}}'
    with pytest.raises(ProtocolError):
        nexgent.decode(batch % ("a" * 129), 0.0)


@pytest.mark.parametrize("text", REFUSED_PRICES, ids=repr)
def test_the_tickers_fast_path_refuses_what_as_price_refuses(text: str) -> None:
    # The well-formed ticker's path inlines as_price's checks: this holds the two equal.
    from agentx_sync.dialects import agentexchange

    message = {
        "channel": "ticker",
        "symbol": "BTCUSDT",
        "data": {"price": text, "quantity": "0.5", "timestamp": "2026-11-21T12:00:00Z"},
    }
    with pytest.raises(ProtocolError):
        agentexchange.decode(json.dumps(message), 0.0)
