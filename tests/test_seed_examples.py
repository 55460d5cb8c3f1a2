"""The platform SDK's examples run unchanged but for the import, async handlers included.

Each file in ``tests/seeds/`` is a code example of the AgentExchange SDK's
WebSocket document. It runs in a subprocess against the simulator, which
accepts the document's own key (``ak_live_...``); the client finds the
simulator through ``AGENTEXCHANGE_WS_URL``. The test reads the example's
output until it shows what the document promises, then interrupts it as a
user would (Ctrl-C) and checks that it ended cleanly.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentx_sync.sim import Simulator

from .conftest import DEFAULT_SIGINT

SEEDS = Path(__file__).parent / "seeds"

# Runs a seed file as the document shows it: top-level ``await`` allowed (as in
# a notebook cell or ``python -m asyncio``), a daemon thread kept alive until
# Ctrl-C, and the import of the platform's SDK pointed at agentx_sync.
HARNESS = """
import ast, asyncio, sys, threading
source = open(sys.argv[1], encoding="utf-8").read()
source = source.replace("from agentexchange import", "from agentx_sync import")
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
result = eval(code, namespace)
if asyncio.iscoroutine(result):
    asyncio.run(result)
thread = namespace.get("thread")
if isinstance(thread, threading.Thread):
    print("main code continues", flush=True)
    thread.join()
"""

KEY = "ak_live_..."


@pytest.fixture
def seed_sim() -> Iterator[Simulator]:
    with Simulator(rate=200, api_keys=[KEY], auto_trade=0.1, candle_interval=0.2) as sim:
        yield sim


class Run:
    """A seed example in a subprocess, its output read line by line."""

    def __init__(self, seed: str, sim: Simulator) -> None:
        env = {
            **os.environ,
            "AGENTEXCHANGE_WS_URL": sim.url,
            "AGENTEXCHANGE_API_KEY": KEY,
            "PYTHONIOENCODING": "utf-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "default",  # a never-awaited coroutine must show
        }
        self.proc = subprocess.Popen(
            [*DEFAULT_SIGINT, sys.executable, "-c", HARNESS, str(SEEDS / seed)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def expect(self, *fragments: str, timeout: float = 30.0) -> None:
        """Read output until every fragment has appeared in some line."""
        missing = [f for f in fragments if not any(f in line for line in self.lines)]
        deadline = time.monotonic() + timeout
        while missing:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.proc.kill()
                _, err = self.proc.communicate(timeout=10)
                raise AssertionError(f"never printed {missing}; output {self.lines[-20:]}; stderr {err}")
            self.lines.append(line)
            missing = [f for f in missing if f not in line]

    def interrupt(self) -> str:
        """Ctrl-C; returns stderr once the process has ended."""
        self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("the example did not end on Ctrl-C") from None
        for sign in ("never awaited", "RuntimeWarning", "Task was destroyed", "Exception in thread"):
            assert sign not in err, err
        # The only traceback, if any, is the KeyboardInterrupt itself.
        assert "Traceback" not in err or err.rstrip().endswith("KeyboardInterrupt"), err
        return err


def test_decorators_with_async_handlers_and_top_level_await_connect(seed_sim: Simulator) -> None:
    run = Run("decorators.py", seed_sim)
    try:
        run.expect("BTC: $", "ETH: $", "→ pending", "→ filled", "Equity: $")
    finally:
        run.interrupt()
    # Ctrl-C closed the client: the simulator sees no connection left.
    seed_sim.wait_for(lambda: not seed_sim.connections(), timeout=10)


def test_every_channel_of_the_document(seed_sim: Simulator) -> None:
    run = Run("channels.py", seed_sim)
    try:
        run.expect("SOLUSDT: $", "1m candle closed at $", "ETH 1h: O=", "Filled at: $", "Equity: $")
        roi = next(line for line in run.lines if line.startswith("Equity: $"))
        assert "ROI: " in roi
    finally:
        run.interrupt()


def test_asyncio_run_connect(seed_sim: Simulator) -> None:
    run = Run("lifecycle.py", seed_sim)
    try:
        run.expect("BTC: $")
    finally:
        run.interrupt()
    seed_sim.wait_for(lambda: not seed_sim.connections(), timeout=10)


def test_run_forever_in_a_daemon_thread_with_a_sync_handler(seed_sim: Simulator) -> None:
    run = Run("run_forever.py", seed_sim)
    try:
        run.expect("main code continues", "BTC: $")
    finally:
        run.interrupt()


def test_the_async_event_loop_example_runs_the_strategy_beside_the_feed(seed_sim: Simulator) -> None:
    seed_sim.tick("BTCUSDT", "70000")  # the strategy's condition holds from the first look
    run = Run("async_event_loop.py", seed_sim)
    try:
        run.expect("[FILL] ", "BTC above $65k")
    finally:
        run.interrupt()
    seed_sim.wait_for(lambda: not seed_sim.connections(), timeout=10)
