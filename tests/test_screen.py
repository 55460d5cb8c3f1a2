"""The trading screen: driven in a real pseudo-terminal at 80x24 and 160x45, and its memory, purely."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
from collections.abc import Callable
from decimal import Decimal

import pyte
import pytest

from agentx_sync import AgentExchangeWS, NexgentWS
from agentx_sync.screen import Board, price, render_text, significant
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import eventually
from .test_cli import CMD


def on_terminal(columns: int, rows: int, *args: str, seconds: float = 4.0) -> list[str]:
    """Run ``agentx-sync *args`` in a pseudo-terminal of that size; the last full screen it drew."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen(
        [*CMD, *args, "--duration", str(seconds), "--interval", "0.2"],
        stdin=follower,
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(follower)
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    last: list[str] = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the command ended and closed the terminal
                break
            if not chunk:
                break
            stream.feed(chunk)
            if b"\x1b[?1049l" not in chunk:  # leaving the full-screen view: keep the frame before
                last = list(screen.display)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
        os.close(leader)
        if proc.stderr:
            proc.stderr.close()
    return last


@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (160, 45)])
def test_the_demo_fills_the_terminal_and_reads_well(columns: int, rows: int) -> None:
    screen = on_terminal(columns, rows, "demo", "--auto-trade", "0.25", "--seed", "7", seconds=5)
    text = "\n".join(screen)
    assert len(screen) == rows and all(len(line) == columns for line in screen)
    # The status: state, endpoint with the key masked, counters, on whole lines.
    assert "● connected" in screen[1] and "AgentExchange" in screen[1] and "ws://127.0.0.1:" in screen[1]
    assert re.search(r"reconnects 0 +messages [\d,]+", screen[2])
    assert "ak_test" not in text
    # Every symbol with a live price, a change column and an age.
    for symbol in ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT"):
        row = next(line for line in screen if f"│ {symbol}" in line)
        assert re.search(r"[▲▼ ] [\d,]+\.\d+ │ +[+-]?\d+\.\d\d% │ +\d+\.\ds", row), row
    # The portfolio is a panel of its own, beside the prices.
    portfolio = next(i for i, line in enumerate(screen) if "Portfolio" in line)
    assert "│ BTCUSDT" not in screen[portfolio] and "Equity" in screen[portfolio + 1]
    assert re.search(r"Equity +[\d,]+\.\d\d", text) and re.search(r"Cash +[\d,]+\.\d\d", text)
    # One row per order, its latest status; the newest first, and the table not cut off.
    orders = [line for line in screen if re.search(r"│ \d\d:\d\d:\d\d +│ [0-9a-f]{8} ", line)]
    ids = [re.findall(r"│ ([0-9a-f]{8}) ", line)[0] for line in orders]
    assert len(orders) >= 3 and len(ids) == len(set(ids))
    times = [re.findall(r"│ (\d\d:\d\d:\d\d) ", line)[0] for line in orders]
    assert times == sorted(times, reverse=True)
    assert not any("pending" in line for line in orders[1:])  # only the newest may still be pending
    tail = [line for line in screen if line.strip()][-1]
    assert tail.startswith("└") or "older orders not shown" in tail


@pytest.mark.parametrize(("columns", "rows"), [(80, 24), (160, 45)])
def test_the_nexgent_view_shows_symbol_address_prices_and_pl(columns: int, rows: int) -> None:
    with NexgentSimulator(price_interval=0.2, seed=4) as sim:
        agent = sim.add_agent()
        bonk = sim.open_position(agent, symbol="BONK", purchase_price=0.00002134, amount=10_000, notify=False)
        sim.open_position(agent, symbol="JUP", purchase_price=1.2345, amount=100, notify=False)
        args = ("watch", "--nexgent", "--url", sim.url, "--token", sim.issue_token(), "--agent-id", agent)
        screen = on_terminal(columns, rows, *args, seconds=3)
    text = "\n".join(screen)
    assert "Nexgent" in screen[1] and "token=***" in screen[1]
    assert re.search(r"2 positions +value [\d,]+\.\d{4} SOL +P/L [+-][\d,]+\.\d{4} SOL", text)
    row = next(line for line in screen if "│ BONK" in line)
    address = bonk["tokenAddress"]
    assert (address in row) if columns >= 110 else (f"{address[:4]}…{address[-4:]}" in row)
    assert re.search(r"0\.0000\d{4} │", row)  # four significant digits, not 0.00
    assert re.search(r"[+-]\d+\.\d\d% │", row)


