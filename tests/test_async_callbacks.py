"""Coroutine callbacks and ``await ws.connect()``: the asyncio SDK's shape on the threaded client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from agentx_sync import AgentExchangeWS, AuthenticationError, CallbackError, ConnectionState
from agentx_sync.sim import Simulator

from .conftest import eventually

Client = Callable[..., AgentExchangeWS]


def test_under_connect_coroutine_handlers_run_on_the_awaiting_loop_which_stays_free(client: Client) -> None:
    ws = client()
    seen: list[tuple[asyncio.AbstractEventLoop, str]] = []

    @ws.on_ticker("BTCUSDT")
    async def on_btc(ticker: Any) -> None:
        seen.append((asyncio.get_running_loop(), threading.current_thread().name))
        await asyncio.sleep(0)
        if len(seen) == 5:
            ws.close()  # from inside a coroutine handler: must not wait for itself

    async def main() -> int:
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0.001)

        beating = asyncio.create_task(heartbeat())
        await ws.connect()
        beating.cancel()
        assert {loop for loop, _ in seen} == {asyncio.get_running_loop()}
        return beats

    beats = asyncio.run(main())
    assert len(seen) >= 5
    assert {name for _, name in seen} == {"MainThread"}
    assert beats > 0  # the loop ran other work while connect() was awaited
    assert ws.state is ConnectionState.CLOSED


def test_without_connect_coroutine_handlers_run_on_the_clients_own_loop_thread(client: Client) -> None:
    ws = client()
    names: list[str] = []

    @ws.on_ticker("BTCUSDT")
    async def on_btc(ticker: Any) -> None:
        names.append(threading.current_thread().name)

    ws.start()
    eventually(lambda: len(names) >= 3, 10, "coroutine handler calls")
    assert set(names) == {"agentx-sync-async"}
    assert ws.close()
    assert not [t for t in threading.enumerate() if t.name == "agentx-sync-async"]


def test_coroutine_and_plain_handlers_keep_arrival_order(client: Client) -> None:
    ws = client()
    calls: list[tuple[str, object]] = []

    @ws.on_ticker("BTCUSDT")
    async def slow(ticker: Any) -> None:
        await asyncio.sleep(0.002)  # were it not awaited, "plain" would overtake it
        calls.append(("async", ticker.timestamp))

    @ws.on_ticker("BTCUSDT")
    def plain(ticker: Any) -> None:
        calls.append(("plain", ticker.timestamp))

    ws.start()
    eventually(lambda: len(calls) >= 40, 10, "forty calls")
    ws.close()
    pairs = calls[: len(calls) // 2 * 2]
    assert [kind for kind, _ in pairs] == ["async", "plain"] * (len(pairs) // 2)
    assert all(pairs[i][1] == pairs[i + 1][1] for i in range(0, len(pairs), 2))


def test_a_raising_coroutine_handler_is_reported_like_any_callback_error(client: Client) -> None:
    ws = client()
    reported: list[BaseException] = []

    @ws.on_ticker("BTCUSDT")
    async def broken(ticker: Any) -> None:
        await asyncio.sleep(0)
        raise ValueError("no luck")

    @ws.on_error()
    async def on_error(error: BaseException) -> None:  # a coroutine on_error is awaited too
        await asyncio.sleep(0)
        reported.append(error)

    ws.start()
    eventually(lambda: reported, 10, "the error report")
    error = reported[0]
    assert isinstance(error, CallbackError)
    assert "broken" in str(error)
    assert "no luck" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert ws.health().callback_errors >= 1
    assert ws.connected  # a handler's failure never touches the connection


def test_cancelling_the_connect_task_closes_the_client(client: Client, sim: Simulator) -> None:
    ws = client()

    async def main() -> None:
        task = asyncio.create_task(ws.connect())
        await asyncio.to_thread(ws.wait_connected, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ws.state is ConnectionState.CLOSED
    sim.wait_for(lambda: not sim.connections(), timeout=10)


def test_close_from_another_thread_returns_from_connect(client: Client) -> None:
    ws = client()
    ws.on_connect()(lambda event: threading.Thread(target=ws.close).start())
    asyncio.run(asyncio.wait_for(ws.connect(), 30))
    assert ws.state is ConnectionState.CLOSED


def test_connect_raises_when_the_key_is_refused(client: Client, sim: Simulator) -> None:
    sim.refuse_key("ak_test")
    ws = client()
    with pytest.raises(AuthenticationError):
        asyncio.run(asyncio.wait_for(ws.connect(), 30))
    assert ws.state is ConnectionState.FAILED


def test_a_coroutine_handler_that_never_returns_does_not_hold_close(client: Client) -> None:
    ws = client()
    entered = threading.Event()

    @ws.on_ticker("BTCUSDT")
    async def forever(ticker: Any) -> None:
        entered.set()
        await asyncio.Event().wait()

    ws.start()
    assert entered.wait(10)
    assert ws.close(timeout=5)  # cancelled, its loop thread joined


def test_a_plain_function_returning_a_coroutine_is_awaited_too(client: Client) -> None:
    ws = client()
    done = threading.Event()

    async def later(ticker: Any) -> None:
        done.set()

    @ws.on_ticker("BTCUSDT")
    def plain(ticker: Any) -> Any:
        return later(ticker)

    ws.start()
    assert done.wait(10)
