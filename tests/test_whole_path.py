"""No single message stops a client: hypothesis over the whole path a message takes.

Each generated message goes from the simulator over a real loopback socket
through the frame reader, the dialect's decoder, the cache and the callbacks
of a running client, followed by a marker message. The client must take the
marker (so it is alive and reading), never reconnect, count what it refused,
and hold only real, bounded values, which every formatter shows in bounded
text.
"""

from __future__ import annotations

import copy
import io
import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from agentx_sync import AgentExchangeWS, ConnectionState, NexgentWS, Position
from agentx_sync.integrations.tools import tools_for
from agentx_sync.numbers import MAX_EXPONENT
from agentx_sync.screen import Board, render, render_text
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import FAST, eventually

EXAMPLES = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


class Raw(str):
    """Text placed in the JSON as it is (a number no JSON encoder would write)."""


def dumps(value: Any) -> str:
    raws: list[str] = []

    def mark(v: Any) -> Any:
        if isinstance(v, Raw):
            raws.append(str(v))
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(v, dict):
            return {k: mark(x) for k, x in v.items()}
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps(mark(value))
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


# Numbers as the wire might carry them: extreme exponents, signs, scripts, shapes.
exponents = st.integers(min_value=-2_000_000, max_value=2_000_000)
numeral_texts = st.one_of(
    st.builds(lambda m, e: f"{m}e{e}", st.integers(-(10**6), 10**6), exponents),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(
        ["-5", "0", "-0", "-1e999", "1e999999", "1_000", "\u0661\u0662", "Infinity", "NaN", " 7", "1" * 500]
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(min_value=-(10**80), max_value=10**80).map(str),
)
wire_numbers = st.one_of(numeral_texts, numeral_texts.map(Raw), st.floats(allow_nan=False), st.none())
timestamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(
        lambda d, h: d.isoformat() + f"{h:+03d}:00",
        st.datetimes(),
        st.integers(min_value=-23, max_value=23),
    ),
    st.sampled_from(["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2026-11-21T12:00:00Z", ""]),
    st.text(max_size=30),
)
junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
values = st.one_of(wire_numbers, timestamps, junk)


def _bounded(value: Any) -> None:
    if isinstance(value, Decimal):
        assert value.is_finite()
        assert value.is_zero() or value.adjusted() <= 3 * MAX_EXPONENT + 10


# -- AgentExchange -------------------------------------------------------------------

ticker_data = st.fixed_dictionaries(
    {},
    optional={
        "price": wire_numbers,
        "quantity": wire_numbers,
        "timestamp": timestamps,
        "is_buyer_maker": st.one_of(st.booleans(), junk),
    },
)
candle_data = st.fixed_dictionaries(
    {},
    optional={k: wire_numbers for k in ("open", "high", "low", "close", "volume")}
    | {"time": timestamps, "is_closed": st.booleans()},
)
order_data = st.fixed_dictionaries(
    {"order_id": st.one_of(st.just("o-1"), junk), "status": st.sampled_from(["filled", "pending", "x", ""])},
    optional={k: wire_numbers for k in ("quantity", "executed_price", "fee", "price")}
    | {"filled_at": timestamps, "symbol": st.sampled_from(["BTCUSDT", ""])},
)
portfolio_data = st.fixed_dictionaries(
    {},
    optional={k: wire_numbers for k in ("total_equity", "available_cash", "realized_pnl", "roi_pct")}
    | {"timestamp": timestamps},
)
agentexchange_messages = st.one_of(
    st.builds(
        lambda d, s: {"channel": "ticker", "symbol": s, "data": d},
        ticker_data,
        st.sampled_from(["BTCUSDT", "ETHUSDT", "", "btcusdt"]),
    ),
    st.builds(
        lambda d: {"channel": "candles", "symbol": "BTCUSDT", "interval": "1m", "data": d}, candle_data
    ),
    st.builds(lambda d: {"channel": "orders", "data": d}, order_data),
    st.builds(lambda d: {"channel": "portfolio", "data": d}, portfolio_data),
    st.dictionaries(st.sampled_from(["channel", "type", "data", "symbol"]), values, max_size=4),
)


@pytest.fixture
def agentexchange() -> Iterator[tuple[Simulator, AgentExchangeWS]]:
    with Simulator(rate=0) as sim:
        ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST)
        ws.subscribe_ticker("BTCUSDT", "ETHUSDT", "MARKER")
        ws.subscribe_candles("BTCUSDT", "1m")
        calls: list[Any] = []
        ws.on_ticker("all")(calls.append)
        ws.on_order_update()(calls.append)
        ws.start().wait_connected(5)
        yield sim, ws
        assert ws.close(2)


