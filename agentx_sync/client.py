"""The public clients: lifecycle, decorators and getters over the shared machinery.

A client wires a sans-IO dialect to a :class:`~agentx_sync.connection.Connection`
(the IO thread), a :class:`~agentx_sync.state.State` (the cache) and a
:class:`~agentx_sync.dispatch.Dispatcher` (the callback thread). The IO
thread calls the ``link_*`` methods; everything else here runs on the
caller's thread.

Locks, the whole inventory (a client's, outermost first; a thread holding one
may take only those below it):

1. ``BaseClient._lifecycle``: serializes ``start()`` and ``close()``; never
   held while joining a thread, never taken by the library's own threads.
2. ``_running_lock`` (module-wide): the registry of running clients, for
   ``replace_running``; held only to read and write that dict.
3. ``BaseClient._lock`` (re-entrant): callbacks, subscriptions, counters,
   the status.
4. ``Connection._lock``: the socket, the live flag and the outbox; never held
   while blocking (sends take what the socket takes at once).
5. ``State.batch``: held by the IO thread alone while it decodes and applies
   one read; getters wait for it while holding nothing else.
6. ``State.cond``: the cache and its waiters.
7. The conditions of the two queues (``EventQueue._cond``: events for
   ``get_event``, callbacks for the dispatcher): innermost, held for a
   ``deque`` operation.

``State.batch`` is the one exception to "outermost first": the IO thread
takes it before 3, 6 and 7, which is safe because no thread waits for it
while holding anything. ``integrations.jupyter`` has one more module-wide
lock, for its registry of live views, held alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import html
import logging
import os
import ssl
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Self, TypeVar

import attrs

from .backoff import BackoffPolicy
from .connection import Connection, Dialect
from .dialects import ErrorMessage, Subscribed, Unsubscribed, Verdict
from .dialects.agentexchange import (
    AgentExchangeDialect,
    SubscriptionBook,
    check_interval,
    normalize_symbol,
)
from .dialects.nexgent import (
    INITIAL_DATA_FAILED,
    AgentConnected,
    InitialData,
    NexgentDialect,
)
from .dispatch import Callback, Dispatcher, EventQueue
from .errors import (
    AgentNotFoundError,
    AgentXError,
    AuthenticationError,
    CallbackError,
    ClientClosedError,
    ClientStateError,
    ConnectionLostError,
    ConnectionReplacedError,
    OrderFailedError,
    ProtocolError,
    SubscriptionLimitError,
    server_error,
)
from .models import (
    Candle,
    Connected,
    ConnectionState,
    Disconnected,
    ErrorEvent,
    Health,
    Order,
    OrderStatus,
    Portfolio,
    Position,
    PositionChange,
    PriceBatch,
    Ticker,
)
from .numbers import display
from .state import State

__all__ = ["AgentExchangeWS", "BaseClient", "NexgentWS", "ReplacedClientWarning"]

log = logging.getLogger("agentx_sync.client")

F = TypeVar("F", bound=Callable[..., Any])
Key = tuple[str, ...]

_ENDED = frozenset({ConnectionState.CLOSED, ConnectionState.FAILED, ConnectionState.REPLACED})
_RECORDS = frozenset({Ticker, Candle, Order, Portfolio})


class ReplacedClientWarning(UserWarning):
    """A started client replaced a running one with the same credentials (and Nexgent agent)."""


# Running clients by (class, Nexgent agent, digest of the credentials): re-running a
# notebook cell must not leave the previous client connected in the background.
_running: weakref.WeakValueDictionary[tuple[str, str, str], BaseClient] = weakref.WeakValueDictionary()
_running_lock = threading.Lock()
# Every client, so that a forked child can disarm its copies (see _after_fork_in_child).
_clients: weakref.WeakSet[BaseClient] = weakref.WeakSet()

FORKED = (
    "this client was copied into a child process by os.fork(); the copy does not run here "
    "(start clients after forking)"
)


def _after_fork_in_child() -> None:
    """In a forked child: every client copy stops being "running", without touching the parent's socket."""
    global _running_lock
    _running_lock = threading.Lock()
    for client in list(_clients):
        client._disarm_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside this package
    (the user's cell or line), however many library frames (``start()`` overrides) sit between."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


def _interactive() -> bool:
    """True inside an IPython shell or kernel (a notebook), where cells are re-run."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        return ipython.get_ipython() is not None
    except Exception:
        return False


class BaseClient:
    """Lifecycle, lifecycle callbacks, the event queue and health, for every platform."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        stale_timeout: float,
        connect_timeout: float,
        backoff: BackoffPolicy | None,
        max_message_size: int,
        ssl_context: ssl.SSLContext | None,
        event_queue_size: int,
        callback_queue_size: int,
        max_orders: int = 100,
        replace_running: bool | None = None,
        coalesce: float = 0.0,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if ssl_context is not None and not dialect.url.startswith("wss://"):
            raise ValueError(
                "ssl_context is given but the URL is not wss:// (nor https://): the connection "
                "would not use TLS at all; use a wss:// URL or drop ssl_context"
            )
        self._dialect = dialect
        #: On start(), close a running client of the same class and
        #: credentials first. None (the default): only inside IPython/Jupyter.
        self.replace_running = replace_running
        self._state = State(max_orders)
        self._events: EventQueue[Any] = EventQueue(event_queue_size)
        self._dispatcher = Dispatcher(callback_queue_size, self._callback_failed)
        self._conn = Connection(
            dialect,
            self,
            backoff=backoff,
            stale_timeout=stale_timeout,
            connect_timeout=connect_timeout,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            batch_lock=self._state.batch,
            coalesce=coalesce,
            proxy=proxy,
            trust_env=trust_env,
        )
        # One lock for the client's own bookkeeping (callbacks, subscriptions,
        # counters); it is always taken before the connection's send lock.
        self._lock = threading.RLock()
        # Serializes start() and close() (never held while joining a thread,
        # never taken by the IO or dispatcher threads' own work).
        self._lifecycle = threading.Lock()
        self._callbacks: dict[Key, tuple[Callback, ...]] = {}
        self._status = ConnectionState.NEW
        self._started = False
        self._opened = 0
        self._connected_since: datetime | None = None
        self._bad_messages = 0
        self._server_errors = 0
        self._last_error: str | None = None
        self._fatal: AgentXError | None = None
        # Called with every new status (by connect(), to wake its event loop).
        self._watchers: tuple[Callable[[ConnectionState], None], ...] = ()
        _clients.add(self)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        """Start the IO and dispatcher threads and return at once (idempotent).

        The lifecycle: a client runs from start() until close() (or a fatal
        error); after a close() that returned True it may be started again.
        It never has more than one IO thread and one dispatcher thread.

        When ``replace_running`` is on (by default only inside IPython/Jupyter,
        where re-running a cell builds a new client), a running client of the
        same class and credentials (and Nexgent agent), whatever its endpoint,
        is closed first, with a :class:`ReplacedClientWarning`.

        Raises:
            ClientStateError: a thread of this client's previous run is still
                alive (its close() timed out, or runs right now in another
                thread). Call close() again and start once it returns True.
        """
        if self.replace_running if self.replace_running is not None else _interactive():
            self._replace_running()
        with self._lifecycle:
            with self._lock:
                if self._started:
                    return self
            busy = [
                t.name
                for t in (self._conn.thread, self._dispatcher.thread)
                if t is not None and t.is_alive() and t is not threading.current_thread()
            ]
            if busy or self._dispatcher.thread is threading.current_thread():
                which = ", ".join(busy) or "agentx-sync-dispatch"
                raise ClientStateError(
                    f"cannot start {type(self).__name__}: the previous run's {which} thread has not "
                    "ended (close() did not complete); call close() until it returns True"
                )
            with self._lock:
                self._started = True
                self._opened = 0
                self._fatal = None
                self._state.stop_waiters(None)
                self._events.reopen()
                self._set_status(ConnectionState.CONNECTING)
            self._dispatcher.start()
            self._conn.start()
        return self

    def _identity(self) -> tuple[str, str, str]:
        """What makes a re-created client "the same": its class and credentials.

        Not the endpoint: a notebook that re-runs a cell which starts a
        simulator on a fresh port and a client on it must not leave the old
        client connected to the old one.
        """
        digest = hashlib.sha256("\0".join(self._dialect.secrets).encode()).hexdigest()
        return (type(self).__name__, self._identity_extra(), digest)

    def _identity_extra(self) -> str:
        return ""

    def _replace_running(self) -> None:
        key = self._identity()
        with _running_lock:
            previous = _running.get(key)
            _running[key] = self
        if previous is not None and previous is not self and previous._started:
            closed = previous.close()
            message = (
                f"closed the running {type(previous).__name__} for {previous._dialect.safe_url} "
                f"(same credentials) before starting this one"
                + ("" if closed else "; one of its threads did not end in time")
            )
            log.warning(message)
            warnings.warn(message, ReplacedClientWarning, stacklevel=_user_stacklevel())

    def close(self, timeout: float = 5.0) -> bool:
        """Close the connection and join every thread of this client (idempotent).

        Blocks for at most ``timeout`` seconds. Returns True when every thread
        of this client has ended, False when one outlived ``timeout`` (the
        client then cannot be started again until a later close() returns
        True). Called from inside a callback, it returns without joining the
        dispatcher thread (its own), which ends as soon as that callback returns.
        Safe to call from any thread, at any time, and concurrently with start().
        """
        with self._lifecycle:
            with self._lock:
                was_started, self._started = self._started, False
                if self._status is not ConnectionState.FAILED:
                    self._set_status(ConnectionState.CLOSED)
            self._state.stop_waiters(self._fatal or ClientClosedError("the client was closed"))
            # Signal both threads now; join them below, outside the lifecycle lock,
            # so that a close() from a callback cannot deadlock with this one.
            self._conn.stop(0)
            self._dispatcher.stop(0)
            threads = [t for t in (self._conn.thread, self._dispatcher.thread) if t is not None]
            self._events.close()
            self._closed()
        deadline = time.monotonic() + timeout
        me = threading.current_thread()
        for thread in threads:
            if thread is not me:
                thread.join(max(0.0, deadline - time.monotonic()))
        if was_started:
            log.info("closed %s", self._dialect.safe_url)
        return not any(t.is_alive() for t in threads if t is not me)

    def _disarm_after_fork(self) -> None:
        """In a forked child: fresh locks, no socket, no threads, a visibly closed client.

        The IO thread may have held any lock at the fork, and the socket is
        the parent's connection: the child closes only its own file descriptor
        (no close frame, no shutdown), so nothing it does reaches the parent.
        """
        self._lock = threading.RLock()
        self._lifecycle = threading.Lock()
        self._state.after_fork(ClientClosedError(FORKED))
        self._events.after_fork()
        self._dispatcher.after_fork()
        self._conn.after_fork()
        self._started = False
        self._status = ConnectionState.CLOSED
        self._connected_since = None
        self._last_error = FORKED

    def _closed(self) -> None:
        """Platform-specific clean-up after a user's close()."""

    def run_forever(self) -> None:
        """Block until close() (starting first if needed).

        Meant for ``threading.Thread(target=ws.run_forever, daemon=True)`` or the
        main thread. Ctrl-C in the main thread closes the client and re-raises.

        Raises:
            AuthenticationError: the credentials were refused (and any other
                error that ends the client for good).
        """
        self.start()
        try:
            self._state.wait(lambda: self._status if self._status in _ENDED else None, None, "end")
        except ClientClosedError:
            return
        except KeyboardInterrupt:
            self.close()
            raise
        # Woken by the state change itself rather than by the error: raise it all the same.
        if self._fatal is not None:
            raise copy.copy(self._fatal)

    async def connect(self) -> None:
        """Run the client until close() or an error that ends it, for asyncio code.

        The drop-in for the platform's asyncio SDK: ``await ws.connect()``, or
        ``asyncio.gather(ws.connect(), strategy())``. It starts the client
        (the IO thread does the network work, so the event loop is never
        blocked) and returns when the client is closed. While it is awaited,
        ``async def`` callbacks run on this event loop, one at a time and in
        order with the plain ones (which stay on the dispatcher thread);
        otherwise they run on a loop thread of the client's own. Cancelling
        the awaiting task (Ctrl-C under ``asyncio.run``) closes the client.

        Raises:
            AuthenticationError: the credentials were refused (and any other
                error that ends the client for good).
        """
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not ended.done():
                ended.set_result(None)

        def watch(status: ConnectionState) -> None:
            if status in _ENDED:
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(resolve)

        with self._lock:
            self._watchers = (*self._watchers, watch)
        self._dispatcher.loop = loop
        try:
            self.start()
            if self._status in _ENDED:
                resolve()
            await ended
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            with self._lock:
                self._watchers = tuple(w for w in self._watchers if w is not watch)
            if self._dispatcher.loop is loop:
                self._dispatcher.loop = None
        if self._fatal is not None:
            raise copy.copy(self._fatal)

    def wait_connected(self, timeout: float | None = 10.0) -> None:
        """Block until the client is connected (starting a new client first).

        Raises:
            AuthenticationError: the credentials were refused.
            TimeoutError: no connection within ``timeout`` seconds.
            ClientClosedError: the client was closed meanwhile.
        """
        if self._status is ConnectionState.NEW:
            self.start()
        self._state.wait(
            lambda: True if self._status is ConnectionState.CONNECTED else None, timeout, "connection"
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def state(self) -> ConnectionState:
        return self._status

    @property
    def connected(self) -> bool:
        return self._status is ConnectionState.CONNECTED

    def health(self) -> Health:
        """A snapshot of the connection, its counters and its last error."""
        last = self._conn.last_received
        with self._lock:
            return Health(
                state=self._status,
                url=self._dialect.safe_url,
                connected_since=self._connected_since,
                reconnects=max(0, self._opened - 1),
                messages=self._conn.messages,
                # Records the cache refused for its size bounds count as bad too.
                bad_messages=self._bad_messages + self._state.overflow + self._state.book.overflow,
                ignored_messages=self._conn.ignored,
                dropped_events=self._events.dropped,
                dropped_callbacks=self._dispatcher.queue.dropped,
                callback_errors=self._dispatcher.errors,
                server_errors=self._server_errors,
                last_message_age=None if last is None else time.monotonic() - last,
                last_error=self._last_error,
                subscriptions=self._confirmed(),
            )

    def _confirmed(self) -> tuple[str, ...]:
        return ()

    def __repr__(self) -> str:
        health = self.health()
        age = "" if health.last_message_age is None else f" last_message={health.last_message_age:.1f}s_ago"
        error = f" last_error={health.last_error!r}" if health.last_error else ""
        return (
            f"<{type(self).__name__} {health.url} state={health.state.value} "
            f"reconnects={health.reconnects} messages={health.messages}{self._repr_extra()}{age}{error}>"
        )

    def _repr_extra(self) -> str:
        return ""

    def _repr_html_(self) -> str:
        """A notebook's view: connection state, subscriptions, latest data, last error."""
        h = self.health()
        rows = [
            ("state", h.state.value),
            ("endpoint", h.url),
            ("connected since", h.connected_since.strftime("%H:%M:%S UTC") if h.connected_since else "-"),
            ("reconnects", str(h.reconnects)),
            ("messages", f"{h.messages:,} ({h.bad_messages} bad, {h.dropped_events} dropped)"),
            ("last message", "-" if h.last_message_age is None else f"{h.last_message_age:.1f} s ago"),
            ("subscriptions", ", ".join(h.subscriptions) or "-"),
            ("last error", h.last_error or "-"),
        ]
        color = {"connected": "#1a7f37", "failed": "#cf222e", "replaced": "#cf222e"}.get(
            h.state.value, "#9a6700"
        )
        head = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return (
            f"<div><b>{type(self).__name__}</b> <span style='color:{color}'>&#9679; {h.state.value}</span>"
            f"<table>{head}</table>{self._html_data()}</div>"
        )

    def _html_data(self) -> str:
        return ""

    # -- the event queue -------------------------------------------------------

    def get_event(self, timeout: float | None = None) -> Any:
        """Block for the next event (record, Connected, Disconnected, ErrorEvent).

        Returns ``None`` when ``timeout`` passes, or once the client is closed
        and the queue is empty. The queue keeps the newest ``event_queue_size``
        events; older ones are dropped and counted in ``health().dropped_events``.
        """
        return self._events.get(timeout)

    # -- lifecycle callbacks -----------------------------------------------------

    def on_connect(self) -> Callable[[F], F]:
        """Decorator: ``fn(event: Connected)`` after each connection opens."""
        return self._decorator(("connect",))

    def on_disconnect(self) -> Callable[[F], F]:
        """Decorator: ``fn(event: Disconnected)`` after each connection ends."""
        return self._decorator(("disconnect",))

    def on_error(self) -> Callable[[F], F]:
        """Decorator: ``fn(error: AgentXError)`` for every error the client meets."""
        return self._decorator(("error",))

    def _decorator(self, key: Key, then: Callable[[], None] | None = None) -> Callable[[F], F]:
        def register(fn: F) -> F:
            if not callable(fn):
                raise TypeError(f"a callback must be callable, not {fn!r}")
            with self._lock:
                self._callbacks = {**self._callbacks, key: (*self._callbacks.get(key, ()), fn)}
            if then is not None:
                then()
            return fn

        return register

    # -- reporting (any thread) ------------------------------------------------------

    def _emit(self, key: Key, event: Any) -> None:
        callbacks = self._callbacks.get(key)
        if callbacks:
            self._dispatcher.submit(((callbacks, event),))
        self._events.put_many((event,))

    def _report(self, error: AgentXError) -> None:
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}"
        callbacks = self._callbacks.get(("error",))
        if callbacks:
            self._dispatcher.submit(((callbacks, error),))
        self._events.put_many((ErrorEvent(error),))

    def _callback_failed(self, error: CallbackError) -> None:
        # Runs on the dispatcher thread: call on_error directly, not via the queue.
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}"
        self._events.put_many((ErrorEvent(error),))
        for callback in self._callbacks.get(("error",), ()):
            try:
                self._dispatcher.call(callback, error)
            except BaseException:  # even SystemExit: the dispatcher thread must live on
                log.exception("an on_error callback raised")

    def _set_status(self, status: ConnectionState) -> None:
        with self._state.cond:
            self._status = status
            self._state.cond.notify_all()
        for watch in self._watchers:
            watch(status)

    # -- the IO thread's hooks ----------------------------------------------------

    def link_connecting(self) -> None:
        with self._lock:
            if self._started:
                self._set_status(ConnectionState.CONNECTING)

    def link_opened(self, conn: Connection) -> None:
        with self._lock:
            if not self._started:
                return
            self._opened += 1
            self._connected_since = datetime.now(UTC)
            reconnect = self._opened > 1
            self._on_open(conn)
            # The event first: whoever wait_connected() wakes finds it queued.
            self._emit(("connect",), Connected(self._dialect.safe_url, self._connected_since, reconnect))
            self._set_status(ConnectionState.CONNECTED)

    def _on_open(self, conn: Connection) -> None:
        """Send what a fresh connection needs (subscriptions); client lock held."""

    def link_events(self, events: list[Any]) -> None:
        raise NotImplementedError

    def link_bad_message(self, error: ProtocolError) -> None:
        with self._lock:
            self._bad_messages += 1
        log.warning("ignored a bad message: %s (%.80r)", error, error.raw)
        self._report(error)

    def link_lost(self, error: AgentXError, retry_in: float | None) -> None:
        with self._lock:
            if isinstance(error, ProtocolError):  # a frame the connection could not survive
                self._bad_messages += 1
            self._connected_since = None
            self._on_lost()
            if self._started:
                self._set_status(ConnectionState.BACKOFF)
        log.warning("%s; reconnecting in %.2f s", error, retry_in or 0.0)
        self._report(error)
        self._emit(("disconnect",), Disconnected(error, retry_in, self._conn.session_messages))

    def _on_lost(self) -> None:
        """Forget per-connection state; client lock held."""

    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Verdict:
        self._fail(error, ConnectionState.FAILED)
        return Verdict.FATAL

    def _fail(self, error: AgentXError, status: ConnectionState) -> None:
        """End the client for good: waiters get ``error``, callbacks hear of it."""
        with self._lock:
            if not self._started:
                return  # closed meanwhile: the user's close() has the last word
            self._fatal = error
            self._connected_since = None
            self._on_lost()
            self._set_status(status)
        log.error("%s: not reconnecting", error)
        self._state.stop_waiters(error)
        self._report(error)
        self._emit(("disconnect",), Disconnected(error, None, self._conn.session_messages))


