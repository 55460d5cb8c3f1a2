"""The fault matrix: every fault over real loopback sockets, for both clients.

Each test asserts what a user sees afterwards: fresh data in the cache,
subscriptions restored, callbacks firing, ``health()`` telling the truth, all
within a bounded time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agentx_sync import (
    AgentExchangeWS,
    BackoffPolicy,
    Connected,
    ConnectionState,
    Disconnected,
    NexgentWS,
    StaleConnectionError,
)
from agentx_sync.client import BaseClient
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import DEFAULT_SIGINT, FAST, _sockets, eventually, next_event

RECOVERY = 5.0  # seconds within which a client must be streaming again


class Rig:
    """One platform: its simulator, a client factory, and a way to see fresh data."""

    def __init__(self, name: str, ping_interval: float = 30.0, keepalive: float | None = None) -> None:
        self.name = name
        self.clients: list[BaseClient] = []
        self.sim: Simulator | NexgentSimulator
        if name == "agentexchange":
            self.sim = Simulator(
                rate=200, ping_interval=ping_interval, pong_timeout=ping_interval * 2, keepalive=keepalive
            )
        else:
            self.sim = NexgentSimulator(price_interval=0.02, ping_interval=ping_interval, keepalive=keepalive)
            self.agent = self.sim.add_agent("agent-1")
            self.position = self.sim.open_position(self.agent, notify=False)["id"]
            self.token = self.sim.issue_token()
        self.sim.start()

    def pongs(self) -> int:
        return sum(
            1
            for m in self.sim.received()
            if isinstance(m, dict) and "pong" in (m.get("action"), m.get("type"))
        )

    def make(self, **options: Any) -> Any:
        options.setdefault("backoff", FAST)
        ws: BaseClient
        if self.name == "agentexchange":
            ws = AgentExchangeWS(api_key="ak_test", base_url=self.sim.url, **options)
            ws.subscribe_ticker("BTCUSDT")
        else:
            ws = NexgentWS(api_url=self.sim.url, token=self.token, agent_id=self.agent, **options)
        self.clients.append(ws)
        return ws

    def on_data(self, ws: Any, callback: Callable[[Any], Any]) -> None:
        if self.name == "agentexchange":
            ws.on_ticker("BTCUSDT")(callback)
        else:
            ws.on_positions()(callback)

    def marker(self, ws: Any) -> Any:
        return ws.get_ticker("BTCUSDT") if self.name == "agentexchange" else ws.get_position(self.position)

    def wait_fresh(self, ws: Any) -> None:
        """Block until data newer than what the cache holds now arrives."""
        before = self.marker(ws)
        eventually(
            lambda: self.marker(ws) is not None and self.marker(ws) is not before, RECOVERY, "fresh data"
        )

    def wait_restored(self, ws: Any) -> None:
        """Block until the server serves this client again (subscriptions, initial data)."""
        if isinstance(self.sim, Simulator):
            sim = self.sim
            sim.wait_for(lambda: any("ticker:BTCUSDT" in s for s in sim.subscriptions()), RECOVERY)
        else:
            ws.wait_for_positions(RECOVERY)

    def close(self) -> None:
        for ws in self.clients:
            assert ws.close(2.0)
        self.sim.stop()


@pytest.fixture(params=["agentexchange", "nexgent"])
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(request.param)
    yield r
    r.close()


def _recovers(rig: Rig, ws: Any, fault: Callable[[], None]) -> None:
    calls: list[Any] = []
    rig.on_data(ws, calls.append)
    ws.start().wait_connected(5)
    rig.wait_fresh(ws)
    fault()
    assert isinstance(next_event(ws, Disconnected).error, Exception)
    assert next_event(ws, Connected, timeout=RECOVERY).reconnect
    rig.wait_restored(ws)
    rig.wait_fresh(ws)
    count = len(calls)
    eventually(lambda: len(calls) > count, RECOVERY, "callbacks after the fault")
    health = ws.health()
    assert health.state is ConnectionState.CONNECTED and health.reconnects == 1
    assert health.last_message_age is not None and health.last_message_age < 1.0


def test_server_closes_cleanly(rig: Rig) -> None:
    _recovers(rig, rig.make(), rig.sim.drop_all)


def test_server_socket_is_reset(rig: Rig) -> None:
    _recovers(rig, rig.make(), lambda: rig.sim.drop_all(abrupt=True))


def test_server_restarts_on_the_same_port_after_a_delay(rig: Rig) -> None:
    _recovers(rig, rig.make(), lambda: rig.sim.restart(down_for=0.5))


def test_half_open_is_detected_within_stale_timeout_plus_one_second(rig: Rig) -> None:
    ws = rig.make(stale_timeout=0.5)
    ws.start().wait_connected(5)
    rig.wait_fresh(ws)
    rig.sim.half_open()
    lost = next_event(ws, Disconnected, timeout=0.5 + 1.0)
    assert isinstance(lost.error, StaleConnectionError)
    assert next_event(ws, Connected, timeout=RECOVERY).reconnect
    rig.wait_fresh(ws)


def test_server_down_at_start_comes_up_later(rig: Rig) -> None:
    port = rig.sim.port
    rig.sim.stop_listening()
    ws = rig.make(backoff=BackoffPolicy(initial=0.05, maximum=0.3, jitter=0.5))
    ws.start()
    delays = [next_event(ws, Disconnected).retry_in for _ in range(6)]
    assert all(d is not None and d <= 0.3 for d in delays)  # capped
    assert ws.state in (ConnectionState.BACKOFF, ConnectionState.CONNECTING)
    rig.sim.start_listening()
    assert rig.sim.port == port
    next_event(ws, Connected, timeout=RECOVERY)
    rig.wait_fresh(ws)


def test_twenty_clients_started_together_do_not_retry_in_lock_step() -> None:
    with socket.socket() as probe:  # a port with nothing behind it (loopback)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clients = [
        AgentExchangeWS(
            api_key="ak_test",
            base_url=f"ws://127.0.0.1:{port}",
            backoff=BackoffPolicy(initial=0.2, maximum=0.4),
            close_previous=False,  # twenty clients on one key, on purpose
        )
        for _ in range(20)
    ]
    try:
        for ws in clients:
            ws.start()
        first = [next_event(ws, Disconnected).retry_in for ws in clients]
        assert len({round(d, 4) for d in first}) >= 18  # jittered, not all the same
        with Simulator(port=port, rate=100) as sim:
            for ws in clients:
                next_event(ws, Connected, timeout=RECOVERY)
            # The server counts a connection a moment after the client sees it open.
            eventually(lambda: sim.connections_total >= 20, what="the server to count every connection")
            for ws in clients:
                assert ws.close(2)
    finally:
        for ws in clients:
            ws.close(2)


def test_callback_raising_on_every_message(rig: Rig) -> None:
    ws = rig.make()

    def broken(_: Any) -> None:
        raise ValueError("always")

    rig.on_data(ws, broken)
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().callback_errors >= 10)
    rig.wait_fresh(ws)
    assert ws.connected and ws.health().reconnects == 0


@pytest.mark.parametrize("name", ["agentexchange", "nexgent"])
def test_callback_sleeping_for_seconds(name: str) -> None:
    rig = Rig(name, ping_interval=0.1)
    try:
        ws = rig.make(stale_timeout=1.0)
        release = threading.Event()
        rig.on_data(ws, lambda _: release.wait(3))
        ws.start().wait_connected(5)
        rig.wait_fresh(ws)
        pongs = rig.pongs()
        rig.wait_fresh(ws)  # the cache moves on while the callback sleeps
        rig.sim.wait_for(lambda: rig.pongs() >= pongs + 3, 5)  # and pings are answered
        assert ws.health().reconnects == 0
        release.set()
    finally:
        rig.close()


def test_consumer_that_never_drains_the_queue(rig: Rig) -> None:
    ws = rig.make(event_queue_size=50, callback_queue_size=50)
    release = threading.Event()
    rig.on_data(ws, lambda _: release.wait(10))  # callbacks stuck too
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().dropped_events > 100 and ws.health().dropped_callbacks > 50, 10)
    assert len(ws._events) == 50 and len(ws._dispatcher.queue) <= 50
    rig.wait_fresh(ws)
    release.set()


def test_close_during_a_hanging_connect() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept backlog so that the next SYN goes unanswered
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        ws = AgentExchangeWS(api_key="ak_test", base_url=f"ws://127.0.0.1:{port}", connect_timeout=30)
        ws.start()
        # The connect hangs: no Disconnected (which a refusal would bring) for a while.
        assert ws.get_event(timeout=0.5) is None
        assert ws.state is ConnectionState.CONNECTING
        assert ws.close(timeout=0.5)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_close_during_a_handshake_that_never_answers() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    ws = AgentExchangeWS(api_key="ak_test", base_url=f"ws://127.0.0.1:{port}", connect_timeout=30)
    try:
        ws.start()
        conn, _ = listener.accept()  # accepted, then silence: the upgrade never completes
        try:
            conn.recv(4096)
            assert ws.state is ConnectionState.CONNECTING
            assert ws.close(timeout=0.5)
        finally:
            conn.close()
    finally:
        ws.close()
        listener.close()


def test_close_during_backoff_read_and_callback_for_both(rig: Rig) -> None:
    ws = rig.make(stale_timeout=60)
    ws.start().wait_connected(5)
    rig.sim.half_open()  # the read now blocks for good
    assert ws.close(timeout=0.5)
    again = rig.make()
    results: list[bool] = []
    rig.on_data(again, lambda _: results.append(again.close(1)) if not results else None)
    # Not wait_connected(): the callback may close the client before that wait
    # sees "connected" (it then raises ClientClosedError, rightly).
    again.start()
    eventually(lambda: results)
    assert results == [True] and again.close(1) and again.close(1)


def test_500_start_close_cycles_return_to_baseline() -> None:
    with Simulator(rate=50) as sim:
        baseline_threads = threading.active_count()
        baseline_sockets = len(_sockets())
        for i in range(500):
            ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST)
            ws.start()
            if i % 2:
                ws.wait_connected(5)  # every other one closes while still connecting
            assert ws.close(2)
        eventually(lambda: len(sim.connections()) == 0, 5, "the server to see every close")
        assert threading.active_count() == baseline_threads
        assert len(_sockets()) == baseline_sockets


SCRIPT = """
import sys
from agentx_sync import AgentExchangeWS
ws = AgentExchangeWS(api_key="ak_test", base_url=sys.argv[1])
ws.on_connect()(lambda e: print("connected", flush=True))
{body}
"""


def _spawn(sim_url: str, body: str) -> subprocess.Popen[str]:
    code = SCRIPT.format(body=textwrap.dedent(body))
    return subprocess.Popen(
        [*DEFAULT_SIGINT, sys.executable, "-c", code, sim_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigint_ends_run_forever_in_the_main_thread() -> None:
    with Simulator(rate=100) as sim:
        proc = _spawn(sim.url, "ws.run_forever()")
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=5)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGINT  # what an uncaught KeyboardInterrupt does
        assert "KeyboardInterrupt" in err
        eventually(lambda: len(sim.connections()) == 0, 5, "the connection to be closed")


def test_sigint_landing_on_another_thread_still_ends_run_forever() -> None:
    # Regression: run_forever() waited on a lock without a timeout, so a
    # Ctrl-C that the OS delivered to one of the library's threads (any
    # thread may receive a process signal) left the main thread blocked for ever.
    with Simulator(rate=100) as sim:
        proc = _spawn(
            sim.url,
            """
            import signal, threading
            def aim(event):
                while not ws._state._waiting:  # the main thread is in run_forever()'s wait
                    threading.Event().wait(0.01)
                signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # to this thread only
            ws.on_connect()(aim)
            ws.run_forever()
            """,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "connected"
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == -signal.SIGINT and "KeyboardInterrupt" in err


def test_daemon_thread_client_does_not_keep_the_interpreter_alive() -> None:
    with Simulator(rate=100) as sim:
        body = """
        import threading
        threading.Thread(target=ws.run_forever, daemon=True).start()
        ws.wait_for_price("BTCUSDT", timeout=5)
        print("main thread ends", flush=True)
        """
        proc = _spawn(sim.url, body)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "main thread ends" in out


@pytest.mark.parametrize("name", ["agentexchange", "nexgent"])
def test_protocol_ping_frames_are_answered(name: str) -> None:
    # uvicorn, in front of the real AgentExchange server, pings with control
    # frames and drops a client whose pong is late.
    rig = Rig(name, keepalive=0.05)
    try:
        ws = rig.make()
        ws.start().wait_connected(5)
        conn = rig.sim.wait_connections(1)[0]
        for _ in range(10):  # each wait spans several 50 ms ping rounds
            rig.wait_fresh(ws)
        assert conn.ws.latency > 0  # pongs came back
        assert ws.health().reconnects == 0 and ws.connected
    finally:
        rig.close()
