"""Bounded event queues and the dispatcher thread that runs user callbacks.

The IO thread only appends to queues here; user code runs on the dispatcher
thread (``agentx-sync-dispatch``), in arrival order, so a slow or failing
callback never stalls reading, heartbeats or reconnects.

Coroutine callbacks (``async def``) run on an event loop: the caller's, while
the client runs under ``await ws.connect()``, else a loop thread of the
client's own (``agentx-sync-async``, started at the first one). The
dispatcher waits for each to finish before the next callback, so the order
holds for both kinds, as it does when the platform's asyncio SDK awaits its
handlers one by one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from .errors import CallbackError, safe_str

__all__ = ["Dispatcher", "EventQueue", "LoopThread", "describe_callable", "safe_str"]

log = logging.getLogger("agentx_sync.dispatch")

T = TypeVar("T")
Callback = Callable[[Any], object]


class EventQueue(Generic[T]):
    """A bounded FIFO that drops its oldest item when full, and counts drops."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._waiting = 0  # consumers blocked in get()/get_all()

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: Iterable[T]) -> None:
        """Append items (never blocks); the oldest make room when full."""
        queue = self._items
        limit = self.maxsize
        with self._cond:
            for item in items:
                if len(queue) >= limit:
                    queue.popleft()
                    self.dropped += 1
                queue.append(item)
            if self._waiting:
                self._cond.notify()

    def get(self, timeout: float | None) -> T | None:
        """Block until an item arrives; ``None`` on timeout or once closed and empty."""
        with self._cond:
            if not self._wait(timeout):
                return None
            return self._items.popleft() if self._items else None

    def get_all(self, timeout: float | None) -> list[T]:
        """Block until items arrive, then take them all (``[]`` on timeout or close)."""
        with self._cond:
            self._wait(timeout)
            items = list(self._items)
            self._items.clear()
            return items

    def _wait(self, timeout: float | None) -> bool:
        if self._items or self._closed:
            return True
        self._waiting += 1
        try:
            return bool(self._cond.wait_for(lambda: self._items or self._closed, timeout))
        finally:
            self._waiting -= 1

    def after_fork(self) -> None:
        """In a forked child: a fresh lock, no consumers (they were other threads)."""
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0
        self._closed = True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
            self._items.clear()


class LoopThread:
    """An asyncio event loop on a named daemon thread, for coroutine callbacks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="agentx-sync-async", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # Tasks a callback left behind are cancelled, given one pass to
            # clean up, and then dropped with the loop.
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=1.0))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    def stop(self, timeout: float) -> None:
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed already
            return
        self.thread.join(timeout)


class Dispatcher:
    """Runs ``(callbacks, argument)`` jobs on one named daemon thread.

    A callback that returns an awaitable (an ``async def`` one) has it run on
    :attr:`loop` when set (the loop awaiting ``connect()``), else on a
    :class:`LoopThread` of its own, and waits for it before going on.

    Args:
        maxsize: jobs held while callbacks are busy; beyond it the oldest are
            dropped (and counted in ``dropped``).
        on_error: called (on the dispatcher thread) with a
            :class:`CallbackError` when a callback raises.
    """

    def __init__(self, maxsize: int, on_error: Callable[[CallbackError], None]) -> None:
        self.queue: EventQueue[tuple[tuple[Callback, ...], Any]] = EventQueue(maxsize)
        self.errors = 0
        #: The event loop for coroutine callbacks, while ``connect()`` is awaited on it.
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_error = on_error
        self._thread: threading.Thread | None = None
        self._stop = False
        self._loop_thread: LoopThread | None = None
        self._awaiting: concurrent.futures.Future[Any] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        self._stop = False
        self.queue.reopen()
        self._thread = threading.Thread(target=self._run, name="agentx-sync-dispatch", daemon=True)
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: the threads do not exist there."""
        self.queue.after_fork()
        self._stop = True
        self._thread = None
        self._loop_thread = None
        self._awaiting = None
        self.loop = None

    def submit(self, jobs: Iterable[tuple[tuple[Callback, ...], Any]]) -> None:
        self.queue.put_many(jobs)

    def stop(self, timeout: float | None) -> bool:
        """Stop after the running callback; pending jobs are discarded.

        Returns False when the thread did not end within ``timeout`` (a
        callback still running). Never joins from the dispatcher thread itself.
        """
        self._stop = True
        self.queue.close()
        awaiting = self._awaiting
        if awaiting is not None:  # a coroutine callback: cancel it rather than wait
            awaiting.cancel()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        # Nothing a callback does ends this thread: not an exception whose
        # str() raises, not SystemExit, not KeyboardInterrupt raised in it.
        try:
            self._serve()
        finally:
            loop_thread, self._loop_thread = self._loop_thread, None
            if loop_thread is not None:
                loop_thread.stop(2.0)

    def _serve(self) -> None:
        get_all = self.queue.get_all
        while True:
            jobs = get_all(None)
            if self._stopped():
                return
            for callbacks, arg in jobs:
                for callback in callbacks:
                    if self._stopped():
                        return
                    try:
                        result = callback(arg)
                        if result is not None and inspect.isawaitable(result):
                            self.wait_for(result)
                    except BaseException as exc:
                        self._failed(callback, exc)

    def call(self, callback: Callback, arg: Any) -> None:
        """Call ``callback(arg)`` here, awaiting it if it is a coroutine function."""
        result = callback(arg)
        if result is not None and inspect.isawaitable(result):
            self.wait_for(result)

    def wait_for(self, awaitable: Awaitable[Any]) -> None:
        """Run ``awaitable`` on the callbacks' event loop; block until it ends.

        Raises what it raises. Returns quietly when it was cancelled: by
        close(), or because its loop stopped or closed (a coroutine cannot
        outlive the loop it runs on, and must not hold the dispatcher).
        """
        coro = awaitable if asyncio.iscoroutine(awaitable) else _awaited(awaitable)
        loop = self.loop
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop or self._own_loop())
        except RuntimeError:  # the caller's loop closed under us: use our own
            loop = None
            future = asyncio.run_coroutine_threadsafe(coro, self._own_loop())
        self._awaiting = future
        try:
            while True:
                try:
                    future.result(timeout=1.0)
                    return
                except concurrent.futures.TimeoutError:
                    if self._stop or (loop is not None and (loop.is_closed() or not loop.is_running())):
                        future.cancel()
                except concurrent.futures.CancelledError:
                    log.debug("a coroutine callback was cancelled")
                    return
        finally:
            self._awaiting = None

    def _own_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop_thread is None:
            self._loop_thread = LoopThread()
        return self._loop_thread.loop

    def _stopped(self) -> bool:
        return self._stop

    def _failed(self, callback: Callback, exc: BaseException) -> None:
        self.errors += 1
        name = describe_callable(callback)
        kind = type(exc).__name__
        try:
            log.error("callback %s raised %s", name, kind, exc_info=exc)
            error = CallbackError(f"callback {name} raised {kind}: {safe_str(exc)}", callback=name)
            error.__cause__ = exc
            self._on_error(error)
        except BaseException:  # an on_error hook that failed in turn: say so, carry on
            log.critical("reporting a callback's error failed", exc_info=True)


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def describe_callable(fn: object) -> str:
    """A callable's qualified name, or a short safe description."""
    try:
        name = getattr(fn, "__qualname__", None)
    except BaseException:
        name = None
    if isinstance(name, str):
        return name[:200]
    return type(fn).__name__ + " instance"
