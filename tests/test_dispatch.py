"""The event queue and the dispatcher, on their own (no connection)."""

from __future__ import annotations

import asyncio
import threading

from agentx_sync.dispatch import Dispatcher, EventQueue
from agentx_sync.errors import CallbackError

from .conftest import eventually


def test_the_queue_keeps_the_newest_and_counts_what_it_dropped() -> None:
    queue: EventQueue[int] = EventQueue(3)
    queue.put_many(range(5))
    assert queue.dropped == 2 and queue.get_all(0) == [2, 3, 4]
    assert queue.get(0.01) is None  # empty: a timeout, not an error


def test_closing_the_queue_wakes_a_waiting_consumer() -> None:
    queue: EventQueue[int] = EventQueue(3)
    got: list[object] = []
    consumer = threading.Thread(target=lambda: got.append(queue.get(None)))
    consumer.start()
    eventually(lambda: queue._waiting == 1, what="the consumer waiting")
    queue.close()
    consumer.join(5)
    assert got == [None] and not consumer.is_alive()


def test_callbacks_run_in_order_on_the_dispatcher_thread_and_errors_are_reported() -> None:
    errors: list[CallbackError] = []
    dispatcher = Dispatcher(100, errors.append)
    seen: list[tuple[str, int]] = []

    def record(n: int) -> None:
        seen.append((threading.current_thread().name, n))

    def broken(n: int) -> None:
        raise ValueError(n)

    dispatcher.start()
    try:
        dispatcher.submit(((record, broken), n) for n in range(3))
        eventually(lambda: len(seen) == 3 and len(errors) == 3, what="three calls and three errors")
        assert seen == [("agentx-sync-dispatch", n) for n in range(3)]
        assert all("broken" in str(e) and isinstance(e.__cause__, ValueError) for e in errors)
        assert dispatcher.errors == 3
    finally:
        assert dispatcher.stop(5)


def test_stop_cancels_a_coroutine_callback_and_ends_its_loop_thread() -> None:
    dispatcher = Dispatcher(100, lambda error: None)
    entered = threading.Event()

    async def forever(n: int) -> None:
        entered.set()
        await asyncio.Event().wait()

    dispatcher.start()
    dispatcher.submit([((forever,), 1)])
    assert entered.wait(5)
    assert dispatcher.stop(5)
    assert not [t for t in threading.enumerate() if t.name == "agentx-sync-async"]