def test_prices_keep_their_significant_digits() -> None:
    assert price(Decimal("64521.30")) == "64,521.30"
    assert price(Decimal("0.5213")) == "0.5213"
    assert significant(Decimal("0.0000213456")) == "0.00002135"
    assert significant(Decimal("1.23456")) == "1.235"
    assert significant(Decimal("12345.678")) == "12,345.68"
    assert len(price(Decimal("9" * 40))) < 30 and len(significant(Decimal("1e-39"))) < 30


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_error_leaves_the_screen_once_it_no_longer_holds(
    sim: Simulator, client: Callable[..., AgentExchangeWS]
) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    clock = Clock()
    board = Board(ws, ["BTCUSDT"], clock=clock)
    ws.start().wait_connected(5)
    assert board.frame().error is None
    sim.drop_all(code=1011, reason="server restart")
    frame = eventually(lambda: (f := board.frame()).error and f, 5, "the error on screen")
    assert "1011" in frame.error
    eventually(lambda: ws.connected, 10, "the reconnect")
    frame = board.frame()
    assert frame.error is None  # connected again: the old error is gone
    assert "error:" not in render_text(frame)
    sim.send_raw('{"type":"error","code":"INVALID_CHANNEL","message":"no such channel"}')
    frame = eventually(lambda: (f := board.frame()).error and f, 5, "a server error on screen")
    assert "no such channel" in frame.error
    clock.now += 16  # a fresh error during a good connection shows a while, then clears
    assert board.frame().error is None


def test_a_symbol_that_never_gets_a_price_shows_a_hint(client: Callable[..., AgentExchangeWS]) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT", "NOPEUSDT")
    clock = Clock()
    board = Board(ws, ["BTCUSDT", "NOPEUSDT"], clock=clock)
    ws.start().wait_for_price("BTCUSDT", 5)
    assert board.frame().missing == ()  # not at once: prices take a moment
    clock.now += 6
    frame = board.frame()
    assert frame.missing == ("NOPEUSDT",)
    assert "no price yet for NOPEUSDT: check the symbol" in render_text(frame)


def test_the_change_column_and_the_last_move(sim: Simulator, client: Callable[..., AgentExchangeWS]) -> None:
    sim.pause_market()
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    board = Board(ws, ["BTCUSDT"])
    ws.start().wait_connected(5)
    sim.wait_for(lambda: any("ticker:BTCUSDT" in subs for subs in sim.subscriptions()))
    sim.tick("BTCUSDT", "100")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == 100)
    assert board.frame().quotes[0].change == 0
    sim.tick("BTCUSDT", "110")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == 110)
    quote = board.frame().quotes[0]
    assert quote.change == 10 and quote.move == 1
    sim.tick("BTCUSDT", "99")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == 99)
    quote = board.frame().quotes[0]
    assert quote.change == -1 and quote.move == -1


def test_nexgent_frames_carry_positions(
    nsim: NexgentSimulator, agent: str, nclient: Callable[..., NexgentWS]
) -> None:
    nsim.open_position(agent, symbol="WIF", purchase_price=0.01, amount=5, notify=False)
    ws = nclient()
    ws.start().wait_for_positions(5)
    frame = Board(ws, []).frame()
    assert frame.client == "Nexgent" and [p.token_symbol for p in frame.positions] == ["WIF"]
    assert "WIF" in render_text(frame)
