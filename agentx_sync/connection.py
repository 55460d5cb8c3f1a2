"""The IO thread: it owns the socket, and nothing else touches it.

One plain loop: connect (TCP, TLS, then the HTTP upgrade by websocket-client
on a socket this module owns), read in large chunks, cut frames with the
sans-IO :class:`~agentx_sync.frames.FrameReader`, decode with the dialect,
hand whole batches to the client, answer pings, watch for silence; on any
loss, back off and go round again. Only a fatal verdict or ``stop()`` ends it.

A read's data messages are cut, decoded and applied under the cache's batch
lock, which getters wait for: see ``batch_lock`` below and ``State.settle``.

Every third-party exception is mapped to the library's own here, at one
boundary. ``stop()`` wakes the thread at any point: it sets a flag and shuts
the socket down, which ends a blocked read or handshake at once; connecting
and backing off wait on the flag in short slices.
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

import websocket

from . import frames
from .backoff import Backoff, BackoffPolicy
from .dialects import Ping, Pong, Verdict
from .errors import (
    AgentXError,
    AuthenticationError,
    ConnectionLostError,
    ProtocolError,
    StaleConnectionError,
    TLSError,
)

__all__ = ["Connection", "LinkHandler"]

log = logging.getLogger("agentx_sync.connection")

#: Bytes taken from the socket at once: a batch of up to ~2,400 ticker
#: messages, decoded and applied under the batch lock.
_READ_SIZE = 256 * 1024
#: While the socket keeps more than a read's worth waiting, the IO thread
#: holds the batch lock across reads for up to this many seconds, so that
#: getters called in tight loops cannot take the GIL from it between reads.
#: A getter waits at most this long (plus one read), and only while the
#: feed outruns the client.
_HOLD = 0.04
TEXT = frames.TEXT


class Dialect(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def pong_counts_as_liveness(self) -> bool: ...
    @property
    def records(self) -> frozenset[type]: ...

    @property
    def url(self) -> str: ...
    @property
    def safe_url(self) -> str: ...
    @property
    def secrets(self) -> tuple[str, ...]: ...
    def decode(self, text: str, now: float) -> Any: ...
    def pong(self, ping: Ping, now_iso: str) -> str: ...
    def handshake_verdict(self, status: int) -> Verdict: ...
    def close_verdict(self, code: int | None, reason: str) -> Verdict: ...


class LinkHandler(Protocol):
    """What the connection tells the client. Called on the IO thread only."""

    def link_opened(self, conn: Connection) -> None: ...
    def link_events(self, events: list[Any]) -> None:
        """A batch of decoded messages, in order. When they are all ``records``
        it is called with ``batch_lock`` held: it must neither block nor take a
        lock that is held by a thread waiting for ``batch_lock``."""
        ...

    def link_bad_message(self, error: ProtocolError) -> None: ...
    def link_lost(self, error: AgentXError, retry_in: float | None) -> None: ...
    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Verdict:
        """A handshake refusal or close that is not a plain reconnect.

        Return ``RETRY_NOW`` to connect again at once (after a token refresh),
        ``RECONNECT`` to back off and retry, anything else to stop for good.
        """
        ...


class _HandshakeRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Closed(Exception):
    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


class _Stopped(Exception):
    pass


class Connection:
    """One client's IO thread and socket.

    Args:
        dialect: the platform's sans-IO dialect.
        handler: the client, told about everything that happens.
        backoff: reconnect delays.
        stale_timeout: seconds of server silence after which the connection
            is closed and re-opened.
        connect_timeout: seconds allowed for TCP, TLS and the HTTP upgrade.
        max_message_size: larger messages fail the connection (close 1009).
        ssl_context: for ``wss://``; default: the system's trusted CAs, with
            certificate and host name checks on.
        coalesce: seconds to wait after a read that emptied the socket, so
            that the messages arriving meanwhile share one wakeup.
        batch_lock: held while the data messages of one read are cut,
            decoded and handed to the handler. Getters wait for it when they
            find it held: under the GIL, a reader thread that cut into the
            batch would take the interpreter from the IO thread for a whole
            switch interval (5 ms) at a time.
    """

    def __init__(
        self,
        dialect: Dialect,
        handler: LinkHandler,
        *,
        backoff: BackoffPolicy | None = None,
        stale_timeout: float = 40.0,
        connect_timeout: float = 10.0,
        max_message_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        batch_lock: threading.Lock | None = None,
        coalesce: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if stale_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("stale_timeout and connect_timeout must be > 0")
        if not 0 <= coalesce <= min(1.0, stale_timeout / 4):
            raise ValueError("coalesce must be between 0 and 1 s (and under a quarter of stale_timeout)")
        self.dialect = dialect
        self.handler = handler
        self.backoff = Backoff(backoff)
        self.stale_timeout = stale_timeout
        self.connect_timeout = connect_timeout
        self.max_message_size = max_message_size
        self.ssl_context = ssl_context
        self.batch_lock = batch_lock or threading.Lock()
        self.coalesce = coalesce
        self.clock = clock
        self.last_received: float | None = None
        self.messages = 0
        self.session_messages = 0  # on the current (or last) connection
        self.ignored = 0  # messages of a type or channel this library does not know
        self._rng = random.Random()
        self._lock = threading.Lock()  # guards _sock, _live and every send
        self._sock: socket.socket | None = None
        self._live: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="agentx-sync-io", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None) -> bool:
        """Close the connection and end the IO thread; False if it outlived ``timeout``."""
        with self._lock:
            self._stopping.set()
            if self._live is not None:
                self._send_close_nowait(self._live, 1000, "client closing")
            if self._sock is not None:
                try:
                    self._sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def send_text(self, text: str) -> bool:
        """Send one text message from any thread; False when not connected."""
        frame = frames.encode_frame(frames.TEXT, text.encode(), os.urandom(4))
        with self._lock:
            if self._live is None:
                return False
            try:
                self._live.sendall(frame)
            except OSError as exc:
                log.debug("send failed: %s", type(exc).__name__)
                return False
            return True

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except _Stopped:
            pass
        except BaseException as exc:  # never die silently
            log.critical("the IO thread crashed", exc_info=exc)
            error = AgentXError(f"internal error in the IO thread: {type(exc).__name__}: {exc}")
            self.handler.link_verdict(Verdict.FATAL, error)
        finally:
            with self._lock:
                self._live = None
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            error: AgentXError
            try:
                sock = self._open()
                self._session(sock)
                error = ConnectionLostError("the connection ended")  # not reached normally
            except _Stopped:
                return
            except _HandshakeRefused as exc:
                verdict = self.dialect.handshake_verdict(exc.status)
                if verdict is Verdict.AUTH_FAILED:
                    error = AuthenticationError(
                        f"the server refused the credentials (HTTP {exc.status})", status=exc.status
                    )
                else:
                    error = ConnectionLostError(f"the server refused the handshake (HTTP {exc.status})")
                if verdict is not Verdict.RECONNECT:
                    self._drop()
                    decision = self.handler.link_verdict(verdict, error)
                    if decision is Verdict.RETRY_NOW:
                        continue
                    if decision is not Verdict.RECONNECT:
                        return
            except _Closed as exc:
                error = ConnectionLostError(
                    f"the server closed the connection ({exc.code} {exc.reason})".rstrip(),
                    code=exc.code,
                    reason=exc.reason,
                )
                verdict = self.dialect.close_verdict(exc.code, exc.reason)
                if verdict is not Verdict.RECONNECT:
                    self._drop()
                    decision = self.handler.link_verdict(verdict, error)
                    if decision is Verdict.RETRY_NOW:
                        continue
                    if decision is not Verdict.RECONNECT:
                        return
            except TLSError as exc:
                self._drop()
                self.handler.link_verdict(Verdict.FATAL, exc)
                return
            except ProtocolError as exc:
                error = exc
                with self._lock:
                    if self._live is not None and exc.close_code:
                        self._send_close_nowait(self._live, exc.close_code, "protocol error")
            except AgentXError as exc:
                error = exc
            except (OSError, websocket.WebSocketException) as exc:
                if self._stopping.is_set():
                    return
                error = ConnectionLostError(_describe(exc))
            self._drop()
            if self._stopping.is_set():
                return
            delay = self.backoff.next_delay(self._rng.random())
            self.handler.link_lost(error, delay)
            if self._stopping.wait(delay):
                return

    def _drop(self) -> None:
        self.backoff.disconnected(self.clock())
        with self._lock:
            self._live = None
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- connecting ------------------------------------------------------------------

    def _open(self) -> socket.socket:
        url = self.dialect.url
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        deadline = self.clock() + self.connect_timeout
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConnectionLostError(f"cannot resolve {host!r}: {exc.strerror}") from None
        last: OSError | None = None
        for family, kind, proto, _, addr in infos:
            sock = socket.socket(family, kind, proto)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    raise _Stopped
                self._sock = sock
            try:
                self._connect(sock, addr, deadline)
                break
            except OSError as exc:
                last = exc
                self._drop()
        else:
            raise ConnectionLostError(f"cannot connect to {host}:{port}: {_describe(last)}")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.coalesce:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(max(0.01, deadline - self.clock()))
        if secure:
            context = self.ssl_context or ssl.create_default_context()
            try:
                tls = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as exc:
                # Not retried: an untrusted certificate does not fix itself.
                raise TLSError(f"TLS certificate of {host} refused: {exc.verify_message}") from None
            except ssl.SSLError as exc:
                raise ConnectionLostError(f"TLS handshake with {host} failed: {exc.reason}") from None
            with self._lock:
                self._sock = sock = tls
        try:
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect(  # type: ignore[no-untyped-call]
                url,
                socket=sock,
                timeout=max(0.01, deadline - self.clock()),
                suppress_origin=True,
                redirect_limit=0,
            )
        except websocket.WebSocketBadStatusException as exc:
            raise _HandshakeRefused(exc.status_code) from None
        except websocket.WebSocketException as exc:
            raise ConnectionLostError(f"the HTTP upgrade failed: {type(exc).__name__}") from None
        return sock

    def _connect(self, sock: socket.socket, addr: Any, deadline: float) -> None:
        """A non-blocking connect that notices stop() within 50 ms."""
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err not in (0, getattr(socket, "EINPROGRESS", 115), 10035):
            raise OSError(err, os.strerror(err))
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_WRITE)
            while not sel.select(min(0.05, max(0.0, deadline - self.clock()))):
                if self._stopping.is_set():
                    raise _Stopped
                if self.clock() >= deadline:
                    raise TimeoutError("connect timed out")
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise OSError(err, os.strerror(err))
        sock.setblocking(True)

    # -- a live connection ---------------------------------------------------------

    def _session(self, sock: socket.socket) -> None:
        dialect = self.dialect
        decode = dialect.decode
        clock = self.clock
        handler = self.handler
        reader = frames.FrameReader(self.max_message_size)
        now = clock()
        self.last_received = now
        self.session_messages = 0
        self.backoff.connected(now)
        with self._lock:
            if self._stopping.is_set():
                raise _Stopped
            self._live = sock
        log.info("connected to %s", dialect.safe_url)
        handler.link_opened(self)
        # One buffer for the connection's life: recv(256 KiB) would allocate
        # (and, above malloc's mmap threshold, map and unmap) 256 KiB per call.
        buffer = bytearray(_READ_SIZE)
        view = memoryview(buffer)
        recv_into = sock.recv_into
        stale = self.stale_timeout
        pong_alive = dialect.pong_counts_as_liveness
        records = dialect.records
        batch_lock = self.batch_lock
        tls = isinstance(sock, ssl.SSLSocket)
        coalesce = self.coalesce
        stopping = self._stopping
        size = 0
        held = 0.0  # when the current run of back-to-back reads began
        while True:
            if size == _READ_SIZE and clock() - held < _HOLD:
                # The last read filled the buffer, so more is waiting: take it
                # without blocking and without letting getters in between.
                batch_lock.acquire()
                sock.settimeout(0.0)
                try:
                    size = recv_into(buffer)
                    if tls and size:
                        size = self._fill_tls(sock, view, size)
                except (BlockingIOError, ssl.SSLWantReadError):
                    size = 0
                    batch_lock.release()
                    continue
                except BaseException:
                    batch_lock.release()
                    raise
            else:
                if coalesce and size and stopping.wait(coalesce):
                    raise _Stopped
                remaining = self.last_received + stale - clock()
                if remaining <= 0:
                    raise StaleConnectionError(f"nothing received for {stale:g} s; reconnecting")
                sock.settimeout(remaining)
                try:
                    size = recv_into(buffer)
                    if tls and size:
                        size = self._fill_tls(sock, view, size)
                except TimeoutError:
                    continue
                except (OSError, ssl.SSLError) as exc:
                    if self._stopping.is_set():
                        raise _Stopped from None
                    raise ConnectionLostError(f"the connection broke: {_describe(exc)}") from None
                batch_lock.acquire()
                held = clock()
            try:
                if not size:
                    if self._stopping.is_set():
                        raise _Stopped
                    raise ConnectionLostError("the server dropped the connection without a close frame")
                now = clock()
                messages = reader.feed(view[:size].tobytes())
                if not messages:
                    continue  # the rest of a frame is still on its way
                # The common batch: only data messages, all well formed. One
                # pass decodes and applies it; anything else (pings, control
                # frames or messages, a bad message) takes the careful loop
                # below, which decodes again, outside the lock.
                try:
                    events: list[Any] = [decode(p, now) for op, p in messages if op == TEXT]  # type: ignore[arg-type]
                except ProtocolError:
                    events = []
                if len(events) == len(messages) and records.issuperset(map(type, events)):
                    self._count(len(events))
                    self.last_received = now
                    handler.link_events(events)
                    continue
            finally:
                batch_lock.release()
            events = []
            alive = False
            texts = len(messages)  # corrected below for the rare control frames
            for opcode, payload in messages:
                if opcode == frames.TEXT:
                    try:
                        event = decode(payload, now)  # type: ignore[arg-type]
                    except ProtocolError as exc:
                        alive = True
                        handler.link_bad_message(exc)
                        continue
                    kind = type(event)
                    if kind is Pong:
                        alive = alive or pong_alive
                        continue
                    alive = True
                    if kind is Ping:
                        iso = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                        self.send_text(dialect.pong(event, iso))
                    elif event is not None:
                        events.append(event)
                    else:
                        self.ignored += 1
                elif opcode == frames.PING:
                    texts -= 1
                    alive = True
                    self._send_frame(frames.encode_frame(frames.PONG, payload, os.urandom(4)))  # type: ignore[arg-type]
                elif opcode == frames.PONG:
                    texts -= 1
                    alive = alive or pong_alive
                elif opcode == frames.CLOSE:
                    code, reason = frames.parse_close(payload)  # type: ignore[arg-type]
                    self._count(texts - 1)
                    if events:
                        handler.link_events(events)
                    with self._lock:
                        if self._live is not None:
                            self._send_close_nowait(self._live, code or 1000, "")
                            self._live = None
                    raise _Closed(code, reason)
                else:
                    texts -= 1
                    alive = True
                    handler.link_bad_message(ProtocolError("a binary frame, where only text is expected"))
            self._count(texts)
            if alive:
                self.last_received = now
            if events:
                handler.link_events(events)

    @staticmethod
    def _fill_tls(sock: socket.socket, view: memoryview, size: int) -> int:
        """Add what TLS can give without blocking: a TLS read returns one record
        (16 KiB at most), a plain one everything the socket holds."""
        sock.settimeout(0.0)
        try:
            while size < len(view):
                got = sock.recv_into(view[size:])
                if not got:
                    break
                size += got
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        return size

    def _count(self, texts: int) -> None:
        self.messages += texts
        self.session_messages += texts

    def _send_frame(self, frame: bytes) -> None:
        with self._lock:
            if self._live is not None:
                try:
                    self._live.sendall(frame)
                except OSError:
                    pass

    @staticmethod
    def _send_close_nowait(sock: socket.socket, code: int, reason: str) -> None:
        """Best effort: a close frame if the socket can take it right now."""
        try:
            with selectors.DefaultSelector() as sel:
                sel.register(sock, selectors.EVENT_WRITE)
                if sel.select(0):
                    sock.send(frames.encode_close(code, reason, os.urandom(4)))
        except (OSError, ValueError):
            pass


def _describe(exc: BaseException | None) -> str:
    """A short, secret-free description of a network error."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
