"""Callbacks that do anything, start/close in any order, and os.fork(): the client's threads stay sane."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentx_sync import (
    AgentExchangeWS,
    CallbackError,
    ClientStateError,
    ConnectionState,
    NexgentWS,
    StoppedError,
    Ticker,
)
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import FAST, eventually, run_in_child

Make = Callable[..., AgentExchangeWS]


def library_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


# -- 4. nothing a callback does stops the dispatcher ------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize(
    "misbehave",
    [
        lambda: sys.exit(3),
        lambda: (_ for _ in ()).throw(Unprintable()),
        lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
    ],
    ids=["sys.exit", "__str__ raises", "KeyboardInterrupt"],
)
def test_the_dispatcher_survives_anything_a_callback_does(
    sim: Simulator, client: Make, misbehave: Callable[[], None]
) -> None:
    # Regression: sys.exit() in a callback, or an exception whose __str__ raises,
    # ended the dispatcher thread silently: no error counted, no callback ever again.
    ws = client()
    seen: list[Ticker] = []
    errors: list[Any] = []
    failed = threading.Event()

    @ws.on_ticker("BTCUSDT")
    def bad(_: Ticker) -> None:
        if not failed.is_set():
            failed.set()
            misbehave()

    ws.on_ticker("BTCUSDT")(seen.append)
    ws.on_error()(errors.append)
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().callback_errors >= 1, what="the error to be counted")
    count = len(seen)
    eventually(lambda: len(seen) > count + 5, what="callbacks to go on running")
    assert ws._dispatcher.thread is not None and ws._dispatcher.thread.is_alive()
    assert any(isinstance(e, CallbackError) for e in errors)
    assert ws.state is ConnectionState.CONNECTED


# -- 5. one IO thread and one dispatcher per client, whatever the order of calls -----


def test_start_after_a_close_that_timed_out_is_refused_until_close_completes(
    sim: Simulator, client: Make
) -> None:
    # Regression: start() after a timed-out close() brought the old threads back:
    # two dispatchers ran callbacks concurrently.
    ws = client()
    release = threading.Event()
    running = threading.Semaphore(0)
    inside = [0]
    overlap: list[int] = []

    @ws.on_ticker("BTCUSDT")
    def slow(_: Ticker) -> None:
        inside[0] += 1
        overlap.append(inside[0])
        running.release()
        release.wait(10)
        inside[0] -= 1

    ws.start().wait_connected(5)
    assert running.acquire(timeout=5)  # a callback is running and will not return yet
    assert ws.close(timeout=0.2) is False
    with pytest.raises(ClientStateError, match="close\\(\\) until it returns True"):
        ws.start()
    assert isinstance(ClientStateError("x"), RuntimeError)
    release.set()
    assert ws.close(timeout=2) is True
    release.clear()
    ws.start().wait_connected(5)
    assert len(library_threads("agentx-sync-dispatch")) == 1 and len(library_threads("agentx-sync-io")) == 1
    release.set()
    assert ws.close(2)
    assert max(overlap) == 1  # never two dispatchers at once


def test_an_io_thread_that_outlives_close_never_fills_the_closed_client_nor_doubles() -> None:
    # Regression: an orphan IO thread (stuck in user code: token_provider) kept
    # filling a closed client, and start() then ran a second one beside it.
    with NexgentSimulator(price_interval=0) as nsim:
        agent = nsim.add_agent("a1")
        token = nsim.issue_token()
        entered, release = threading.Event(), threading.Event()

        def provider() -> str:
            entered.set()
            release.wait(10)
            return nsim.issue_token()

        ws = NexgentWS(nsim.url, token, agent, token_provider=provider, backoff=FAST)
        nsim.expire_token(token)
        ws.start()
        assert entered.wait(5)  # the IO thread is inside the provider
        assert ws.close(timeout=0.2) is False
        with pytest.raises(ClientStateError):
            ws.start()
        release.set()
        assert ws.close(timeout=5) is True
        assert ws.state is ConnectionState.CLOSED and ws.get_positions() == []
        assert not library_threads("agentx-sync-io")


def test_start_and_close_racing_from_two_threads_never_make_a_second_thread(sim: Simulator) -> None:
    ws = AgentExchangeWS("ak_test", sim.url, backoff=FAST)
    most = {"agentx-sync-io": 0, "agentx-sync-dispatch": 0}
    stop = threading.Event()
    problems: list[BaseException] = []

    def hammer(action: Callable[[], Any]) -> None:
        for _ in range(150):
            try:
                action()
            except ClientStateError:
                pass  # the documented answer to a start() during an unfinished close()
            except BaseException as exc:  # pragma: no cover - the regression
                problems.append(exc)
            for name, seen in most.items():
                most[name] = max(seen, len(library_threads(name)))

    def watch() -> None:
        while not stop.is_set():
            for name, seen in most.items():
                most[name] = max(seen, len(library_threads(name)))
            stop.wait(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [
        threading.Thread(target=hammer, args=(ws.start,)),
        threading.Thread(target=hammer, args=(lambda: ws.close(2),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    watcher.join()
    assert ws.close(5) is True
    assert not problems, problems
    assert most == {"agentx-sync-io": 1, "agentx-sync-dispatch": 1}
    assert not library_threads("agentx-sync-io") and not library_threads("agentx-sync-dispatch")


# -- 6. os.fork() ------------------------------------------------------------------


def test_a_forked_copy_is_visibly_not_running_and_cannot_touch_the_parents_connection(
    sim: Simulator, client: Make
) -> None:
    # Regression: the child's close() closed the parent's connection, and the
    # child's copy reported "connected".
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_for_price("BTCUSDT", 5)
    connections = sim.connections()

    def child() -> dict[str, Any]:
        health = ws.health()
        price = ws.get_cached_price("BTCUSDT")
        closed = ws.close(timeout=2)
        return {
            "state": health.state.value,
            "error": health.last_error,
            "price": str(price),
            "closed": closed,
            "after": ws.state.value,
        }

    report = run_in_child(child)
    assert report["state"] == "closed" and "fork" in report["error"]
    assert report["price"] != "None" and report["closed"] is True and report["after"] == "closed"
    # The parent's connection is the same one, and still streams.
    count = ws.health().messages
    eventually(lambda: ws.health().messages > count + 10, what="the parent's stream to go on")
    assert ws.connected and ws.health().reconnects == 0 and sim.connections() == connections


def test_a_child_forked_while_the_io_thread_held_the_locks_does_not_hang(
    nsim: NexgentSimulator, agent: str, nclient: Callable[..., NexgentWS]
) -> None:
    # Regression: a child forked while the IO thread held the cache's lock hung
    # for ever in get_cached_price().
    ws = nclient()
    ws.start().wait_for_positions(5)
    held, done = threading.Event(), threading.Event()

    def hold_the_locks() -> None:  # as the IO thread does while it applies a batch
        with ws._state.batch, ws._state.cond, ws._lock:
            held.set()
            done.wait(20)

    holder = threading.Thread(target=hold_the_locks)
    holder.start()
    assert held.wait(5)
    try:

        def child() -> dict[str, Any]:
            return {
                "price": str(ws.get_cached_price("anything")),
                "positions": len(ws.get_positions()),
                "state": ws.health().state.value,
                "closed": ws.close(1),
            }

        report = run_in_child(child)
    finally:
        done.set()
        holder.join()
    assert report == {"price": "None", "positions": 0, "state": "closed", "closed": True}
    assert ws.connected


def test_every_end_for_good_is_a_stopped_error(
    sim: Simulator, client: Callable[..., AgentExchangeWS], nsim: NexgentSimulator, agent: str
) -> None:
    sim.refuse_key("ak_test")
    with pytest.raises(StoppedError):
        client().start().wait_connected(10)
    first = NexgentWS(api_url=nsim.url, token=nsim.issue_token(), agent_id=agent, backoff=FAST)
    second = NexgentWS(api_url=nsim.url, token=nsim.issue_token(), agent_id=agent, backoff=FAST)
    try:
        first.start().wait_connected(10)
        second.start().wait_connected(10)  # takes the agent over
        with pytest.raises(StoppedError):
            first.run_forever()
        assert first.state is ConnectionState.REPLACED
    finally:
        assert first.close(2) and second.close(2)
    stranger = NexgentWS(
        api_url=nsim.url, token=nsim.issue_token(user="user-2"), agent_id=agent, backoff=FAST
    )
    try:
        with pytest.raises(StoppedError):  # connected, then closed 1008: not this user's agent
            stranger.run_forever()
    finally:
        assert stranger.close(2)
