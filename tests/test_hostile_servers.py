"""Servers that misbehave below the WebSocket layer: they trickle, flood, redirect or stop reading.

Each is a raw TCP server on 127.0.0.1 (``tests/rawserver.py``), bounded in
time and count, that stops by itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from agentx_sync import (
    AgentExchangeWS,
    ConnectionLostError,
    ConnectionState,
    Disconnected,
)

from .conftest import FAST, eventually, next_event
from .rawserver import RawConn, RawServer, text_frame


def returns_within(seconds: float, call: Callable[[], Any]) -> Any:
    """Run ``call`` on a helper thread; fail if it blocks longer than ``seconds``."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call blocked for more than {seconds} s"
    return result[0] if result else None


def test_a_server_that_pings_but_never_reads_is_dropped_and_no_caller_blocks() -> None:
    # Regression: pong replies filled the send buffer; close(timeout=2), health()
    # and subscribe() then blocked for many seconds and stale detection stopped.
    # Application pings, and protocol pings with the largest payload (125 bytes),
    # whose pongs echo it: the client's output outgrows the kernel's buffers fast.
    pings = (text_frame('{"type":"ping"}') + bytes([0x89, 125]) + b"p" * 125) * 1000

    def flood(conn: RawConn) -> None:
        conn.accept_upgrade()
        # Blocking sends: a client starved of CPU for a second (a busy machine)
        # must not look like a server that hung up. close() ends a blocked send.
        conn.sock.settimeout(None)
        sent = 0
        while conn.running and sent < 200_000_000:  # never reads again
            conn.sock.sendall(pings)
            sent += len(pings)

    with RawServer(flood, limit=55, rcvbuf=4096) as server:
        ws = AgentExchangeWS("ak_test", server.url, backoff=FAST, stale_timeout=6)
        try:
            ws.start()
            lost = next_event(ws, Disconnected, 45)
            assert isinstance(lost.error, ConnectionLostError)
            assert "stopped reading" in str(lost.error), lost.error
            # While the flood goes on, nothing a user calls waits for the peer.
            returns_within(2, ws.health)
            returns_within(2, lambda: ws.subscribe_ticker("BTCUSDT"))
            assert returns_within(3, lambda: ws.close(timeout=2)) is True
        finally:
            ws.close(2)


@pytest.fixture
def trickle_server() -> Any:
    def trickle(conn: RawConn) -> None:
        conn.read_request()
        answer = b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(
            b"X-Slow-%d: a\r\n" % i for i in range(500)
        )
        for byte in answer:  # a valid answer, one byte every 50 ms: never finished in time
            if not conn.running:
                return
            conn.sock.sendall(bytes([byte]))
            conn.server.stopped.wait(0.05)

    with RawServer(trickle, limit=20) as server:
        yield server


def test_an_upgrade_answer_that_trickles_is_bounded_by_connect_timeout(trickle_server: RawServer) -> None:
    # Regression: each byte came within the read timeout, so the client stayed
    # "connecting" for ever whatever connect_timeout said.
    ws = AgentExchangeWS("ak_test", trickle_server.url, backoff=FAST, connect_timeout=1)
    try:
        ws.start()
        lost = next_event(ws, Disconnected, 10)
        assert "connect_timeout" in str(lost.error)
    finally:
        assert ws.close(2)


def test_a_header_flood_is_cut_at_the_size_limit() -> None:
    # Regression: the upgrade kept every header line: 100+ MiB in 5 s.
    def flood(conn: RawConn) -> None:
        conn.read_request()
        conn.sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n")
        i = 0
        while conn.running and i < 2_000_000:
            conn.sock.sendall(b"".join(b"X-Junk-%d: %s\r\n" % (i + j, b"a" * 100) for j in range(100)))
            i += 100

    with RawServer(flood, limit=20) as server:
        ws = AgentExchangeWS("ak_test", server.url, backoff=FAST, connect_timeout=15)
        try:
            ws.start()
            lost = next_event(ws, Disconnected, 10)
            assert "exceeds 64 KiB" in str(lost.error)
            assert ws.health().state is not ConnectionState.CONNECTED
        finally:
            assert ws.close(2)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_answer_to_the_upgrade_never_counts_as_connected(status: int) -> None:
    # Regression: websocket-client versions allowed by setup.cfg returned a 3xx
    # answer as if the upgrade had succeeded: "connected" on plain HTTP.
    def redirect(conn: RawConn) -> None:
        conn.read_request()
        conn.sock.sendall(
            f"HTTP/1.1 {status} Moved\r\nLocation: ws://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n".encode()
        )
        conn.sock.recv(1)  # wait for the client to hang up

    with RawServer(redirect, limit=20) as server:
        ws = AgentExchangeWS("ak_test", server.url, backoff=FAST)
        try:
            ws.start()
            lost = next_event(ws, Disconnected, 10)
            assert "redirect" in str(lost.error)
            eventually(lambda: server.accepted >= 2, what="a second attempt")
            assert ws.state is not ConnectionState.CONNECTED and ws.health().connected_since is None
        finally:
            assert ws.close(2)


def test_state_reads_connecting_while_an_attempt_is_under_way() -> None:
    # Regression: after a failed attempt, health().state said "backoff" during the next attempt.
    attempts: list[float] = []

    def first_drop_then_silence(conn: RawConn) -> None:
        attempts.append(time.monotonic())
        conn.read_request()
        if len(attempts) == 1:
            return  # hang up without an answer: the client backs off
        while conn.running:  # then accept and never answer: an attempt under way
            conn.server.stopped.wait(0.1)

    with RawServer(first_drop_then_silence, limit=20) as server:
        ws = AgentExchangeWS("ak_test", server.url, backoff=FAST, connect_timeout=15)
        try:
            ws.start()
            next_event(ws, Disconnected, 10)
            eventually(lambda: len(attempts) >= 2, what="the second attempt")
            assert ws.health().state is ConnectionState.CONNECTING
        finally:
            assert ws.close(2)
