"""Bounded event queues and the dispatcher thread that runs user callbacks.

The IO thread only appends to queues here; user code runs on the dispatcher
thread (``agentx-sync-dispatch``), in arrival order, so a slow or failing
callback never stalls reading, heartbeats or reconnects.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .errors import CallbackError

__all__ = ["Dispatcher", "EventQueue", "describe_callable", "safe_str"]

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


class Dispatcher:
    """Runs ``(callbacks, argument)`` jobs on one named daemon thread.

    Args:
        maxsize: jobs held while callbacks are busy; beyond it the oldest are
            dropped (and counted in ``dropped``).
        on_error: called (on the dispatcher thread) with a
            :class:`CallbackError` when a callback raises.
    """

    def __init__(self, maxsize: int, on_error: Callable[[CallbackError], None]) -> None:
        self.queue: EventQueue[tuple[tuple[Callback, ...], Any]] = EventQueue(maxsize)
        self.errors = 0
        self._on_error = on_error
        self._thread: threading.Thread | None = None
        self._stop = False

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def start(self) -> None:
        self._stop = False
        self.queue.reopen()
        self._thread = threading.Thread(target=self._run, name="agentx-sync-dispatch", daemon=True)
        self._thread.start()

    def after_fork(self) -> None:
        """In a forked child: the thread does not exist there."""
        self.queue.after_fork()
        self._stop = True
        self._thread = None

    def submit(self, jobs: Iterable[tuple[tuple[Callback, ...], Any]]) -> None:
        self.queue.put_many(jobs)

    def stop(self, timeout: float | None) -> bool:
        """Stop after the running callback; pending jobs are discarded.

        Returns False when the thread did not end within ``timeout`` (a
        callback still running). Never joins from the dispatcher thread itself.
        """
        self._stop = True
        self.queue.close()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        # Nothing a callback does ends this thread: not an exception whose
        # str() raises, not SystemExit, not KeyboardInterrupt raised in it.
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
                        callback(arg)
                    except BaseException as exc:
                        self._failed(callback, exc)

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


def safe_str(exc: BaseException, limit: int = 300) -> str:
    """``str(exc)``, shortened, or a placeholder when its ``__str__`` raises."""
    try:
        text = str(exc)
    except BaseException:
        return f"<{type(exc).__name__} whose str() raised>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_callable(fn: object) -> str:
    """A callable's qualified name, or a short safe description."""
    try:
        name = getattr(fn, "__qualname__", None)
    except BaseException:
        name = None
    if isinstance(name, str):
        return name[:200]
    return type(fn).__name__ + " instance"
