"""Shared fixtures: leak checks, a simulator per test, clients that always close."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentx_sync import AgentExchangeWS, BackoffPolicy, NexgentWS, Position
from agentx_sync.client import BaseClient
from agentx_sync.sim import NexgentSimulator, Simulator

# CrewAI (imported by its tests) starts a telemetry thread, and would send data, unless told not to.
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

#: Fast reconnects for tests; the defaults (1 s doubling to 60 s) are tested purely.
FAST = BackoffPolicy(initial=0.05, maximum=0.2, jitter=0.2, stable_after=5.0)


def _sockets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread running or a socket open."""
    threads = set(threading.enumerate())
    sockets = _sockets()
    yield
    deadline = time.monotonic() + 2.0
    for thread in threading.enumerate():
        if thread not in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in threading.enumerate() if t not in threads and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"
    if request.node.get_closest_marker("foreign_sockets") is None:
        opened = _sockets() - sockets
        assert not opened, f"sockets left open: {len(opened)}"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(rate=200, ping_interval=30, seed=1) as server:
        yield server


@pytest.fixture
def client(sim: Simulator) -> Iterator[Callable[..., AgentExchangeWS]]:
    """A factory of AgentExchangeWS clients on ``sim``, closed after the test."""
    made: list[AgentExchangeWS] = []

    def make(**options: Any) -> AgentExchangeWS:
        options.setdefault("api_key", "ak_test")
        options.setdefault("base_url", sim.url)
        options.setdefault("backoff", FAST)
        ws = AgentExchangeWS(**options)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        assert ws.close(timeout=2.0), "close() did not join every thread"


@pytest.fixture
def nsim() -> Iterator[NexgentSimulator]:
    with NexgentSimulator(price_interval=0, ping_interval=30, seed=2) as server:
        yield server


@pytest.fixture
def agent(nsim: NexgentSimulator) -> str:
    return nsim.add_agent("agent-1")


@pytest.fixture
def nclient(nsim: NexgentSimulator, agent: str) -> Iterator[Callable[..., NexgentWS]]:
    made: list[NexgentWS] = []

    def make(**options: Any) -> NexgentWS:
        options.setdefault("api_url", nsim.url.replace("ws://", "http://"))
        options.setdefault("token", nsim.issue_token())
        options.setdefault("agent_id", agent)
        options.setdefault("backoff", FAST)
        ws = NexgentWS(**options)
        made.append(ws)
        return ws

    yield make
    for ws in made:
        assert ws.close(timeout=2.0)


EXAMPLES = Path(__file__).parent.parent / "examples"

#: Prefix for a command that a test interrupts with SIGINT: it runs the command
#: with Ctrl-C delivered as a terminal delivers it. A shell's background job
#: ignores SIGINT, children inherit that, and Python then installs no
#: KeyboardInterrupt handler, whatever the library does.
DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
]


def run_example(script: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``examples/<script>`` as a user would, with extra environment."""
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def eventually(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Wait (on an Event, in 10 ms steps) until ``predicate()`` is truthy."""
    step = threading.Event()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        step.wait(0.01)


def position(ws: NexgentWS, position_id: str) -> Position:
    """A cached Nexgent position that must be there."""
    found = ws.get_position(position_id)
    assert found is not None, f"no position {position_id}"
    return found


def next_event(ws: BaseClient, kind: type, timeout: float = 5.0) -> Any:
    """The next event of ``kind`` from the client's event queue."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = ws.get_event(timeout=left)
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} event within {timeout} s")


def run_in_child(body: Callable[[], dict[str, Any]], timeout: float = 15.0) -> dict[str, Any]:
    """Fork; run ``body`` in the child; return what it reported (killing a child that hangs)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read)
            os.write(write, json.dumps(body()).encode())
        except BaseException as exc:
            os.write(write, json.dumps({"error": repr(exc)}).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(read)
            raise AssertionError("the forked child hung")
        threading.Event().wait(0.01)
    with os.fdopen(read) as pipe:
        return json.loads(pipe.read() or "{}")  # type: ignore[no-any-return]
