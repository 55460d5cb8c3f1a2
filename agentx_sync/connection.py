"""The IO thread: it owns the socket, and nothing else touches it.

(Longer than 500 lines on purpose: everything that touches the socket lives here,
so that one module holds the socket and its lock discipline; the protocol
itself is in ``session.py``, pure.)

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
import select
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol
from urllib.parse import unquote, urlsplit

import websocket

# websocket-client's own proxy handling: the environment's http_proxy,
# https_proxy and no_proxy (host names, domain suffixes, CIDR networks), and the
# HTTP CONNECT exchange. Private names, so setup.cfg bounds the version below 2.
from websocket._http import _tunnel
from websocket._url import get_proxy_info

from . import frames
from .backoff import Backoff
from .dialects import Decision, Ping, Verdict
from .errors import (
    AgentXError,
    AuthenticationError,
    ConnectionLostError,
    ProtocolError,
    StaleConnectionError,
    StoppedError,
    TLSError,
)
from .options import Options
from .session import Outcome, Session

__all__ = ["Connection", "Dialect", "LinkHandler", "Proxy", "find_proxy"]

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
#: The longest HTTP upgrade response accepted (status line and headers).
_MAX_RESPONSE = 64 * 1024
#: Output queued for a peer that does not read: past this many bytes, or this
#: many seconds without progress, the peer is dropped and a new connection made.
_MAX_OUTBOX = 1024 * 1024
_SEND_STALL = 10.0
_NO_REDIRECTS = "redirects are not followed (point the client at the WebSocket endpoint itself)"
#: The longest the IO thread blocks at once, so that it checks queued output
#: and its deadlines at least this often.
_TICK = 1.0
#: select() takes file descriptors below this (FD_SETSIZE); poll() takes any.
_SELECT_LIMIT = 1024
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Dialect(Protocol):
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
    @property
    def headers(self) -> list[str]: ...
    def decode(self, text: str, now: float) -> Any: ...
    def pong(self, ping: Ping, now_iso: str) -> str: ...
    def handshake_verdict(self, status: int) -> Verdict: ...
    def close_verdict(self, code: int | None, reason: str) -> Verdict: ...


class LinkHandler(Protocol):
    """What the connection tells the client. Called on the IO thread only."""

    def link_connecting(self) -> None:
        """A connection attempt begins."""
        ...

    def link_opened(self, conn: Connection) -> None: ...
    def link_events(self, events: list[Any]) -> None:
        """A batch of decoded messages, in order. When they are all ``records``
        it is called with ``batch_lock`` held: it must neither block nor take a
        lock that is held by a thread waiting for ``batch_lock``."""
        ...

    def link_bad_message(self, error: ProtocolError) -> None: ...
    def link_lost(self, error: AgentXError, retry_in: float | None) -> None: ...
    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Decision:
        """A handshake refusal or close that is not a plain reconnect.

        The verdict is the dialect's reading of what happened; the client
        decides: ``RETRY_NOW`` (connect again at once, after a token refresh),
        ``BACK_OFF`` (wait, then retry) or ``STOP``.
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


class Proxy:
    """An HTTP proxy to tunnel through (HTTP CONNECT); its credentials never shown."""

    __slots__ = ("auth", "host", "port")

    def __init__(self, host: str, port: int, auth: tuple[str, str] | None = None) -> None:
        self.host = host
        self.port = port
        self.auth = auth

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """``http://[user:password@]host[:port]`` (port 80 by default)."""
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port
        except ValueError:
            raise ValueError("the proxy must be an http://host:port URL") from None
        if parts.scheme != "http":
            raise ValueError(
                f"only http:// proxies are supported (HTTP CONNECT), not {parts.scheme}://; "
                "wss:// targets are still encrypted end to end through an http:// proxy"
            )
        if not parts.hostname:
            raise ValueError("the proxy URL has no host")
        auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        return cls(parts.hostname, port or 80, auth)

    def __repr__(self) -> str:
        return f"Proxy({self.host}:{self.port}{', with credentials' if self.auth else ''})"