class AgentExchangeWS(BaseClient):
    """A threaded client for AgentExchange's WebSocket (PROTOCOL.md section 1).

    Args:
        api_key: the agent's api key (``ak_live_...``); never logged.
        base_url: ``ws(s)://`` or ``http(s)://`` root of the platform. By
            default ``$AGENTEXCHANGE_WS_URL`` when set (the variable the
            platform's examples use), else ``ws://localhost:8000`` (the SDK's
            default).
        stale_timeout: seconds without any message before the connection is
            considered dead and re-opened (the server pings every 30 s).
        connect_timeout: seconds allowed to open a connection.
        backoff: reconnect delays (default: 1 s doubling to 60 s, 20 % jitter,
            reset after 30 s of stable connection).
        max_message_size: larger messages drop the connection.
        ssl_context: for ``wss://`` (default: system CAs, host name checked).
        event_queue_size: how many events ``get_event`` holds (oldest dropped).
        callback_queue_size: how many events may wait for slow callbacks.
        replace_running: on start(), close a running AgentExchangeWS with the
            same key first (whatever its endpoint), with a :class:`ReplacedClientWarning`
            (a notebook cell run twice). ``None``, the default: on inside
            IPython/Jupyter only; elsewhere two such clients run side by side.
        coalesce: seconds to let messages gather after each read before the
            next one (at most 1). Fewer wakeups of the IO thread, so less CPU
            at steady rates (see README, Performance), for up to that much
            added latency. 0, the default, hands each message over at once.
        proxy: an HTTP proxy, ``http://[user:password@]host:port``, to
            tunnel through with HTTP CONNECT (TLS to a wss:// server stays end
            to end). Its credentials are secrets: never logged or shown.
        trust_env: without ``proxy``, use the environment's ``https_proxy``
            (wss://) or ``http_proxy`` (ws://) and ``no_proxy``, as
            websocket-client and requests do. Read at each connection attempt.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        stale_timeout: float = 40.0,
        connect_timeout: float = 10.0,
        backoff: BackoffPolicy | None = None,
        max_message_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        event_queue_size: int = 10_000,
        callback_queue_size: int = 100_000,
        replace_running: bool | None = None,
        coalesce: float = 0.0,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("AGENTEXCHANGE_WS_URL") or "ws://localhost:8000"
        super().__init__(
            AgentExchangeDialect(base_url, api_key),
            stale_timeout=stale_timeout,
            connect_timeout=connect_timeout,
            backoff=backoff,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            event_queue_size=event_queue_size,
            callback_queue_size=callback_queue_size,
            replace_running=replace_running,
            coalesce=coalesce,
            proxy=proxy,
            trust_env=trust_env,
        )
        self.base_url = base_url
        self._subs = SubscriptionBook()  # guarded by the client lock

    # -- decorators ----------------------------------------------------------------

    def on_ticker(self, symbol: str) -> Callable[[F], F]:
        """Decorator: ``fn(ticker: Ticker)`` for each trade of ``symbol`` (or ``"all"``)."""
        key = "*" if symbol.strip().lower() == "all" else normalize_symbol(symbol)
        return self._decorator(("ticker", key), lambda: self._subscribe_tickers([key]))

    def on_candles(self, symbol: str, interval: str) -> Callable[[F], F]:
        """Decorator: ``fn(candle: Candle)`` for ``symbol``'s candles of ``interval``."""
        sym, interval = normalize_symbol(symbol), check_interval(interval)
        return self._decorator(("candles", sym, interval), lambda: self.subscribe_candles(sym, interval))

    def on_order_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(order: Order)`` for each order update of the agent."""
        return self._decorator(("orders",), lambda: self._want(orders=True))

    def on_portfolio(self) -> Callable[[F], F]:
        """Decorator: ``fn(portfolio: Portfolio)`` for each portfolio snapshot."""
        return self._decorator(("portfolio",), lambda: self._want(portfolio=True))

    # -- subscriptions ----------------------------------------------------------------

    def subscribe_ticker(self, *symbols: str) -> None:
        """Receive trades of these symbols (``"all"`` for every pair); kept across reconnects."""
        self._subscribe_tickers(["*" if s.strip().lower() == "all" else normalize_symbol(s) for s in symbols])

    def unsubscribe_ticker(self, *symbols: str) -> None:
        with self._lock:
            for symbol in symbols:
                if symbol.strip().lower() == "all":
                    self._subs.interest.all_tickers = False
                else:
                    self._subs.interest.tickers.discard(normalize_symbol(symbol))
            self._resubscribe()

    def subscribe_candles(self, symbol: str, interval: str) -> None:
        """Receive ``symbol``'s candles of ``interval`` (one of 1m, 5m, 1h, 1d)."""
        with self._lock:
            self._subs.interest.candles.add((normalize_symbol(symbol), check_interval(interval)))
            self._resubscribe()

    def unsubscribe_candles(self, symbol: str, interval: str) -> None:
        with self._lock:
            self._subs.interest.candles.discard((normalize_symbol(symbol), interval))
            self._resubscribe()

    def subscriptions(self) -> tuple[str, ...]:
        """The channel keys this client wants, e.g. ``("ticker:BTCUSDT", "orders")``."""
        with self._lock:
            return self._subs.keys()

    def _subscribe_tickers(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                if key == "*":
                    self._subs.interest.all_tickers = True
                else:
                    self._subs.interest.tickers.add(key)
            self._resubscribe()

    def _want(self, *, orders: bool = False, portfolio: bool = False) -> None:
        with self._lock:
            self._subs.interest.orders |= orders
            self._subs.interest.portfolio |= portfolio
            self._resubscribe()

    def _resubscribe(self) -> None:
        """Bring the wire in line with the interest (client lock held)."""
        requests, unserved = self._subs.sync()
        if unserved:
            keys = ", ".join(s.key for s in unserved)
            self._report(
                SubscriptionLimitError(
                    f"more than 10 subscriptions are needed; not subscribed: {keys}",
                    code="SUBSCRIPTION_LIMIT",
                )
            )
        for request in requests:
            sub, action = request
            if not self._conn.send_text(sub.message(action)):
                self._subs.unsent(request)

    def _on_open(self, conn: Connection) -> None:
        self._subs.opened()
        self._resubscribe()

    def _on_lost(self) -> None:
        self._subs.lost()

    def _confirmed(self) -> tuple[str, ...]:
        return self._subs.confirmed()

    def _repr_extra(self) -> str:
        return f" prices={len(self._state.tickers)}"

    def _html_data(self, limit: int = 20) -> str:
        tickers = sorted(self._state.ticker_snapshot().values(), key=lambda t: t.symbol)
        if not tickers:
            return "<p>No prices yet.</p>"
        now = time.monotonic()
        rows = "".join(
            f"<tr><td>{html.escape(t.symbol[:32])}</td><td style='text-align:right'>{display(t.price)}</td>"
            f"<td style='text-align:right'>{now - t.received_at:.1f} s</td></tr>"
            for t in tickers[:limit]
        )
        more = f"<p>... and {len(tickers) - limit} more</p>" if len(tickers) > limit else ""
        return f"<table><tr><th>symbol</th><th>price</th><th>age</th></tr>{rows}</table>{more}"

    # -- the IO thread's hot path ----------------------------------------------------

    def link_events(self, events: list[Any]) -> None:  # noqa: C901, PLR0912 - the hot path: one pass routes a read's records to the cache, callbacks and queue
        if not self._started:
            return  # an IO thread that outlived close(): it must not fill a closed client
        records = [e for e in events if type(e) in _RECORDS]
        if len(records) != len(events):
            for event in events:
                if type(event) not in _RECORDS:
                    self._control(event)
        if not records:
            return
        self._state.apply(records)
        callbacks = self._callbacks
        interest = self._subs.interest
        every, chosen = interest.all_tickers, interest.tickers
        if every and not callbacks:  # the ticker_all firehose, pull-style: nothing to filter
            self._events.put_many(records)
            return
        jobs: list[tuple[tuple[Callback, ...], Any]] = []
        wanted: list[Any] = []
        for record in records:
            kind = type(record)
            if kind is Ticker:
                if not (every or record.symbol in chosen):
                    continue  # arrived through ticker_all for another symbol
                keys: tuple[Key, ...] = (("ticker", record.symbol), ("ticker", "*"))
            elif kind is Candle:
                keys = (("candles", record.symbol, record.interval),)
            elif kind is Order:
                keys = (("orders",),)
            else:
                keys = (("portfolio",),)
            wanted.append(record)
            if callbacks:
                for key in keys:
                    found = callbacks.get(key)
                    if found:
                        jobs.append((found, record))
        if jobs:
            self._dispatcher.submit(jobs)
        if wanted:
            self._events.put_many(wanted)

    def _control(self, event: Any) -> None:
        kind = type(event)
        if kind is ErrorMessage:
            with self._lock:
                request = self._subs.refused()
                self._server_errors += 1
            error = server_error(event.message, event.code, request)
            log.warning("server error: %s", error)
            self._report(error)
        elif kind is Subscribed or kind is Unsubscribed:
            with self._lock:
                self._subs.answered(event.channel, kind is Subscribed)

    # -- getters (any thread) ----------------------------------------------------------
    # They never wait for the network; at most for the batch being applied (State.settle).

    def get_cached_price(self, symbol: str) -> Decimal | None:
        """The latest price of ``symbol``, or None if none has arrived. Never waits for the network."""
        ticker = self._state.ticker(symbol.upper())
        return None if ticker is None else ticker.price

    def get_ticker(self, symbol: str) -> Ticker | None:
        """The latest trade of ``symbol`` (price, quantity, timestamp), or None."""
        return self._state.ticker(symbol.upper())

    def price_age(self, symbol: str) -> float | None:
        """Seconds since ``symbol``'s cached price arrived, or None."""
        ticker = self._state.ticker(symbol.upper())
        return None if ticker is None else time.monotonic() - ticker.received_at

    def prices(self) -> dict[str, Decimal]:
        """Every cached price, by symbol."""
        return {s: t.price for s, t in self._state.ticker_snapshot().items()}

    def get_candle(self, symbol: str, interval: str) -> Candle | None:
        self._state.settle()
        return self._state.candles.get((symbol.upper(), interval))

    def get_orders(self) -> list[Order]:
        """The last 100 order updates, oldest first."""
        return self._state.order_list()

    def get_order(self, order_id: str) -> Order | None:
        """The latest update of ``order_id`` among the last 100, or None."""
        return self._state.order(str(order_id))

    def get_portfolio(self) -> Portfolio | None:
        self._state.settle()
        return self._state.portfolio

    # -- blocking getters ------------------------------------------------------------

    def wait_for_price(self, symbol: str, timeout: float | None = 10.0) -> Decimal:
        """Block until ``symbol`` has a price (subscribing to it if needed).

        Raises:
            TimeoutError: no price within ``timeout`` seconds.
            AuthenticationError, ClientClosedError: the client ended meanwhile.
        """
        sym = normalize_symbol(symbol)
        if sym not in self._state.tickers and not self._subs.interest.wants_ticker(sym):
            self._subscribe_tickers([sym])
        tickers = self._state.tickers
        ticker = self._state.wait(lambda: tickers.get(sym), timeout, f"price for {sym}")
        return ticker.price

    def lookup_price(self, symbol: str, timeout: float = 3.0) -> Decimal | None:
        """A price for a one-off question (an agent's tool); blocks up to ``timeout``.

        The cached price if there is one; otherwise a temporary subscription is
        made and the first price awaited. A symbol that brings no price within
        ``timeout`` (not listed, a typo) does not keep its subscription, and a
        lookup never widens the connection to ``ticker_all``.

        Returns:
            The price, or None when none came within ``timeout``.

        Raises:
            SubscriptionLimitError: the subscription slots are full; a new
                symbol could only be served by streaming every pair.
            AuthenticationError, ClientClosedError: the client ended meanwhile.
        """
        sym = normalize_symbol(symbol)
        ticker = self._state.ticker(sym)
        if ticker is not None:
            return ticker.price
        added = False
        with self._lock:
            if not self._subs.interest.wants_ticker(sym):
                trial = attrs.evolve(self._subs.interest, tickers={*self._subs.interest.tickers, sym})
                if trial.plan().via_ticker_all and not self._subs.interest.plan().via_ticker_all:
                    raise SubscriptionLimitError(
                        f"no slot left to subscribe to {sym}: every subscription of this connection "
                        "is taken, and a guess must not switch it to ticker_all",
                        code="SUBSCRIPTION_LIMIT",
                    )
                self._subs.interest.tickers.add(sym)
                self._resubscribe()
                added = True
        tickers = self._state.tickers
        try:
            return self._state.wait(lambda: tickers.get(sym), timeout, f"price for {sym}").price
        except TimeoutError:
            return None
        finally:
            if added and sym not in tickers:
                self.unsubscribe_ticker(sym)

    def wait_for_order(
        self, order_id: str, status: str | None = "filled", timeout: float | None = 30.0
    ) -> Order:
        """Block until ``order_id`` reaches ``status`` (any update if None).

        Raises:
            OrderFailedError: the order reached a different final status
                (e.g. rejected while waiting for filled).
            TimeoutError: not within ``timeout`` seconds.
        """
        order_id = str(order_id)

        def accept(order: Order) -> bool:
            if status is None or order.status == status:
                return True
            return isinstance(order.status, OrderStatus) and order.status.is_final

        order = self._state.wait_order(order_id, accept, timeout, f"update of order {order_id}")
        if status is not None and order.status != status:
            raise OrderFailedError(f"order {order_id} ended {order.status}, not {status}", order=order)
        return order


class NexgentWS(BaseClient):
    """A threaded client for Nexgent's WebSocket (PROTOCOL.md section 2).

    Args:
        api_url: the instance's URL (``https://...`` becomes ``wss://...``).
        token: a JWT of the agent's owner; never logged.
        agent_id: the agent whose positions to follow.
        token_provider: called (on the IO thread) for a fresh JWT when the
            server refuses the current one at a reconnect (HTTP 401).
        reconnect_on_replace: reconnect after another client took this agent
            over (close 1000 "New connection established"). Off by default:
            two clients that both reconnect knock each other off forever.
        stale_timeout: seconds without a server ping or data before the
            connection is re-opened (the server pings every 30 s).
        Other options as for :class:`AgentExchangeWS`.
    """

    def __init__(
        self,
        api_url: str,
        token: str,
        agent_id: str,
        *,
        token_provider: Callable[[], str] | None = None,
        reconnect_on_replace: bool = False,
        stale_timeout: float = 70.0,
        connect_timeout: float = 10.0,
        backoff: BackoffPolicy | None = None,
        max_message_size: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
        event_queue_size: int = 10_000,
        callback_queue_size: int = 100_000,
        replace_running: bool | None = None,
        coalesce: float = 0.0,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        self._nexgent = NexgentDialect(api_url, token, agent_id)
        super().__init__(
            self._nexgent,
            stale_timeout=stale_timeout,
            connect_timeout=connect_timeout,
            backoff=backoff,
            max_message_size=max_message_size,
            ssl_context=ssl_context,
            event_queue_size=event_queue_size,
            callback_queue_size=callback_queue_size,
            replace_running=replace_running,
            coalesce=coalesce,
            proxy=proxy,
            trust_env=trust_env,
        )
        self.api_url = api_url
        self.token_provider = token_provider
        self.reconnect_on_replace = reconnect_on_replace
        self._refreshed = False
        self._book = self._state.book

    def _identity_extra(self) -> str:
        return self._nexgent.agent_id  # one owner's token serves several agents

    @property
    def agent_id(self) -> str:
        return self._nexgent.agent_id

    def _repr_extra(self) -> str:
        stale = " (stale)" if self.positions_stale else ""
        return f" agent={self.agent_id} positions={len(self._book.records)}{stale}"

    def _html_data(self) -> str:
        positions = self.get_positions()
        if not positions:
            return "<p>No positions.</p>"

        def cell(value: Any, places: int | None = None) -> str:
            if value is None:
                return "-"
            return html.escape(display(value, places) if isinstance(value, Decimal) else str(value)[:48])

        rows = "".join(
            f"<tr><td>{cell(p.token_symbol or p.token_address)}</td>"
            f"<td style='text-align:right'>{cell(p.holding)}</td>"
            f"<td style='text-align:right'>{cell(p.current_price)}</td>"
            f"<td style='text-align:right'>{cell(p.profit_loss_percent, 2)}</td></tr>"
            for p in positions
        )
        stale = "<p>(kept from a lost connection)</p>" if self.positions_stale else ""
        head = "<tr><th>token</th><th>holding</th><th>price (SOL)</th><th>P/L %</th></tr>"
        return f"<table>{head}{rows}</table>{stale}"

    # -- decorators ------------------------------------------------------------------

    def on_positions(self) -> Callable[[F], F]:
        """Decorator: ``fn(positions: list[Position])`` after any change (one call per price batch)."""
        return self._decorator(("positions",))

    def on_position_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(event: PositionEvent)`` for each created / updated / closed position."""
        return self._decorator(("position_update",))

    def on_price_update(self) -> Callable[[F], F]:
        """Decorator: ``fn(batch: PriceBatch)`` once per price batch."""
        return self._decorator(("price_update",))

    # -- getters -----------------------------------------------------------------------

    def get_positions(self) -> list[Position]:
        """The current positions (kept, and ``positions_stale``, while disconnected)."""
        self._state.settle()
        with self._state.cond:
            return list(self._book.records.values())

    def get_position(self, position_id: str) -> Position | None:
        self._state.settle()
        return self._book.records.get(str(position_id))

    @property
    def positions_stale(self) -> bool:
        """True while the positions are from a lost connection, until fresh initial data."""
        return self._book.stale

    def get_cached_price(self, token_address: str) -> Decimal | None:
        """The latest SOL price of a token (any letter case), or None. Never waits for the network."""
        self._state.settle()
        price = self._book.prices.get(token_address.lower())
        return None if price is None else price[0]

    def get_cached_price_usd(self, token_address: str) -> Decimal | None:
        """The latest USD price of a token (any letter case), or None. Never waits for the network."""
        self._state.settle()
        price = self._book.prices.get(token_address.lower())
        return None if price is None else price[1]

    def wait_for_positions(self, timeout: float | None = 10.0) -> list[Position]:
        """Block until this connection's initial positions have arrived.

        Raises:
            ServerError: the server could not load them ("Failed to load initial data").
            AuthenticationError, AgentNotFoundError, ConnectionReplacedError: the client ended.
            TimeoutError: not within ``timeout`` seconds.
        """
        if self._status is ConnectionState.NEW:
            self.start()
        book = self._book

        def probe() -> list[Position] | None:
            if book.error is not None:
                raise copy.copy(book.error)
            return list(book.records.values()) if book.loaded else None

        return self._state.wait(probe, timeout, "initial positions")

    # -- the IO thread's hooks -----------------------------------------------------------

    def link_opened(self, conn: Connection) -> None:
        self._refreshed = False
        super().link_opened(conn)

    def link_lost(self, error: AgentXError, retry_in: float | None) -> None:
        # An attempt that failed otherwise than by a 401 ends a run of refusals:
        # the next 401 (an expired token after a long outage) asks the provider again.
        self._refreshed = False
        super().link_lost(error, retry_in)

    def _on_lost(self) -> None:
        with self._state.cond:
            self._book.disconnected()

    def _closed(self) -> None:
        with self._state.cond:
            self._book.clear()

    def link_events(self, events: list[Any]) -> None:  # noqa: C901 - the hot path: a read's Nexgent events applied as one state change
        if not self._started:
            return  # an IO thread that outlived close(): it must not fill a closed client
        book = self._book
        jobs: list[tuple[Key, Any]] = []
        errors: list[AgentXError] = []

        def positions() -> tuple[Key, list[Position]]:
            return ("positions",), list(book.records.values())

        def apply() -> None:  # noqa: C901 - a flat switch on the event type, inside the one state change
            # All the events of one read, as one state change.
            for event in events:
                kind = type(event)
                if kind is PriceBatch:
                    if event.refused:
                        errors.append(
                            ProtocolError(
                                f"{event.refused} malformed price(s) in a batch refused; the rest applied"
                            )
                        )
                    book.price_batch(event)
                    jobs.append((("price_update",), event))
                    jobs.append(positions())
                elif kind is PositionChange:
                    changed = book.change(event)
                    if changed is not None:
                        jobs.append((("position_update",), changed))
                        jobs.append(positions())
                elif kind is InitialData:
                    jobs.extend((("position_update",), e) for e in book.initial(event.positions))
                    jobs.append(positions())
                elif kind is AgentConnected:
                    if event.agent_id is not None and event.agent_id != self.agent_id:
                        errors.append(
                            ProtocolError(
                                f"the server confirmed agent {event.agent_id!r}, not {self.agent_id!r}"
                            )
                        )
                elif kind is ErrorMessage:
                    error = server_error(event.message)
                    if event.message.startswith(INITIAL_DATA_FAILED) and not book.loaded:
                        # No initial_data will come on this connection: what was
                        # held back is applied now, later changes as they come.
                        jobs.extend((("position_update",), e) for e in book.failed(error))
                        jobs.append(positions())
                    errors.append(error)

        self._state.mutate(apply)
        for key, payload in jobs:
            self._emit(key, payload)
        for error in errors:
            if isinstance(error, ProtocolError):
                self.link_bad_message(error)
                continue
            with self._lock:
                self._server_errors += 1
            log.warning("server error: %s", error)
            self._report(error)

    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Verdict:
        if verdict is Verdict.AUTH_FAILED:
            return self._refresh_token(error)
        if verdict is Verdict.REPLACED:
            replaced = ConnectionReplacedError(
                f"another client connected for agent {self.agent_id} and replaced this one"
            )
            if self.reconnect_on_replace:
                self._report(replaced)
                return Verdict.RECONNECT
            self._fail(replaced, ConnectionState.REPLACED)
            return Verdict.FATAL
        if verdict is Verdict.FATAL and isinstance(error, ConnectionLostError) and error.code == 1008:
            error = AgentNotFoundError(
                f"Nexgent closed the connection (1008 {error.reason or 'Agent not found'}): "
                f"agent {self.agent_id} does not belong to this token's user"
            )
        self._fail(error, ConnectionState.FAILED)
        return Verdict.FATAL

    def _refresh_token(self, error: AgentXError) -> Verdict:
        if self.token_provider is None:
            self._fail(
                AuthenticationError(f"{error}; no token_provider to refresh the token", status=401),
                ConnectionState.FAILED,
            )
            return Verdict.FATAL
        if self._refreshed:
            # The token the provider has just handed over was refused at once: give up.
            self._fail(
                AuthenticationError(f"{error}, a freshly provided token too", status=401),
                ConnectionState.FAILED,
            )
            return Verdict.FATAL
        try:
            token = self.token_provider()
        except Exception as exc:
            log.error("token_provider raised %s", type(exc).__name__)
            failure = AuthenticationError(f"{error}; token_provider raised {type(exc).__name__}", status=401)
            self._fail(failure, ConnectionState.FAILED)
            return Verdict.FATAL
        if not isinstance(token, str) or not token:
            self._fail(
                AuthenticationError(f"{error}; token_provider returned no token", status=401),
                ConnectionState.FAILED,
            )
            return Verdict.FATAL
        self._nexgent.token = token
        self._refreshed = True
        log.info("the token was refused (HTTP 401); retrying with a fresh one from token_provider")
        return Verdict.RETRY_NOW
