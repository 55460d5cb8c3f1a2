"""What every client shares: lifecycle, lifecycle callbacks, the event queue, health.

(Longer than 500 lines on purpose: its docstring is the lock inventory, and
the lifecycle, waits, health and the shared feed's hooks below are what both
clients share; the platform specifics are in ``exchange.py`` and
``nexgent.py``, the shared feed itself in ``share.py``.)

:class:`BaseClient` is the base of :class:`~agentx_sync.exchange.AgentExchangeWS`
and :class:`~agentx_sync.nexgent.NexgentWS` (each in its own module, both
importable from here). A client wires a sans-IO dialect to a :class:`~agentx_sync.connection.Connection`
(the IO thread), a :class:`~agentx_sync.state.State` (the cache) and a
:class:`~agentx_sync.dispatch.Dispatcher` (the callback thread). The IO
thread calls the ``link_*`` methods; everything else here runs on the
caller's thread.

Locks, the whole inventory (a client's, outermost first; a thread holding one
may take only those below it):

1. ``BaseClient._lifecycle``: serializes ``start()`` and ``close()``; never
   held while joining a thread, never taken by the library's own threads.
2. ``_running_lock`` (module-wide): the registry of running clients, for
   ``close_previous``; held only to read and write that dict.
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

With ``share=``, ``Shared._publish_lock`` (one writer to Redis at a time)
comes before ``State.batch``: the share thread takes it, then the batch lock,
to write a snapshot that matches the entries before it; the IO thread only
tries it (never waits for it), outside the batch lock, after a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import html
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .connection import Connection, Dialect
from .dialects import Decision, Verdict
from .dispatch import Callback, Dispatcher, EventQueue
from .errors import (
    AgentXError,
    CallbackError,
    ClientClosedError,
    ClientStateError,
    ProtocolError,
)
from .models import (
    Candle,
    ClientEvent,
    Connected,
    ConnectionState,
    Disconnected,
    ErrorEvent,
    Health,
    Order,
    Portfolio,
    Ticker,
)
from .options import Options
from .state import State

if TYPE_CHECKING:
    from .share import Shared

__all__ = ["AgentExchangeWS", "BaseClient", "NexgentWS", "PreviousClientClosedWarning"]

log = logging.getLogger("agentx_sync.client")

F = TypeVar("F", bound=Callable[..., Any])
Key = tuple[str, ...]

_ENDED = frozenset({ConnectionState.CLOSED, ConnectionState.FAILED, ConnectionState.REPLACED})
_RECORDS = frozenset({Ticker, Candle, Order, Portfolio})


class PreviousClientClosedWarning(UserWarning):
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

    def __init__(self, dialect: Dialect, options: Options, *, max_orders: int = 100) -> None:
        if options.ssl_context is not None and not dialect.url.startswith("wss://"):
            raise ValueError(
                "ssl_context is given but the URL is not wss:// (nor https://): the connection "
                "would not use TLS at all; use a wss:// URL or drop ssl_context"
            )
        self._dialect = dialect
        self.options = options
        #: On start(), close a running client of the same class and
        #: credentials first. None (the default): only inside IPython/Jupyter.
        self.close_previous = options.close_previous
        self._state = State(max_orders)
        self._events: EventQueue[ClientEvent] = EventQueue(options.event_queue_size)
        self._dispatcher = Dispatcher(options.callback_queue_size, self._callback_failed)
        self._conn = Connection(dialect, self, options, batch_lock=self._state.batch)
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
        #: With share=: the share thread of the current run (share.py).
        self._shared: Shared | None = None
        _clients.add(self)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        """Start the IO and dispatcher threads and return at once (idempotent).

        The lifecycle: a client runs from start() until close() (or a fatal
        error); after a close() that returned True it may be started again.
        It never has more than one IO thread and one dispatcher thread.

        When ``close_previous`` is on (by default only inside IPython/Jupyter,
        where re-running a cell builds a new client), a running client of the
        same class and credentials (and Nexgent agent), whatever its endpoint,
        is closed first, with a :class:`PreviousClientClosedWarning`.

        Raises:
            ClientStateError: a thread of this client's previous run is still
                alive (its close() timed out, or runs right now in another
                thread). Call close() again and start once it returns True.
        """
        if self.close_previous if self.close_previous is not None else _interactive():
            self._close_previous()
        with self._lifecycle:
            with self._lock:
                if self._started:
                    return self
            busy = [
                t.name
                for t in (self._conn.thread, self._dispatcher.thread, self._share_thread())
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
            if self.options.share is None:
                self._conn.start()
            else:
                from .share import Shared

                self._shared = Shared(self, self.options.share)
                self._shared.start()
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

    def _close_previous(self) -> None:
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
            warnings.warn(message, PreviousClientClosedWarning, stacklevel=_user_stacklevel())

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
            if self._shared is not None:
                self._shared.stop()  # it steps down (closing the connection) and frees the lease
            self._conn.stop(0)
            self._dispatcher.stop(0)
            threads = [
                t for t in (self._share_thread(), self._conn.thread, self._dispatcher.thread) if t is not None
            ]
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
        self._shared = None  # the parent's: its thread is not here, and its lease is not ours
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
        shared = self._shared
        messages = self._conn.messages
        share: dict[str, Any] = {}
        if shared is not None:
            messages += shared.applied
            if shared.role != "leader" and shared.last_applied is not None:
                last = shared.last_applied
            share = {
                "role": shared.role,
                "leader": shared.leader,
                "lag": shared.lag,
                "lease_changes": shared.lease_changes,
                "resyncs": shared.resyncs,
                "missed_events": shared.missed,
                "share_error": shared.error,
            }
        with self._lock:
            return Health(
                state=self._status,
                url=self._dialect.safe_url,
                connected_since=self._connected_since,
                reconnects=max(0, self._opened - 1),
                messages=messages,
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
                **share,
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

    def get_event(self, timeout: float | None = None) -> ClientEvent | None:
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
        with self._lock:  # the count and the last error change together in health()
            self._bad_messages += 1
            self._last_error = f"{type(error).__name__}: {error}"
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

    def link_verdict(self, verdict: Verdict, error: AgentXError) -> Decision:
        self._fail(error, ConnectionState.FAILED)
        return Decision.STOP

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

    # -- the share thread's hooks (share.py: Feed) -------------------------------------

    #: The decoded message types a shared feed relays to followers.
    _relayed: frozenset[type] = frozenset()

    def _share_thread(self) -> threading.Thread | None:
        return None if self._shared is None else self._shared.thread

    def _feed_identity(self) -> str:
        """What makes two processes' clients one feed: never written to Redis as such (hashed)."""
        return "\0".join((type(self).__name__, self._dialect.safe_url, *self._dialect.secrets))

    @property
    def _batch(self) -> threading.Lock:
        return self._state.batch

    def _lead_relay(self, shared: Shared | None) -> None:
        """Relay what the IO thread applies through ``shared`` (None: stop relaying)."""
        conn = self._conn
        conn.relay, conn.relay_flush = (None, None) if shared is None else (shared.relay, shared.flush)

    def _lead(self) -> None:
        """This process took the lease: open the connection."""
        with self._lock:
            if self._started:
                self._set_status(ConnectionState.CONNECTING)
                self._conn.start()

    def _leading(self) -> bool:
        thread = self._conn.thread
        return thread is not None and thread.is_alive()

    def _unlead(self) -> None:
        """This process no longer leads: close the connection (it follows from now on)."""
        self._conn.stop(5.0)
        with self._lock:
            self._connected_since = None
            self._on_lost()
            if self._started:
                self._set_status(ConnectionState.CONNECTING)

    def _share_status(self, following: bool) -> None:
        """A follower caught up with the feed (or lost Redis)."""
        with self._lock:
            if not self._started:
                return
            if not following:
                self._connected_since = None
                self._set_status(ConnectionState.BACKOFF)
                return
            if self._status is ConnectionState.CONNECTED:
                return
            self._opened += 1
            self._connected_since = datetime.now(UTC)
            where = self._dialect.safe_url
            self._emit(("connect",), Connected(where, self._connected_since, self._opened > 1))
            self._set_status(ConnectionState.CONNECTED)

    def _share_failed(self, error: AgentXError) -> None:
        self._fail(error, ConnectionState.FAILED)

    def _share_report(self, error: AgentXError) -> None:
        with self._lock:
            self._last_error = f"{type(error).__name__}: {error}"
        self._report(error)

    @property
    def _decoder(self) -> Callable[[str, float], Any]:
        """The dialect's decoder, which a follower runs on the texts the leader relays."""
        return self._dialect.decode

    def _bad_relayed(self, error: ProtocolError) -> None:
        self.link_bad_message(error)

    def _follow_events(self, events: list[Any]) -> None:
        """A follower applies relayed events as the leader did: one state change, then callbacks."""
        with self._state.batch:
            self.link_events(events)

    def _snapshot_state(self) -> Any:
        """The cache's records, copied (batch lock held by the caller: keep it short)."""
        return None

    def _snapshot_texts(self, state: Any) -> list[str]:
        """``_snapshot_state()``'s records as wire messages (no lock held)."""
        return []

    def _load_snapshot(self, events: list[Any]) -> None:
        """Replace the cache with a snapshot's records, without callbacks."""

    def _interest(self) -> Any:
        """What this process wants on the wire, as JSON (None: the platform has no choice)."""
        return None

    def _others(self, interests: list[Any]) -> None:
        """The leader: the other processes' interest (as published by ``_interest``)."""


# The platform clients live in their own modules; importing them here keeps
# ``from agentx_sync.client import AgentExchangeWS, NexgentWS`` working.
from .exchange import AgentExchangeWS  # noqa: E402
from .nexgent import NexgentWS  # noqa: E402
