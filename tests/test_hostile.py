"""A misbehaving server, over a live connection: the client survives and the cache stays right."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import pytest

from agentx_sync import AgentExchangeWS, Connected, Disconnected, NexgentWS, ProtocolError
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import FAST, eventually, next_event, position

GOOD = '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"%s","timestamp":"2026-11-21T12:00:00Z"}}'

# (what the server sends, whether the connection must be re-established)
AGENTEXCHANGE_ABUSE: list[tuple[str | bytes, bool | None, str]] = [
    ("not json at all", None, "invalid JSON"),
    (b"\x00\x01binary", False, "a binary frame"),
    (b'{"channel":"ticker","data":{"price":"\xff\xfe"}}', True, "invalid UTF-8"),
    ("[" * 20_000 + "]" * 20_000, None, "deeply nested JSON"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":NaN}}', None, "NaN"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"Infinity"}}', None, "Infinity as text"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":true}}', None, "a boolean price"),
    ('{"channel":"ticker","symbol":12,"data":{"price":"1"}}', None, "a number where a string belongs"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{}}', None, "the price missing"),
    (
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"1","timestamp":5}}',
        None,
        "a number timestamp",
    ),
    ('{"channel":"orders","data":{"status":"filled"}}', None, "an order without id"),
    ('{"channel":"portfolio","data":{"total_equity":"lots"}}', None, "a non-decimal equity"),
    # Regressions: each of these ended the client, or entered the cache as a price.
    (
        '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"1","timestamp":"9999-12-31T23:59:59-01:00"}}',
        None,
        "a timestamp past year 9999 in UTC",
    ),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"-5"}}', None, "a negative price"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"0"}}', None, "a zero price"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"-1e999"}}', None, "a huge negative price"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"1_000"}}', None, "underscores"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"\u0661\u0660"}}', None, "Arabic-Indic digits"),
    ('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"1e99999999"}}', None, "a vast exponent"),
]


@pytest.fixture
def streaming() -> Iterator[tuple[Simulator, AgentExchangeWS]]:
    sim = Simulator(rate=0).start()
    ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST, max_message_size=64 * 1024)
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().subscriptions == ("ticker:BTCUSDT",))
    sim.send_raw(GOOD % "100.5")
    ws.wait_for_price("BTCUSDT", 5)
    yield sim, ws
    assert ws.close(2)
    sim.stop()


@pytest.mark.parametrize(
    ("payload", "drops", "what"), AGENTEXCHANGE_ABUSE, ids=[a[2] for a in AGENTEXCHANGE_ABUSE]
)
def test_agentexchange_survives(
    streaming: tuple[Simulator, AgentExchangeWS], payload: str | bytes, drops: bool | None, what: str
) -> None:
    sim, ws = streaming
    while ws.get_event(timeout=0) is not None:
        pass
    sim.send_raw(payload, text=True if isinstance(payload, bytes) and drops else None)
    eventually(lambda: ws.health().bad_messages == 1, what=f"{what} to be counted")
    assert ws.get_cached_price("BTCUSDT") == Decimal("100.5")  # never a wrong value
    if drops:
        assert isinstance(next_event(ws, Disconnected).error, ProtocolError)
        next_event(ws, Connected)
        eventually(lambda: "ticker:BTCUSDT" in ws.health().subscriptions)
    sim.send_raw(GOOD % "101")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == Decimal(101), what="the stream to go on")
    assert ws._conn.thread is not None and ws._conn.thread.is_alive()


def test_a_frame_over_the_maximum_size_drops_and_reconnects(
    streaming: tuple[Simulator, AgentExchangeWS],
) -> None:
    sim, ws = streaming
    sim.send_raw(GOOD % ("1" * 100_000))
    lost = next_event(ws, Disconnected)
    assert isinstance(lost.error, ProtocolError) and lost.error.close_code == 1009
    next_event(ws, Connected)
    assert ws.health().bad_messages == 1
    assert ws.get_cached_price("BTCUSDT") == Decimal("100.5")
    eventually(lambda: "ticker:BTCUSDT" in ws.health().subscriptions)
    sim.send_raw(GOOD % "102")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == Decimal(102))


def test_numbers_where_strings_belong_are_read_exactly(streaming: tuple[Simulator, AgentExchangeWS]) -> None:
    sim, ws = streaming
    sim.send_raw('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":64000.1}}')
    eventually(lambda: ws.get_cached_price("BTCUSDT") == Decimal("64000.1"))
    assert ws.health().bad_messages == 0


def test_unknown_types_and_channels_are_counted_and_ignored(
    streaming: tuple[Simulator, AgentExchangeWS],
) -> None:
    sim, ws = streaming
    sim.send_raw('{"channel":"news","data":{"headline":"x"}}')
    sim.send_raw('{"type":"maintenance","at":"soon"}')
    eventually(lambda: ws.health().ignored_messages == 2)
    assert ws.health().bad_messages == 0 and ws.connected


NEXGENT_ABUSE = [
    "{not json",
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%(t)s","price":NaN}]}}',
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%(t)s","price":"cheap"}]}}',
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":7,"price":1}]}}',
    '{"type":"price_update_batch","data":{"updates":"all of them"}}',
    '{"type":"initial_data","data":{"positions":[{"id":"x"}]}}',
    '{"type":"position_update","data":{"eventType":"position_updated","position":{"id":"%(p)s","purchaseAmount":"many"}}}',
    '{"type":"position_update","data":{"eventType":"position_created","position":{"tokenAddress":"x"}}}',
    '{"type":"position_update","data":{"eventType":"position_closed"}}',
    '{"type":"position_update","data":[]}',
    # Regressions: these raised decimal.Overflow in the P/L arithmetic and ended the client.
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%(t)s","price":1e999999}]}}',
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%(t)s","price":"1e999999"}]}}',
    '{"type":"position_update","data":{"eventType":"position_updated","position":{"id":"%(p)s",'
    '"tokenAddress":"%(t)s","purchasePrice":1e999999,"purchaseAmount":1e999999}}}',
    '{"type":"price_update_batch","data":{"updates":[{"tokenAddress":"%(t)s","price":-0.5}]}}',
]


def test_nexgent_survives_every_bad_message_with_the_cache_intact() -> None:
    with NexgentSimulator(price_interval=0) as sim:
        agent = sim.add_agent()
        raw = sim.open_position(agent, purchase_price=0.001, amount=10, notify=False)
        ws = NexgentWS(api_url=sim.url, token=sim.issue_token(), agent_id=agent, backoff=FAST)
        try:
            ws.start().wait_for_positions(5)
            before = ws.get_positions()
            for i, template in enumerate(NEXGENT_ABUSE, 1):
                sim.send_raw(template % {"t": raw["tokenAddress"].lower(), "p": raw["id"]})

                def counted(n: int = i) -> bool:
                    return ws.health().bad_messages == n

                eventually(counted, what=template)
            assert ws.get_positions() == before
            sim.send_raw(b'{"type":"ping","timestamp":"\xc3"}', text=True)  # invalid UTF-8: dropped, back
            next_event(ws, Disconnected)
            ws.wait_for_positions(5)
            sim.send_prices(agent, {raw["tokenAddress"]: 0.002})
            eventually(lambda: ws.get_cached_price(raw["tokenAddress"]) == Decimal("0.002"))
            assert position(ws, raw["id"]).profit_loss_percent == Decimal(100)
            assert ws.health().bad_messages == len(NEXGENT_ABUSE) + 1
        finally:
            assert ws.close(2)


def test_nexgent_numbers_as_strings_are_tolerated() -> None:
    with NexgentSimulator(price_interval=0) as sim:
        agent = sim.add_agent()
        raw = sim.open_position(agent, notify=False)
        ws = NexgentWS(api_url=sim.url, token=sim.issue_token(), agent_id=agent, backoff=FAST)
        try:
            ws.start().wait_for_positions(5)
            update = {"tokenAddress": raw["tokenAddress"].lower(), "price": "0.0003", "priceUsd": "0.045"}
            sim.send_raw(json.dumps({"type": "price_update_batch", "data": {"updates": [update]}}))
            eventually(lambda: ws.get_cached_price(raw["tokenAddress"]) == Decimal("0.0003"))
            assert ws.health().bad_messages == 0
        finally:
            assert ws.close(2)
