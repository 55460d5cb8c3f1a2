"""The agentx-sync command, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "agentx-sync"
CMD = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "agentx_sync.cli"]


def test_demo_shows_prices_orders_and_portfolio_and_ends_cleanly() -> None:
    done = subprocess.run(
        [*CMD, "demo", "--duration", "4.5", "--auto-trade", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Connected: ws://127.0.0.1:" in out and "api_key=***" in out
    assert "BTCUSDT 6" in out  # a live price (the simulator starts BTC near 64,500)
    assert "-> filled @" in out and "portfolio  equity" in out
    assert "Traceback" not in done.stderr


def test_demo_exits_cleanly_on_ctrl_c() -> None:
    proc = subprocess.Popen([*CMD, "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Connected"):
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_sim_runs_and_stops() -> None:
    done = subprocess.run(
        [*CMD, "sim", "--port", "0", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert "AgentExchange simulator on ws://127.0.0.1:" in done.stdout


def test_nexgent_sim_prints_what_a_client_needs() -> None:
    done = subprocess.run(
        [*CMD, "sim", "--dialect", "nexgent", "--port", "0", "--duration", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "NEXGENT_TOKEN=eyJ." in done.stdout and "NEXGENT_AGENT_ID=agent-1" in done.stdout
