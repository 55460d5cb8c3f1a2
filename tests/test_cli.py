"""The agentx-sync command, run as a user runs it."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import DEFAULT_SIGINT

SCRIPT = Path(sys.executable).parent / "agentx-sync"
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "agentx_sync.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout, check=False)


def test_demo_shows_prices_orders_and_portfolio_and_ends_cleanly() -> None:
    done = run("demo", "--duration", "4.5", "--auto-trade", "1", "--plain")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Started the built-in AgentExchange simulator on ws://127.0.0.1:" in out
    assert "api_key=***" in out and "state: connected" in out
    assert re.search(
        r"\nBTCUSDT +6\d,\d{3}\.\d+ ", out
    )  # a live price (the simulator starts BTC near 64,500)
    assert re.search(
        r"\n  \d\d:\d\d:\d\d  [0-9a-f]{8}  (buy|sell)  [\d.,]+  [A-Z]+USDT  filled  [\d.,]+\n", out
    )
    assert "portfolio: equity " in out
    assert "Traceback" not in done.stderr


def test_demo_exits_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [*DEFAULT_SIGINT, *CMD, "demo", "--plain"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("symbol"):  # the first table is on screen
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_watch_agentexchange() -> None:
    with Simulator(rate=100, auto_trade=0.3) as sim:
        done = run(
            "watch",
            "BTCUSDT",
            "ethusdt",
            "--url",
            sim.url,
            "--api-key",
            "ak_test",
            "--duration",
            "2",
            "--plain",
        )
    assert done.returncode == 0, done.stderr
    assert re.search(r"\nBTCUSDT +6\d,\d{3}\.\d+ +[+-]?\d", done.stdout) and re.search(
        r"\nETHUSDT +3,\d{3}\.\d+ ", done.stdout
    )
    assert "ak_test" not in done.stdout


def test_watch_nexgent_positions_with_pl() -> None:
    with NexgentSimulator(price_interval=0.2) as sim:
        agent = sim.add_agent()
        sim.open_position(agent, symbol="BONK", purchase_price=0.00002, amount=10_000, notify=False)
        token = sim.issue_token()
        done = run(
            "watch",
            "--nexgent",
            "--url",
            sim.url,
            "--token",
            token,
            "--agent-id",
            agent,
            "--duration",
            "1.5",
            "--plain",
        )
    assert done.returncode == 0, done.stderr
    assert "P/L %" in done.stdout and "\nBONK " in done.stdout
    assert re.search(r"\nBONK +\w{32,44} +10,000\.00 +0\.00002000 +0\.0000\d{4} ", done.stdout)
    assert token not in done.stdout


def test_errors_are_one_line_and_a_non_zero_exit() -> None:
    with Simulator(rate=0) as sim:
        refused = run("watch", "BTCUSDT", "--url", sim.url, "--api-key", "ak_wrong", "--plain")
    assert refused.returncode == 2
    assert (
        refused.stderr.startswith("agentx-sync: authentication refused") and refused.stderr.count("\n") == 1
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = run(
        "watch", "BTCUSDT", "--url", f"ws://127.0.0.1:{port}", "--api-key", "k", "--timeout", "1", "--plain"
    )
    assert down.returncode == 1
    assert down.stderr.startswith(f"agentx-sync: cannot connect to ws://127.0.0.1:{port}")
    assert "Traceback" not in down.stderr and down.stderr.count("\n") == 1
    missing = run("watch", "BTCUSDT")
    assert missing.returncode == 2 and "api-key" in missing.stderr


def test_an_unreachable_host_is_reported_once_as_soon_as_known() -> None:
    # Toward issue 12: a refused connection was reported only after --timeout.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = run(  # run()'s own 60 s limit ends the test if the client waits out --timeout
        "watch", "BTCUSDT", "--url", f"ws://127.0.0.1:{port}", "--api-key", "k", "--timeout", "600", "--plain"
    )
    assert down.returncode == 1 and down.stderr.count("\n") == 1, down.stderr
    assert down.stderr.startswith(f"agentx-sync: cannot connect to ws://127.0.0.1:{port}")
    assert "Connection refused" in down.stderr


def test_sim_runs_and_stops() -> None:
    done = run("sim", "--port", "0", "--duration", "0.5")
    assert done.returncode == 0, done.stderr
    assert "AgentExchange simulator on ws://127.0.0.1:" in done.stdout


def test_nexgent_sim_prints_what_a_client_needs() -> None:
    done = run("sim", "--dialect", "nexgent", "--port", "0", "--duration", "0.5")
    assert done.returncode == 0, done.stderr
    assert "NEXGENT_TOKEN=eyJ." in done.stdout and "NEXGENT_AGENT_ID=agent-1" in done.stdout


def test_version() -> None:
    import agentx_sync

    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"agentx-sync {agentx_sync.__version__}"


def test_watch_into_a_closed_pipe_exits_quietly() -> None:
    with Simulator(rate=100) as sim:
        watch = subprocess.Popen(
            [
                *CMD,
                "watch",
                "BTCUSDT",
                "--url",
                sim.url,
                "--api-key",
                "ak_test",
                "--plain",
                "--interval",
                "0.05",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watch.stdout is not None
        assert watch.stdout.readline()  # it is drawing; now the reader goes away (| head)
        watch.stdout.close()
        try:
            code = watch.wait(timeout=30)
        finally:
            watch.kill()
        stderr = watch.stderr.read() if watch.stderr else ""
    assert code == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_interval_is_bounded() -> None:
    for bad in ("0", "-1", "1000", "soon"):
        done = run("watch", "BTCUSDT", "--url", "ws://127.0.0.1:9", "--api-key", "k", "--interval", bad)
        assert done.returncode == 2 and "argument --interval" in done.stderr, done.stderr