def find_proxy(host: str, secure: bool, proxy: str | None, trust_env: bool) -> Proxy | None:
    """The proxy for a connection to ``host``: the explicit one, else the environment's.

    The environment is read as websocket-client reads it (``https_proxy`` for
    wss://, ``http_proxy`` for ws://, either case, and ``no_proxy``), at each
    connection attempt, so a changed environment applies at the next reconnect.
    """
    if proxy:
        return Proxy.from_url(proxy)
    if not trust_env:
        return None
    env_key = "https_proxy" if secure else "http_proxy"
    value = os.environ.get(env_key) or os.environ.get(env_key.upper())
    if not value:
        return None
    found = Proxy.from_url(value.strip())  # our checks (scheme, port 80 by default) first
    proxy_host, _, _ = get_proxy_info(host, secure)
    return found if proxy_host else None  # None: no_proxy exempts this host


class _ResponseTooLarge(Exception):
    pass


class _Upgrade:
    """The socket as websocket-client sees it during the HTTP upgrade.

    websocket-client reads the response a byte at a time, each read with its
    own timeout, and keeps every header: a server that trickles its answer
    would hold the upgrade open for ever, one that floods headers would fill
    memory. Here every read and write shares one deadline, and the response
    may take at most ``limit`` bytes.
    """

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float], limit: int) -> None:
        self._sock = sock
        self._deadline = deadline
        self._clock = clock
        self._left_to_read = limit

    def _remaining(self) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            raise TimeoutError("the HTTP upgrade did not complete within connect_timeout")
        return left

    def gettimeout(self) -> float:
        return self._remaining()

    def settimeout(self, timeout: float | None) -> None:
        pass  # the deadline rules

    def recv(self, size: int) -> bytes:
        self._sock.settimeout(self._remaining())
        data = self._sock.recv(max(1, min(size, self._left_to_read)))
        self._left_to_read -= len(data)
        if self._left_to_read <= 0:
            raise _ResponseTooLarge
        return data

    def send(self, data: bytes) -> int:
        self._sock.settimeout(self._remaining())
        return self._sock.send(data)

    def sendall(self, data: bytes) -> None:
        self._sock.settimeout(self._remaining())
        self._sock.sendall(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        pass  # the connection owns the socket and closes it

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Reads:
    """A connection's reads: one buffer for its life, the wait in poll(), TLS gathering.

    Network errors become the library's errors here, in one place (as
    httpcore's ``map_exceptions`` does): :class:`ConnectionLostError`, or
    ``_Stopped`` when the client is closing.
    """

    def __init__(self, conn: Connection, sock: socket.socket) -> None:
        self.conn = conn
        self.sock = sock
        # recv(256 KiB) would allocate (and, above malloc's mmap threshold,
        # map and unmap) 256 KiB per call; recv_into one buffer does not.
        self.buffer = bytearray(_READ_SIZE)
        self.view = memoryview(self.buffer)
        self.tls = isinstance(sock, ssl.SSLSocket)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)
        self.stale = conn.stale_timeout
        self.stall = min(_SEND_STALL, conn.stale_timeout / 2)
        self.full = False  # the last read filled the buffer: more is waiting
        self.got = False  # the last read brought data

    def wait(self) -> bytes | None:
        """Wait (at most ``_TICK``) and read; ``None`` when there was nothing, ``b""`` at EOF."""
        conn = self.conn
        if conn.coalesce and self.got and conn._stopping.wait(conn.coalesce):
            raise _Stopped  # let more gather after a read that brought data
        if not conn._wait_readable(self.sock, self.poller, self.tls, self.stale, self.stall):
            return None
        return self.now(eof=True)

    def now(self, eof: bool = False) -> bytes | None:
        """What the socket holds now, without blocking.

        ``None`` when it holds nothing; at EOF ``b""`` if ``eof``, else ``None``.
        """
        try:
            size = self.sock.recv_into(self.buffer)
            if self.tls and size:
                size = Connection._fill_tls(self.sock, self.view, size)
        except _WOULD_BLOCK:
            self.full = self.got = False
            return None
        except OSError as exc:  # ssl.SSLError included
            if self.conn._stopping.is_set():
                raise _Stopped from None
            raise ConnectionLostError(f"the connection broke: {_describe(exc)}") from None
        self.full, self.got = size == _READ_SIZE, size > 0
        if not size and not eof:
            return None
        return self.view[:size].tobytes()


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
        options: Options | None = None,
        *,
        batch_lock: threading.Lock | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        options = options or Options()
        self.dialect = dialect
        self.handler = handler
        self.backoff = Backoff(options.backoff)
        self.stale_timeout = options.stale_timeout
        self.connect_timeout = options.connect_timeout
        self.max_message_size = options.max_message_size
        self.ssl_context = options.ssl_context
        self.batch_lock = batch_lock or threading.Lock()
        self.coalesce = options.coalesce
        self.clock = clock
        self._proxy = options.proxy
        self.trust_env = options.trust_env
        self.last_received: float | None = None
        #: A shared feed's leader: called with each read's events and their texts,
        #: batch lock held, right after the client applied them (see share.py).
        self.relay: Callable[[list[Any], list[str]], None] | None = None
        #: ... and then, outside the batch lock, called with the time to write what
        #: was relayed; it returns when to call again (None: nothing waits).
        self.relay_flush: Callable[[float], float | None] | None = None
        self._relay_due: float | None = None
        self.messages = 0
        self.session_messages = 0  # on the current (or last) connection
        self.ignored = 0  # messages of a type or channel this library does not know
        self._rng = random.Random()
        self._lock = threading.Lock()  # guards _sock, _live and the outbox; never held while blocking
        #: Frames (or the rest of one) the socket could not take at once, oldest first.
        self._out: deque[bytes] = deque()
        self._out_size = 0
        self._out_since: float | None = None  # when queued output last made progress
        self._sock: socket.socket | None = None
        self._live: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        """Start the IO thread.

        Raises:
            RuntimeError: the thread of an earlier run is still alive (a stop()
                that timed out): a connection never has two IO threads.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the IO thread of the previous run has not ended yet")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="agentx-sync-io", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None) -> bool:
        """Close the connection and end the IO thread; False if it outlived ``timeout``.

        Never blocks on the network: the close frame is sent only if the socket
        takes it at once, and the shutdown wakes the IO thread wherever it is.
        """
        with self._lock:
            self._stopping.set()
            if self._live is not None:
                self._write(frames.encode_close(1000, "client closing", os.urandom(4)))
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

    def after_fork(self) -> None:
        """In a forked child: forget the parent's thread and socket without touching the connection.

        Closing the child's file descriptor leaves the parent's connection open;
        no close frame is sent and the socket is not shut down.
        """
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stopping.set()
        self._thread = None
        self._live = None
        self._reset_outbox()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                os.close(sock.detach())
            except OSError:
                pass

    def send_text(self, text: str) -> bool:
        """Send one text message from any thread, without blocking; False when not connected.

        What the socket cannot take at once waits in an outbox that the IO
        thread drains; a peer that stops reading is dropped (see ``_MAX_OUTBOX``).
        """
        frame = frames.encode_frame(frames.TEXT, text.encode(), os.urandom(4))
        with self._lock:
            return self._write(frame)

    def _write(self, frame: bytes) -> bool:
        """Queue ``frame`` behind any waiting output and send what the socket takes now.

        Called with ``_lock`` held; never blocks.
        """
        if self._live is None:
            return False
        if not self._out:
            self._out_since = self.clock()
        self._out.append(frame)
        self._out_size += len(frame)
        self._flush()
        if self._out_size > _MAX_OUTBOX and self._sock is not None:
            # The peer has not read a megabyte of our output: wake the IO
            # thread, which reports it and reconnects.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return True

    def _flush(self) -> None:
        """Send queued output until the socket would block (``_lock`` held)."""
        live, out = self._live, self._out
        if live is None:
            return
        tls = isinstance(live, ssl.SSLSocket)
        while out:
            frame = out[0]
            try:
                sent = live.send(frame)
            except _WOULD_BLOCK:
                return
            except OSError:
                return  # the IO thread's next read reports the broken connection
            self._out_since = self.clock()
            self._out_size -= sent
            if sent < len(frame):
                # TLS retries the same buffer whole; a plain socket sends the rest.
                if not tls:
                    out[0] = frame[sent:]
                return
            out.popleft()
        self._out_since = None

    def _reset_outbox(self) -> None:
        self._out.clear()
        self._out_size = 0
        self._out_since = None

    # -- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except _Stopped:
            pass
        except BaseException as exc:  # never die silently
            log.critical("the IO thread crashed", exc_info=exc)
            error = StoppedError(f"internal error in the IO thread: {type(exc).__name__}")
            self.handler.link_verdict(Verdict.FATAL, error)
        finally:
            with self._lock:
                self._live = None
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None

    def _loop(self) -> None:
        """Connect, run the session, and on its end back off and connect again, until stopped."""
        while not self._stopping.is_set():
            try:
                error, verdict = self._attempt()
            except _Stopped:
                return
            self._drop()
            if self._stopping.is_set():
                return
            if verdict is not Verdict.RECONNECT:
                decision = self.handler.link_verdict(verdict, error)
                if decision is Decision.RETRY_NOW:
                    continue
                if decision is Decision.STOP:
                    return
            delay = self.backoff.next_delay(self._rng.random())
            self.handler.link_lost(error, delay)
            if self._stopping.wait(delay):
                return

    def _attempt(self) -> tuple[AgentXError, Verdict]:  # noqa: PLR0911 - one return for each way a connection ends
        """One connection, from the attempt to its end: why it ended, and what to do about it.

        Raises:
            _Stopped: stop() was called meanwhile.
        """
        try:
            self.handler.link_connecting()
            self._session(self._open())
        except _HandshakeRefused as exc:
            return self._refused(exc.status)
        except _Closed as exc:
            text = f"the server closed the connection ({exc.code} {exc.reason})".rstrip()
            error = ConnectionLostError(text, code=exc.code, reason=exc.reason)
            return error, self.dialect.close_verdict(exc.code, exc.reason)
        except (TLSError, AuthenticationError) as exc:  # a refused certificate or proxy password
            return exc, Verdict.FATAL
        except ProtocolError as exc:
            with self._lock:  # fail the WebSocket as RFC 6455 says, if it is still open
                if self._live is not None and exc.close_code:
                    self._write(frames.encode_close(exc.close_code, "protocol error", os.urandom(4)))
            return exc, Verdict.RECONNECT
        except AgentXError as exc:
            return exc, Verdict.RECONNECT
        except (OSError, websocket.WebSocketException) as exc:
            self._raise_if_stopping()
            return ConnectionLostError(_describe(exc)), Verdict.RECONNECT
        except Exception as exc:  # a bug of ours: report it, then reconnect rather than die
            self._raise_if_stopping()
            log.critical("unexpected error in the IO thread; reconnecting", exc_info=exc)
            return ConnectionLostError(
                f"internal error in the IO thread ({type(exc).__name__})"
            ), Verdict.RECONNECT

    def _refused(self, status: int) -> tuple[AgentXError, Verdict]:
        verdict = self.dialect.handshake_verdict(status)
        if verdict is Verdict.AUTH_FAILED:
            return AuthenticationError(
                f"the server refused the credentials (HTTP {status})", status=status
            ), verdict
        return ConnectionLostError(f"the server refused the handshake (HTTP {status})"), verdict

    def _raise_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise _Stopped

    def _drop(self) -> None:
        self.backoff.disconnected(self.clock())
        with self._lock:
            self._live = None
            self._reset_outbox()
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- connecting ------------------------------------------------------------------

    def _open(self) -> socket.socket:
        """TCP (through a proxy if one applies), TLS for wss://, then the HTTP upgrade: one deadline."""
        url = self.dialect.url
        parts = urlsplit(url)
        secure = parts.scheme == "wss"
        host = parts.hostname or ""
        port = parts.port or (443 if secure else 80)
        deadline = self.clock() + self.connect_timeout
        try:
            proxy = find_proxy(host, secure, self._proxy, self.trust_env)
        except ValueError as exc:
            raise ConnectionLostError(f"the environment's proxy setting is unusable: {exc}") from None
        if proxy is None:
            sock = self._dial(host, port, f"{host}:{port}", deadline)
        else:
            sock = self._dial(proxy.host, proxy.port, f"the proxy {proxy.host}:{proxy.port}", deadline)
            self._tunnel(sock, proxy, host, port, deadline)
        sock.settimeout(max(0.01, deadline - self.clock()))
        if secure:
            sock = self._secure(sock, host)
        self._upgrade(sock, url, deadline)
        return sock

    def _dial(self, host: str, port: int, where: str, deadline: float) -> socket.socket:
        """A TCP connection to the first address of ``host`` that answers."""
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
            except OSError as exc:
                last = exc
                self._drop()
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.coalesce:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            return sock
        raise ConnectionLostError(f"cannot connect to {where}: {_describe(last)}")

    def _secure(self, sock: socket.socket, host: str) -> socket.socket:
        """The TLS handshake, checking the certificate and host name (``ssl_context`` or the system's CAs)."""
        context = self.ssl_context or ssl.create_default_context()
        try:
            tls = context.wrap_socket(sock, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            # Not retried: an untrusted certificate does not fix itself.
            raise TLSError(f"TLS certificate of {host} refused: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise ConnectionLostError(f"TLS handshake with {host} failed: {exc.reason}") from None
        with self._lock:
            self._sock = tls
        return tls

    def _upgrade(self, sock: socket.socket, url: str, deadline: float) -> None:
        """The HTTP upgrade, by websocket-client, under the deadline and the answer's size bound."""
        try:
            ws = websocket.WebSocket(skip_utf8_validation=True)
            ws.connect(  # type: ignore[no-untyped-call]
                url,
                socket=_Upgrade(sock, deadline, self.clock, _MAX_RESPONSE),
                timeout=max(0.01, deadline - self.clock()),
                suppress_origin=True,
                redirect_limit=0,
                header=self.dialect.headers,
            )
        except websocket.WebSocketBadStatusException as exc:
            raise _HandshakeRefused(exc.status_code) from None
        except _ResponseTooLarge:
            raise ConnectionLostError(
                f"the server's answer to the HTTP upgrade exceeds {_MAX_RESPONSE // 1024} KiB"
            ) from None
        except (websocket.WebSocketException, TimeoutError) as exc:
            raise self._upgrade_failed(exc, deadline) from None
        # Some websocket-client versions return a 3xx answer as if it were the
        # upgrade: only 101 Switching Protocols opens a WebSocket.
        status = ws.getstatus()
        if status == 101:
            return
        if isinstance(status, int) and 300 <= status < 400:
            raise ConnectionLostError(
                f"the server answered the upgrade with HTTP {status} (a redirect); {_NO_REDIRECTS}"
            )
        raise ConnectionLostError(f"the server answered the upgrade with HTTP {status}, not 101")

    def _upgrade_failed(self, exc: Exception, deadline: float) -> ConnectionLostError:
        if self.clock() >= deadline:
            return ConnectionLostError(
                f"the HTTP upgrade did not complete within connect_timeout ({self.connect_timeout:g} s)"
            )
        if "redirect" in str(exc).lower():
            return ConnectionLostError(f"the server answered the upgrade with a redirect; {_NO_REDIRECTS}")
        return ConnectionLostError(f"the HTTP upgrade failed: {type(exc).__name__}")

    def _tunnel(self, sock: socket.socket, proxy: Proxy, host: str, port: int, deadline: float) -> None:
        """HTTP CONNECT through ``proxy`` (websocket-client's exchange, under our deadline and size bound)."""
        try:
            _tunnel(_Upgrade(sock, deadline, self.clock, _MAX_RESPONSE), host, port, proxy.auth)  # type: ignore[arg-type]
        except _ResponseTooLarge:
            raise ConnectionLostError(
                f"the proxy {proxy.host}:{proxy.port}'s answer to CONNECT exceeds {_MAX_RESPONSE // 1024} KiB"
            ) from None
        except (TimeoutError, websocket.WebSocketProxyException) as exc:
            # websocket-client reports a timeout inside the exchange as a proxy error.
            if isinstance(exc, TimeoutError) or self.clock() >= deadline:
                raise ConnectionLostError(
                    f"the proxy {proxy.host}:{proxy.port} did not open the tunnel within connect_timeout "
                    f"({self.connect_timeout:g} s)"
                ) from None
            status = str(exc).rpartition(" ")[2]
            if status == "407":  # wrong or missing proxy credentials: retrying cannot help
                raise AuthenticationError(
                    f"the proxy {proxy.host}:{proxy.port} refused the credentials (HTTP 407)", status=407
                ) from None
            detail = f"HTTP {status}" if status.isdigit() else "no valid answer"
            raise ConnectionLostError(
                f"the proxy {proxy.host}:{proxy.port} refused the tunnel to {host}:{port} ({detail})"
            ) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionLostError(
                f"the proxy {proxy.host}:{proxy.port} failed: {_describe(exc)}"
            ) from None

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

    def _session(self, sock: socket.socket) -> NoReturn:
        """Glue around the pure :class:`Session`: read, let it decode, act on what it says.

        The batch lock is taken in one place: around decoding a read and
        applying its records. While the socket keeps more than a read's worth
        waiting, the lock stays held across reads for up to ``_HOLD``.
        """
        session = Session(self.dialect, self.max_message_size, _now_iso)
        reads = _Reads(self, sock)
        self._opened(sock)
        clock, batch = self.clock, self.batch_lock
        while True:
            data = reads.wait()
            if data is not None:
                with batch:
                    began = clock()
                    out = self._take(session, data)
                    while out.records_only and reads.full and clock() - began < _HOLD:
                        more = reads.now()
                        if more is None:
                            break
                        out = self._take(session, more)
                self._settle(out)
            if self.relay_flush is not None:  # a shared feed's leader: write what was relayed
                self._relay_due = self.relay_flush(clock())

    def _opened(self, sock: socket.socket) -> None:
        now = self.clock()
        self.last_received = now
        self.session_messages = 0
        self.backoff.connected(now)
        # From here on the socket never blocks: the IO thread waits in poll(),
        # and a send from any thread takes what the socket can take now.
        sock.settimeout(0.0)
        with self._lock:
            if self._stopping.is_set():
                raise _Stopped
            self._reset_outbox()
            self._live = sock
        log.info("connected to %s", self.dialect.safe_url)
        self.handler.link_opened(self)

    def _take(self, session: Session, data: bytes) -> Outcome:
        """Decode one read (batch lock held); a read of well-formed records is applied at once."""
        if not data:
            if self._stopping.is_set():
                raise _Stopped
            self._check_outbox(min(_SEND_STALL, self.stale_timeout / 2))
            raise ConnectionLostError("the server dropped the connection without a close frame")
        now = self.clock()
        out = session.receive(data, now)
        if out.records_only and out.events:
            self._count(out.messages)
            self.last_received = now
            self._deliver(out)
        return out

    def _settle(self, out: Outcome) -> None:
        """The rest of a read that was not only records, outside the batch lock."""
        if out.records_only:
            return
        self._count(out.messages)
        self.ignored += out.ignored
        if out.alive:
            self.last_received = self.clock()
        for error in out.bad:
            cause = error.__cause__
            if cause is not None:  # a decoder bug, not bad input: log it whole
                log.error("decoding a message raised %s", type(cause).__name__, exc_info=cause)
            self.handler.link_bad_message(error)
        if out.events:
            if self.relay is None:
                self._deliver(out)
            else:
                with self.batch_lock:  # applied and relayed as one step (see share.py)
                    self._deliver(out)
        with self._lock:
            for reply in out.replies:
                self._write(reply)
            if out.close is not None:
                self._live = None
        if out.close is not None:
            raise _Closed(*out.close)

    def _wait_readable(
        self, sock: socket.socket, poller: select.poll, tls: bool, stale: float, stall: float
    ) -> bool:
        """Wait (at most ``_TICK``) for data, flushing queued output meanwhile.

        Raises StaleConnectionError after ``stale`` seconds of server silence and
        ConnectionLostError when queued output has stalled (a peer that does not read).
        """
        if self._out:
            with self._lock:
                self._flush()
        self._check_outbox(stall)
        remaining = self.last_received + stale - self.clock()  # type: ignore[operator]
        if remaining <= 0:
            raise StaleConnectionError(f"nothing received for {stale:g} s; reconnecting")
        if tls and sock.pending():  # type: ignore[attr-defined]
            return True  # decrypted data already waits in the TLS layer
        waiting_out = bool(self._out)
        poller.modify(sock, select.POLLIN | select.POLLOUT if waiting_out else select.POLLIN)
        wait = min(remaining, _TICK)
        if self._relay_due is not None:  # wake in time to write what a shared feed relays
            wait = max(0.0, min(wait, self._relay_due - self.clock()))
            if wait < _TICK and sock.fileno() < _SELECT_LIMIT:
                # poll() counts whole milliseconds, rounding up: a write due in 0.2 ms
                # would wait 1 ms. select() counts microseconds (for fds below 1024).
                readable, _, _ = select.select([sock], [sock] if waiting_out else [], [], wait)
                return bool(readable)
        ready = poller.poll(wait * 1000)
        return any(mask & ~select.POLLOUT for _, mask in ready)

    def _check_outbox(self, stall: float) -> None:
        since, size = self._out_since, self._out_size
        if since is not None and (size > _MAX_OUTBOX or self.clock() - since > stall):
            raise ConnectionLostError(
                f"the server stopped reading: {size:,} bytes unsent"
                + ("" if size > _MAX_OUTBOX else f" for {stall:g} s")
                + "; reconnecting"
            )

    def _deliver(self, out: Outcome) -> None:
        """Hand decoded events to the client (and the relay of a shared feed, batch lock held);
        a failure there is a bad message, never a crash."""
        events = out.events
        try:
            self.handler.link_events(events)
            if self.relay is not None:
                self.relay(events, out.texts)
        except Exception as exc:
            log.error("applying %d message(s) raised %s", len(events), type(exc).__name__, exc_info=exc)
            self.handler.link_bad_message(
                ProtocolError(f"a message the client could not apply ({type(exc).__name__})")
            )

    @staticmethod
    def _fill_tls(sock: socket.socket, view: memoryview, size: int) -> int:
        """Add what TLS can give without blocking: a TLS read returns one record
        (16 KiB at most), a plain one everything the socket holds."""
        try:
            while size < len(view):
                got = sock.recv_into(view[size:])
                if not got:
                    break
                size += got
        except _WOULD_BLOCK:
            pass
        return size

    def _count(self, texts: int) -> None:
        self.messages += texts
        self.session_messages += texts


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _describe(exc: BaseException | None) -> str:
    """A short, secret-free description of a network error."""
    if exc is None:
        return "unknown error"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__
