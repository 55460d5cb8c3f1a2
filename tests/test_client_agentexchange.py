"""AgentExchangeWS over real loopback sockets against the simulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agentx_sync import (
    AgentExchangeWS,
    AuthenticationError,
    BackoffPolicy,
    CallbackError,
    Candle,
    ClientClosedError,
    Connected,
    ConnectionLostError,
    ConnectionState,
    Disconnected,
    ErrorEvent,
    InvalidChannelError,
    Order,
    OrderFailedError,
    Portfolio,
    ProtocolError,
    StaleConnectionError,
    SubscriptionLimitError,
    Ticker,
)
from agentx_sync.sim import Simulator

from .conftest import eventually, next_event

Make = Callable[..., AgentExchangeWS]


def test_prices_arrive_as_decimal_records_on_the_dispatcher_thread_in_order(
    sim: Simulator, client: Make
) -> None:
    sim.pause_market()
    ws = client()
    seen: list[tuple[Any, str]] = []
    done = threading.Event()

    @ws.on_ticker("BTCUSDT")
    def on_btc(data: Ticker) -> None:
        seen.append((data, threading.current_thread().name))
        if len(seen) == 50:
            done.set()

    ws.start().wait_connected(5)
    sim.wait_for(lambda: {"ticker:BTCUSDT"} <= set().union(*sim.subscriptions()))
    for i in range(1, 51):
        sim.tick("BTCUSDT", f"{i}.50")
    assert done.wait(5)
    assert [d.price for d, _ in seen] == [Decimal(f"{i}.50") for i in range(1, 51)]
    assert {name for _, name in seen} == {"agentx-sync-dispatch"}
    first = seen[0][0]
    assert first["price"] == first.price and first["symbol"] == "BTCUSDT"
    assert isinstance(first.timestamp, datetime) and first.timestamp.utcoffset() == timedelta(0)
    assert ws.get_cached_price("btcusdt") == Decimal("50.50")
    assert ws.get_ticker("BTCUSDT") == seen[-1][0]
    assert ws.prices() == {"BTCUSDT": Decimal("50.50")}
    age = ws.price_age("BTCUSDT")
    assert age is not None and age >= 0


def test_subscription_acks_never_reach_data_handlers(sim: Simulator, client: Make) -> None:
    ws = client()
    args: list[Any] = []
    ws.on_ticker("ETHUSDT")(args.append)
    ws.on_order_update()(args.append)
    ws.on_portfolio()(args.append)
    ws.start().wait_connected(5)
    eventually(lambda: set(ws.health().subscriptions) == {"ticker:ETHUSDT", "orders", "portfolio"})
    ws.wait_for_price("ETHUSDT", 5)
    eventually(lambda: len(args) >= 3)
    assert all(isinstance(a, Ticker | Order | Portfolio) for a in args)


def test_pings_are_answered_with_action_pong_and_the_link_stays_up(client: Make) -> None:
    with Simulator(rate=0, ping_interval=0.05, pong_timeout=0.1) as sim:
        ws = client(base_url=sim.url)
        ws.start().wait_connected(5)
        sim.wait_for(lambda: sum(m == {"action": "pong"} for m in sim.received()) >= 10)
        assert {"type": "pong"} not in sim.received()
        assert ws.health().reconnects == 0 and ws.connected
        assert ws.close(2)


def test_candles_orders_portfolio_and_wait_for_order(sim: Simulator, client: Make) -> None:
    ws = client()
    candles: list[Candle] = []
    ws.on_candles("BTCUSDT", "1m")(candles.append)
    ws.start().wait_connected(5)
    order_id = sim.place_order("BTCUSDT", "buy", "0.1")
    filled = ws.wait_for_order(order_id, status="filled", timeout=5)
    assert filled.executed_quantity == Decimal("0.1") and isinstance(filled.executed_price, Decimal)
    assert [o.status for o in ws.get_orders()] == ["pending", "filled"]
    assert ws.get_order(order_id) == filled
    portfolio = eventually(ws.get_portfolio)
    assert isinstance(portfolio.total_equity, Decimal)
    eventually(lambda: candles, what="a candle")
    assert ws.get_candle("BTCUSDT", "1m") is not None
    rejected = sim.place_order("ETHUSDT", reject="insufficient balance")
    with pytest.raises(OrderFailedError) as info:
        ws.wait_for_order(rejected, status="filled", timeout=5)
    assert info.value.order.rejected_reason == "insufficient balance"
    with pytest.raises(TimeoutError):
        ws.wait_for_order("no-such-order", timeout=0.05)


def test_orders_cache_keeps_exactly_the_last_100_updates(sim: Simulator, client: Make) -> None:
    ws = client()
    updates: list[Order] = []
    ws.on_order_update()(updates.append)
    ws.start().wait_connected(5)
    ids = [sim.place_order("BTCUSDT") for _ in range(60)]
    eventually(lambda: len(updates) == 120, what="120 order updates")
    assert ws.get_orders() == updates[-100:]
    latest = {o.order_id: o for o in updates}
    assert all(ws.get_order(i) in (latest[i], None) for i in ids)
    assert ws.get_order(ids[-1]) == latest[ids[-1]]


def test_wrong_key_raises_authentication_error_at_once_and_is_never_retried(
    sim: Simulator, client: Make
) -> None:
    ws = client(api_key="ak_live_WRONG", backoff=BackoffPolicy(initial=0.01, maximum=0.01))
    with pytest.raises(AuthenticationError) as info:
        ws.start().wait_connected(timeout=1.0)
    assert info.value.status == 403
    io_thread = ws._conn.thread
    assert io_thread is not None
    io_thread.join(1.0)
    assert not io_thread.is_alive()  # nothing left to retry with
    assert sim.refused_total == 1
    assert ws.state is ConnectionState.FAILED
    assert "WRONG" not in repr(ws) and "WRONG" not in str(ws.health())
    with pytest.raises(AuthenticationError):
        ws.wait_for_price("BTCUSDT", timeout=1)


def test_http_401_is_authentication_error_too_and_run_forever_raises_it(client: Make) -> None:
    with Simulator(rate=0, auth_status=401) as sim:
        ws = client(api_key="nope", base_url=sim.url)
        with pytest.raises(AuthenticationError) as info:
            ws.run_forever()
        assert info.value.status == 401
        assert ws.close(2)


def test_reconnect_resubscribes_and_keeps_the_cache_meanwhile(sim: Simulator, client: Make) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT", "ETHUSDT")
    ws.subscribe_candles("SOLUSDT", "5m")
    ws.start().wait_connected(5)
    assert isinstance(next_event(ws, Connected), Connected)
    ws.wait_for_price("BTCUSDT", 5)
    ws.subscribe_ticker("XRPUSDT")  # at run time
    eventually(lambda: "ticker:XRPUSDT" in ws.health().subscriptions)
    before = ws.get_cached_price("BTCUSDT")

    sim.stop_listening()
    lost = next_event(ws, Disconnected)
    assert isinstance(lost.error, ConnectionLostError) and lost.retry_in is not None
    assert ws.state in (ConnectionState.BACKOFF, ConnectionState.CONNECTING)
    assert ws.get_cached_price("BTCUSDT") == before  # kept while down
    age = ws.price_age("BTCUSDT")
    assert age is not None

    sim.start_listening()
    again = next_event(ws, Connected, timeout=10)
    assert again.reconnect
    wanted = {"ticker:BTCUSDT", "ticker:ETHUSDT", "ticker:XRPUSDT", "candles:SOLUSDT:5m"}
    sim.wait_for(lambda: any(wanted <= s for s in sim.subscriptions()))
    eventually(lambda: (now := ws.price_age("XRPUSDT")) is not None and now < age)
    assert ws.health().reconnects == 1


@pytest.mark.parametrize("abrupt", [False, True], ids=["close-frame", "reset"])
def test_server_drops_are_survived(sim: Simulator, client: Make, abrupt: bool) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    ws.wait_for_price("BTCUSDT", 5)
    sim.drop_all(abrupt=abrupt)
    next_event(ws, Disconnected)
    assert next_event(ws, Connected).reconnect
    first_after = next_event(ws, Ticker)
    assert first_after.symbol == "BTCUSDT"


def test_unsubscribe_is_sent_and_remembered(sim: Simulator, client: Make) -> None:
    ws = client()
    ws.subscribe_ticker("BTCUSDT", "ETHUSDT")
    ws.start().wait_connected(5)
    ws.unsubscribe_ticker("ETHUSDT")
    sim.wait_for(
        lambda: {"action": "unsubscribe", "channel": "ticker", "symbol": "ETHUSDT"} in sim.received()
    )
    eventually(lambda: ws.health().subscriptions == ("ticker:BTCUSDT",))
    sim.drop_all()
    next_event(ws, Disconnected)
    next_event(ws, Connected)
    sim.wait_for(lambda: sim.subscriptions() == [{"ticker:BTCUSDT"}])


def test_silence_is_detected_and_reconnected(sim: Simulator, client: Make) -> None:
    ws = client(stale_timeout=0.3)
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    ws.wait_for_price("BTCUSDT", 5)
    sim.half_open()
    lost = next_event(ws, Disconnected, timeout=1.3)
    assert isinstance(lost.error, StaleConnectionError)
    assert next_event(ws, Connected, timeout=5).reconnect


def test_flowing_data_never_trips_the_stale_timeout(sim: Simulator, client: Make) -> None:
    ws = client(stale_timeout=0.25)
    ws.subscribe_ticker("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT")
    ws.start().wait_connected(5)
    start = ws.health().messages
    eventually(lambda: ws.health().messages - start >= 300, timeout=10, what="1.5 s of data")  # 200 msg/s
    assert ws.health().reconnects == 0
    assert ws.connected


def test_more_than_ten_symbols_all_get_prices_via_ticker_all(client: Make) -> None:
    with Simulator(symbols=20, rate=2000) as sim:
        symbols = sim.symbols[:12]
        ws = client(base_url=sim.url)
        got: set[str] = set()
        for s in symbols:
            ws.on_ticker(s)(lambda t: got.add(t.symbol))
        ws.on_order_update()(lambda o: None)
        ws.on_portfolio()(lambda p: None)
        ws.start().wait_connected(5)
        for s in symbols:
            assert isinstance(ws.wait_for_price(s, 5), Decimal)
        eventually(lambda: got == set(symbols))
        assert sim.subscriptions()[0] <= {"ticker:all", "orders", "portfolio"}
        assert ws.health().server_errors == 0
        # Other symbols reach the cache but no handler and no event.
        while (event := ws.get_event(timeout=0)) is not None:
            if isinstance(event, Ticker):
                assert event.symbol in symbols
        assert ws.close(2)


def test_server_subscription_limit_reaches_the_user_as_a_typed_error(client: Make) -> None:
    with Simulator(rate=0, max_subscriptions=2) as sim:
        ws = client(base_url=sim.url)
        errors: list[Exception] = []
        ws.on_error()(errors.append)
        ws.subscribe_ticker("AAAUSDT", "BBBUSDT", "CCCUSDT")
        ws.start().wait_connected(5)
        error = next_event(ws, ErrorEvent).error
        assert isinstance(error, SubscriptionLimitError) and error.code == "SUBSCRIPTION_LIMIT"
        assert error.request == {"action": "subscribe", "channel": "ticker", "symbol": "CCCUSDT"}
        eventually(lambda: errors)
        assert ws.health().server_errors == 1
        assert ws.close(2)


def test_server_error_messages_are_typed(sim: Simulator, client: Make) -> None:
    ws = client()
    ws.start().wait_connected(5)
    sim.send_raw('{"type":"error","code":"INVALID_CHANNEL","message":"Channel \'candles\' requires ."}')
    error = next_event(ws, ErrorEvent).error
    assert isinstance(error, InvalidChannelError)
    assert "INVALID_CHANNEL" in (ws.health().last_error or "")


def test_unsupported_interval_is_refused_before_sending(client: Make) -> None:
    ws = client()
    with pytest.raises(ValueError, match="15m"):
        ws.on_candles("BTCUSDT", "15m")


def test_bad_messages_are_counted_reported_and_survived(sim: Simulator, client: Make) -> None:
    sim.pause_market()
    ws = client()
    errors: list[Exception] = []
    ws.on_error()(errors.append)
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().subscriptions == ("ticker:BTCUSDT",))
    sim.tick("BTCUSDT", "100")
    assert ws.wait_for_price("BTCUSDT", 5) == Decimal(100)
    sim.send_raw("not json")
    sim.send_raw('{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"NaN"}}')
    sim.send_raw(b'{"channel":"ticker","symbol":"BTCUSDT","data":{"price":12}}', text=False)
    sim.tick("BTCUSDT", "101")
    eventually(lambda: ws.get_cached_price("BTCUSDT") == Decimal(101))
    health = ws.health()
    assert health.bad_messages == 3 and health.reconnects == 0
    eventually(lambda: len(errors) == 3)
    assert all(isinstance(e, ProtocolError) for e in errors)


def test_raising_callback_never_stops_the_stream(sim: Simulator, client: Make) -> None:
    ws = client()
    reported: list[Exception] = []

    @ws.on_ticker("BTCUSDT")
    def broken(data: Ticker) -> None:
        raise RuntimeError("boom")

    ws.on_error()(reported.append)
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().callback_errors >= 20)
    first = reported[0]
    assert isinstance(first, CallbackError) and isinstance(first.__cause__, RuntimeError)
    assert ws.connected and ws._conn.thread is not None and ws._conn.thread.is_alive()
    before = ws.get_ticker("BTCUSDT")
    eventually(lambda: ws.get_ticker("BTCUSDT") is not before, what="fresh prices")


def test_slow_callback_does_not_stall_the_cache_or_pings(client: Make) -> None:
    with Simulator(rate=200, ping_interval=0.05, pong_timeout=0.1) as sim:
        ws = client(base_url=sim.url)
        release = threading.Event()
        ws.on_ticker("BTCUSDT")(lambda t: release.wait(5))
        ws.start().wait_connected(5)
        ws.wait_for_price("BTCUSDT", 5)
        first = ws.get_ticker("BTCUSDT")
        pongs = sum(m == {"action": "pong"} for m in sim.received())
        eventually(
            lambda: ws.get_ticker("BTCUSDT") is not first, what="cache updates while a callback blocks"
        )
        sim.wait_for(lambda: sum(m == {"action": "pong"} for m in sim.received()) >= pongs + 3)
        assert ws.health().reconnects == 0
        release.set()
        assert ws.close(2)


def test_event_queue_is_bounded_drop_oldest_and_counts_drops(sim: Simulator, client: Make) -> None:
    sim.pause_market()
    ws = client(event_queue_size=5)
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().subscriptions == ("ticker:BTCUSDT",))
    while ws.get_event(timeout=0) is not None:
        pass
    for i in range(1, 21):
        sim.tick("BTCUSDT", str(i))
    eventually(lambda: ws.get_cached_price("BTCUSDT") == Decimal(20))
    assert ws.health().dropped_events == 15
    kept = [ws.get_event(0) for _ in range(5)]
    assert [e.price for e in kept if isinstance(e, Ticker)] == [Decimal(i) for i in range(16, 21)]
    assert ws.get_event(timeout=0.01) is None


def test_close_is_prompt_during_backoff_and_joins_everything(client: Make) -> None:
    with Simulator(rate=0) as sim:
        url = sim.url
    ws = client(base_url=url, backoff=BackoffPolicy(initial=30, maximum=60))
    ws.start()
    next_event(ws, Disconnected)  # now waiting 24-36 s before the next attempt
    assert ws.close(timeout=0.5)
    assert ws.state is ConnectionState.CLOSED
    assert ws.close(timeout=0.5)  # idempotent


def test_close_is_prompt_during_a_blocked_read(sim: Simulator, client: Make) -> None:
    ws = client(stale_timeout=60)
    ws.start().wait_connected(5)
    sim.half_open()
    assert ws.close(timeout=0.5)


def test_close_from_inside_a_callback_and_from_another_thread(sim: Simulator, client: Make) -> None:
    ws = client()
    results: list[bool] = []
    ws.on_ticker("BTCUSDT")(lambda t: results.append(ws.close(1)) if not results else None)
    ws.start()  # not wait_connected(): the callback may close the client before this thread looks
    eventually(lambda: results, 10, "the callback's close()")
    assert results == [True]
    assert ws.close(2)
    other = client()
    other.start().wait_connected(5)
    closer = threading.Thread(target=lambda: results.append(other.close(1)))
    closer.start()
    closer.join(2)
    assert results[-1] is True


def test_waiters_are_released_by_close(sim: Simulator, client: Make) -> None:
    sim.pause_market()
    ws = client()
    ws.start().wait_connected(5)
    failures: list[Exception] = []

    def waiter() -> None:
        try:
            ws.wait_for_price("NEVERUSDT", timeout=10)
        except Exception as exc:
            failures.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    sim.wait_for(
        lambda: {"action": "subscribe", "channel": "ticker", "symbol": "NEVERUSDT"} in sim.received()
    )
    ws.close(1)
    thread.join(2)
    assert len(failures) == 1 and isinstance(failures[0], ClientClosedError)
    # get_event(timeout=None) never blocks once closed: what is queued, then None.
    drained: list[bool] = []

    def drain() -> None:
        for _ in range(100_000):
            if ws.get_event(timeout=None) is None:
                drained.append(True)
                return

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    drainer.join(5)
    assert drained == [True]


def test_run_forever_in_a_daemon_thread_like_the_seed(sim: Simulator, client: Make) -> None:
    ws = client()
    prices: dict[str, Any] = {}
    ws.on_ticker("SOLUSDT")(lambda data: prices.__setitem__("SOLUSDT", data["price"]))
    thread = threading.Thread(target=ws.run_forever, daemon=True)
    thread.start()
    eventually(lambda: "SOLUSDT" in prices)
    assert ws.close(2)
    thread.join(2)
    assert not thread.is_alive()


def test_context_manager_starts_and_closes(sim: Simulator) -> None:
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url) as ws:
        assert ws.wait_for_price("BTCUSDT", 5) > 0
    assert ws.state is ConnectionState.CLOSED
    assert ws._conn.thread is not None and not ws._conn.thread.is_alive()


def test_repr_and_health_never_show_the_key(sim: Simulator, client: Make) -> None:
    sim.allow_key("ak_live_TOPSECRET")
    ws = client(api_key="ak_live_TOPSECRET")
    ws.start().wait_connected(5)
    health = ws.health()
    assert "TOPSECRET" not in repr(ws) + str(health)
    assert health.state is ConnectionState.CONNECTED and health.connected_since is not None
    assert health["url"].endswith("api_key=***")


def test_callbacks_after_start_subscribe_at_run_time(sim: Simulator, client: Make) -> None:
    ws = client()
    ws.start().wait_connected(5)
    got = threading.Event()
    ws.on_ticker("ETHUSDT")(lambda t: got.set())
    assert got.wait(5)


def test_all_ticker_callback(sim: Simulator, client: Make) -> None:
    ws = client()
    symbols: set[str] = set()
    ws.on_ticker("all")(lambda t: symbols.add(t["symbol"]))
    ws.start().wait_connected(5)
    eventually(lambda: symbols == set(sim.symbols))
    assert sim.subscriptions()[0] == {"ticker:all"}


def _reads_for(coalesce: float, messages: int = 60) -> int:
    """How many socket reads delivered ``messages`` tickers from a steady feed.

    Records of one read share their ``received_at``, so distinct values count reads.
    """
    with Simulator(rate=200) as feed:
        with AgentExchangeWS(api_key="ak_test", base_url=feed.url, coalesce=coalesce) as ws:
            stamps: list[float] = []
            ws.on_ticker("all")(lambda t: stamps.append(t.received_at))
            eventually(lambda: len(stamps) >= messages, timeout=10)
            return len(set(stamps[:messages]))


def test_coalesce_gathers_a_steady_feed_into_fewer_reads() -> None:
    # 200 messages a second, written every 10 ms: at once, most writes are a
    # read of their own; with coalesce=0.1 a read takes in 0.1 s of them.
    assert _reads_for(0.0) >= 15
    assert _reads_for(0.1) <= 8


def test_close_during_a_coalesce_wait_is_prompt(sim: Simulator) -> None:
    ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url, coalesce=1.0)
    ws.subscribe_ticker("all")
    ws.start().wait_connected(5)
    eventually(lambda: ws.health().messages > 0)
    started = time.monotonic()
    assert ws.close(2)
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_coalesce_is_checked(bad: float) -> None:
    with pytest.raises(ValueError, match="coalesce"):
        AgentExchangeWS(api_key="ak_test", coalesce=bad)


def test_getters_never_wait_for_the_network(sim: Simulator, client: Make) -> None:
    sim.pause_market()
    ws = client()
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_connected(5)
    sim.wait_for(lambda: {"ticker:BTCUSDT"} <= set().union(*sim.subscriptions()))
    sim.tick("BTCUSDT")
    ws.wait_for_price("BTCUSDT", 5)
    sim.half_open()  # not even pings: the IO thread sits in a blocking read
    answers: list[Any] = []
    reader = threading.Thread(
        target=lambda: answers.extend(
            (ws.get_cached_price("BTCUSDT"), ws.get_ticker("X"), ws.get_portfolio())
        )
    )
    reader.start()
    reader.join(2)
    assert not reader.is_alive()
    assert answers[0] > 0 and answers[1:] == [None, None]


def test_wait_for_order_sees_its_update_in_one_read_with_hundreds_of_others(
    sim: Simulator, client: Make
) -> None:
    # Regression: the awaited update came in one read with 100+ other order
    # updates; on_order_update saw it, but the waiter looked only at the last 100.
    ws = client()
    seen: list[str] = []
    ws.on_order_update()(lambda order: seen.append(order.order_id))
    ws.start().wait_connected(5)

    def order(order_id: str, status: str) -> str:
        data = {"order_id": order_id, "status": status, "symbol": "BTCUSDT", "side": "buy", "quantity": "1"}
        return json.dumps({"channel": "orders", "data": data})

    burst = [order("awaited", "filled")] + [order(f"other-{i}", "pending") for i in range(300)]

    async def send_all() -> None:  # one write: the client reads it in one go
        for conn in sim.connections():
            for message in burst:
                await conn.ws.send(message)

    result: list[Any] = []
    waiter = threading.Thread(target=lambda: result.append(ws.wait_for_order("awaited", "filled", 10)))
    waiter.start()
    eventually(lambda: ws._state._waiting, what="the waiter to be waiting")
    sim.call(send_all())
    waiter.join(15)
    assert result and result[0].order_id == "awaited" and result[0].status == "filled"
    eventually(lambda: len(seen) == len(burst), what="every update to reach the callback")
    assert ws.get_order("awaited") is None  # out of the last-100 window, yet the waiter saw it
