"""The simulator's machinery: an asyncio ``websockets`` server on its own thread.

Platform behaviour lives in subclasses; this module provides the loop thread,
listening and restarting, and the faults a test can drive from any thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import struct
import threading
import warnings
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..client import _interactive, _user_stacklevel

__all__ = ["PreviousSimulatorStoppedWarning", "SimBase", "SimConnection"]

log = logging.getLogger("agentx_sync.sim")


class PreviousSimulatorStoppedWarning(UserWarning):
    """Inside IPython, a started simulator stopped the previous one of its class."""


# The running simulator of each class, for a notebook's re-run cells.
_running: weakref.WeakValueDictionary[type, SimBase] = weakref.WeakValueDictionary()
# websockets logs request lines (with their query strings: api keys, tokens) at
# DEBUG. Its logger for the simulator stays at INFO so that never happens.
_wire_log = logging.getLogger("agentx_sync.sim.server")
_wire_log.setLevel(logging.INFO)

T = TypeVar("T")


class SimConnection:
    """One client connection, as the simulator sees it."""

    def __init__(self, ws: ServerConnection, credential: str, params: dict[str, str]) -> None:
        self.ws = ws
        self.credential = credential
        self.params = params
        self.frozen = False  # half-open: neither sends nor reads
        self.subs: set[str] = set()
        self.last_pong = 0.0
        self.received: list[Any] = []

    async def send(self, message: str | bytes, *, text: bool | None = None) -> None:
        if self.frozen:
            return
        try:
            await self.ws.send(message, text=text)
        except ConnectionClosed:
            pass

    async def send_json(self, message: dict[str, Any]) -> None:
        # As both servers write JSON: compact, and UTF-8 as it is (Starlette's send_json and
        # Node's JSON.stringify escape no non-ASCII character).
        await self.send(json.dumps(message, separators=(",", ":"), ensure_ascii=False))

    def abort(self) -> None:
        """Drop the TCP connection at once: a reset, with no close frame."""
        transport = self.ws.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        transport.abort()


class SimBase:
    """A local server on a background thread. Use ``with Sim(...) as sim: sim.url``.

    Args:
        host: the address to bind: loopback unless told otherwise.
        port: 0 picks a free port.
        max_size: the largest message accepted from a client.
        ssl_context: serve ``wss://`` with this context.
        keepalive: send protocol-level ping frames this often and drop a client
            whose pong is late (uvicorn does this in front of the real server).
    """

    thread_name = "agentx-sync-sim"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_size: int = 1 << 20,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_size = max_size
        self.ssl_context = ssl_context
        # Protocol-level ping frames every `keepalive` s, closing (1011) when a pong
        # is late: what uvicorn does in front of the real AgentExchange server.
        self.keepalive = keepalive
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._conns: set[SimConnection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cond = threading.Condition()
        self._received: list[Any] = []
        self.connections_total = 0
        self.refused_total = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        """Start the loop thread and listen; returns when the port is open.

        Inside IPython or Jupyter, the previous running simulator of the same
        class is stopped first, with a warning: a re-run cell must not leave
        the old server running, nor the old client connected to it.
        """
        if self._thread is not None:
            return self
        if _interactive():
            previous = _running.get(type(self))
            _running[type(self)] = self
            if previous is not None and previous is not self and previous._thread is not None:
                previous.stop()
                name = type(previous).__name__
                message = f"stopped the running {name} on {previous.url} before starting this one"
                log.warning(message)
                warnings.warn(message, PreviousSimulatorStoppedWarning, stacklevel=_user_stacklevel())
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def run() -> None:
            assert self.loop is not None
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=run, name=self.thread_name, daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self.call(self._listen())
            self.call(self._started())
        except BaseException:
            # A port in use (a notebook cell run twice): leave no loop thread behind.
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self._thread = None
            raise
        return self

    def stop(self) -> None:
        """Close every connection, stop listening and end the thread."""
        if self._thread is None or self.loop is None:
            return
        self.call(self._shutdown(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal needs brackets
        return f"{'wss' if self.ssl_context else 'ws'}://{host}:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 5.0) -> T:
        """Run a coroutine on the simulator's loop from another thread."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a background task on the loop (call from the loop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _listen(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            ping_interval=self.keepalive,
            ping_timeout=self.keepalive,
            max_size=self.max_size,
            compression=None,
            ssl=self.ssl_context,
            logger=_wire_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _started(self) -> None:
        """Start the platform's background tasks."""

    async def _shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in list(self._conns):
            conn.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            await self._server.wait_closed()
            self._server = None

    # -- faults --------------------------------------------------------------------

    def connections(self) -> list[SimConnection]:
        with self._cond:
            return list(self._conns)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Block until ``predicate()`` is truthy (checked as connections come and go and messages arrive)."""
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        if not result:
            raise TimeoutError("the simulator's condition was not met in time")
        return result

    def wait_connections(self, count: int, timeout: float = 5.0) -> list[SimConnection]:
        self.wait_for(lambda: len(self._conns) >= count, timeout)
        return self.connections()

    def drop_all(self, *, abrupt: bool = False, code: int = 1000, reason: str = "") -> None:
        """Close every connection: with a close frame, or abruptly (TCP reset)."""

        async def drop() -> None:
            for conn in list(self._conns):
                if abrupt:
                    conn.abort()
                else:
                    await conn.ws.close(code, reason)

        self.call(drop())

    def stop_listening(self) -> None:
        """Go down: drop every connection abruptly and refuse new ones."""
        self.call(self._shutdown_listener())

    def start_listening(self) -> None:
        """Come back up on the same port."""
        self.call(self._listen())

    async def _shutdown_listener(self) -> None:
        for conn in list(self._conns):
            conn.abort()
        if self._server is not None:
            self._server.close(close_connections=False)
            await self._server.wait_closed()
            self._server = None

    def restart(self, down_for: float = 0.5) -> None:
        """Go down at once and come back up on the same port after ``down_for`` s (returns at once)."""

        async def cycle() -> None:
            await self._shutdown_listener()
            await asyncio.sleep(down_for)
            await self._listen()

        assert self.loop is not None
        self.loop.call_soon_threadsafe(lambda: self.spawn(cycle()))

    def half_open(self) -> None:
        """Current connections stop sending and stop reading, without closing."""

        def freeze() -> None:
            for conn in self._conns:
                conn.frozen = True
                conn.ws.transport.pause_reading()

        assert self.loop is not None
        self.call(_run_soon(freeze))

    def send_raw(self, message: str | bytes, *, text: bool | None = None) -> None:
        """Send a message as-is to every connection (bytes + ``text=True``: a text frame of raw bytes)."""

        async def send() -> None:
            for conn in list(self._conns):
                await conn.send(message, text=text)

        self.call(send())

    def received(self) -> list[Any]:
        """Every parsed message clients sent, over all connections, in order."""
        with self._cond:
            return list(self._received)

    # -- per-connection handling -------------------------------------------------------

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        status, text = self.authorize(parts.path, params)
        if status == 101:
            return None
        self.refused_total += 1
        response = ws.respond(status, text)
        response.headers = Headers(
            [("Content-Type", "text/plain"), ("Content-Length", str(len(text.encode())))]
        )
        return response

    def authorize(self, path: str, params: dict[str, str]) -> tuple[int, str]:
        """(101, "") to accept the handshake, or an HTTP status and body."""
        raise NotImplementedError

    def credential(self, params: dict[str, str]) -> str:
        raise NotImplementedError

    async def _handle(self, ws: ServerConnection) -> None:
        parts = urlsplit(ws.request.path if ws.request else "")
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        conn = SimConnection(ws, self.credential(params), params)
        with self._cond:
            self._conns.add(conn)
            self.connections_total += 1
            self._cond.notify_all()
        try:
            await self.on_connect(conn)
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = raw
                with self._cond:
                    conn.received.append(message)
                    self._received.append(message)
                    self._cond.notify_all()
                await self.on_message(conn, raw, message)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._conns.discard(conn)
                self._cond.notify_all()
            await self.on_disconnect(conn)

    async def on_connect(self, conn: SimConnection) -> None:
        """A connection opened."""

    async def on_message(self, conn: SimConnection, raw: str | bytes, message: Any) -> None:
        """A message arrived (``message`` is the parsed JSON, or ``raw`` when invalid)."""

    async def on_disconnect(self, conn: SimConnection) -> None:
        """A connection ended."""


async def _run_soon(fn: Callable[[], None]) -> None:
    fn()