def test_no_agentexchange_message_stops_the_client(agentexchange: tuple[Simulator, AgentExchangeWS]) -> None:
    sim, ws = agentexchange
    marker = iter(range(1, 10**9))
    tools = {t.name: t for t in tools_for(ws, wait=0.01)}

    @EXAMPLES
    @given(message=agentexchange_messages)
    def one(message: dict[str, Any]) -> None:
        n = next(marker)
        sim.send_raw(dumps(message))
        sim.send_raw(json.dumps({"channel": "ticker", "symbol": "MARKER", "data": {"price": str(n)}}))
        eventually(lambda: ws.get_cached_price("MARKER") == n, what="the marker after a hostile message")
        assert ws.state is ConnectionState.CONNECTED
        for ticker in ws._state.ticker_snapshot().values():
            assert ticker.price > 0 and -MAX_EXPONENT <= ticker.price.adjusted() <= MAX_EXPONENT
            assert len(tools["get_price"].run(symbol=ticker.symbol)) < 200
        for order in ws.get_orders():
            for v in order.to_dict().values():
                _bounded(v)
        assert len(tools["get_orders"].run()) < 3000 and len(tools["get_portfolio"].run()) < 400
        assert len(ws._repr_html_()) < 20_000
        on_screen(Board(ws, ["BTCUSDT", "ETHUSDT", "MARKER"]))  # the watch screen

    one()
    health = ws.health()
    assert health.reconnects == 0 and ws._conn.thread is not None and ws._conn.thread.is_alive()
    assert health.bad_messages > 0  # the hostile ones were counted, not silently dropped


def on_screen(board: Board) -> None:
    """The watch screen stays bounded, as text and drawn by rich at 80x24."""
    frame = board.frame()
    assert all(len(line) < 400 for line in render_text(frame).splitlines())
    console = Console(width=80, height=24, file=io.StringIO(), force_terminal=True)
    console.print(render(frame, 80, 24), height=24)
    assert len(console.file.getvalue().splitlines()) <= 24  # type: ignore[attr-defined]


# -- Nexgent -------------------------------------------------------------------------

TOKEN = "So1HostileToken"
position_fields = st.fixed_dictionaries(
    {"id": st.sampled_from(["p1", "p2"]), "tokenAddress": st.sampled_from([TOKEN, TOKEN.lower(), "Other"])},
    optional={
        k: wire_numbers
        for k in (
            "purchasePrice",
            "purchaseAmount",
            "remainingAmount",
            "realizedProfitSol",
            "currentPrice",
            "currentPriceUsd",
            "profitLossSol",
            "profitLossPercent",
        )
    }
    | {"createdAt": timestamps, "tokenSymbol": st.one_of(st.text(max_size=8), junk)},
)
nexgent_messages = st.one_of(
    st.builds(
        lambda ups: {"type": "price_update_batch", "data": {"updates": ups}},
        st.lists(
            st.fixed_dictionaries(
                {"tokenAddress": st.sampled_from([TOKEN.lower(), "other"])},
                optional={"price": wire_numbers, "priceUsd": wire_numbers},
            ),
            max_size=3,
        ),
    ),
    st.builds(
        lambda kind, p: {"type": "position_update", "data": {"eventType": kind, "position": p}},
        st.sampled_from(["position_created", "position_updated", "position_closed", "bogus"]),
        position_fields,
    ),
    st.builds(
        lambda ps: {"type": "initial_data", "data": {"positions": ps}}, st.lists(position_fields, max_size=2)
    ),
    st.builds(lambda d: {"type": "error", "data": d}, junk),
    st.dictionaries(st.sampled_from(["type", "data", "timestamp"]), values, max_size=3),
)


@pytest.fixture
def nexgent() -> Iterator[tuple[NexgentSimulator, NexgentWS]]:
    with NexgentSimulator(price_interval=0, seed=3) as sim:
        agent = sim.add_agent("agent-h")
        ws = NexgentWS(sim.url, sim.issue_token(), agent, backoff=FAST)
        changes: list[Any] = []
        ws.on_positions()(changes.append)
        ws.on_position_update()(changes.append)
        ws.start().wait_for_positions(5)
        yield sim, ws
        assert ws.close(2)


def test_no_nexgent_message_stops_the_client(nexgent: tuple[NexgentSimulator, NexgentWS]) -> None:
    sim, ws = nexgent
    marker = iter(range(1, 10**9))
    tools = {t.name: t for t in tools_for(ws, wait=0.01)}
    seen = threading.Event()

    @EXAMPLES
    @given(message=nexgent_messages)
    def one(message: dict[str, Any]) -> None:
        n = next(marker)
        sim.send_raw(dumps(message))
        sim.send_raw(
            json.dumps(
                {"type": "price_update_batch", "data": {"updates": [{"tokenAddress": "mark", "price": n}]}}
            )
        )
        eventually(lambda: ws.get_cached_price("MARK") == n, what="the marker after a hostile message")
        assert ws.state is ConnectionState.CONNECTED
        for p in ws.get_positions():
            assert isinstance(p, Position)
            assert hash(p) == hash(copy.copy(p)) and repr(p) and p == copy.copy(p)
            for v in p.to_dict().values():
                _bounded(v)
            if p.current_price is not None:
                assert p.current_price > 0
        assert len(tools["get_positions"].run()) < 5000
        assert len(tools["get_token_price"].run(token_address=TOKEN)) < 300
        assert len(ws._repr_html_()) < 20_000
        on_screen(Board(ws, []))  # the watch screen
        seen.set()

    one()
    health = ws.health()
    assert seen.is_set() and health.reconnects == 0 and health.bad_messages > 0
    assert ws._conn.thread is not None and ws._conn.thread.is_alive()
