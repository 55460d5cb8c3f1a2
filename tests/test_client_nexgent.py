"""NexgentWS over real loopback sockets against the Nexgent simulator."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from decimal import Decimal

import pytest

from agentx_sync import (
    AgentNotFoundError,
    AuthenticationError,
    Connected,
    ConnectionLostError,
    ConnectionReplacedError,
    ConnectionState,
    Disconnected,
    ErrorEvent,
    NexgentWS,
    Position,
    PositionEvent,
    PositionEventType,
    PriceBatch,
    ProtocolError,
    ServerError,
    StaleConnectionError,
)
from agentx_sync.sim import NexgentSimulator
from agentx_sync.sim.nexgent import with_prices

from .conftest import eventually, next_event, position

Make = Callable[..., NexgentWS]


def test_initial_positions_keep_server_values_and_base58_case(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    raw = nsim.open_position(agent, token_address="So1BonkTokenXYZ", symbol="BONK", notify=False)
    nsim.prices["So1BonkTokenXYZ"] = 0.00015
    ws = nclient()
    positions = ws.start().wait_for_positions(timeout=5)
    assert [p.id for p in positions] == [raw["id"]]
    p = positions[0]
    assert p.token_address == "So1BonkTokenXYZ" and p["tokenSymbol"] == "BONK"
    assert p.current_price == Decimal("0.00015") and isinstance(p.profit_loss_percent, Decimal)
    assert p.profit_loss_percent == pytest.approx(Decimal(50))
    assert ws.get_cached_price("SO1BONKTOKENXYZ") == Decimal("0.00015")
    assert ws.get_cached_price_usd("so1bonktokenxyz") == Decimal(repr(0.00015 * nsim.sol_usd))
    assert ws.get_position(raw["id"]) == p


def test_position_events_create_update_close(nsim: NexgentSimulator, agent: str, nclient: Make) -> None:
    ws = nclient()
    events: list[PositionEvent] = []
    ws.on_position_update()(events.append)
    ws.start().wait_for_positions(timeout=5)
    raw = nsim.open_position(agent, symbol="WIF", purchase_price=0.002, amount=50)
    created = next_event(ws, PositionEvent)
    assert created.type is PositionEventType.CREATED and created.position.token_symbol == "WIF"
    assert created.position.current_price is None  # raw: no price known for the token yet
    nsim.send_prices(agent, {raw["tokenAddress"]: 0.003})
    eventually(lambda: position(ws, raw["id"]).current_price == Decimal("0.003"))
    nsim.update_position(agent, raw["id"], peakPrice=0.003)  # a whole raw position without price fields
    updated = next_event(ws, PositionEvent)
    assert updated.type is PositionEventType.UPDATED
    assert updated.position.peak_price == Decimal("0.003")
    assert updated.position.current_price == Decimal("0.003")  # kept, and P/L recomputed
    assert updated.position.profit_loss_percent == pytest.approx(Decimal(50))
    nsim.update_position(agent, raw["id"], partial=True, lowestPrice=0.0015)
    partial = next_event(ws, PositionEvent)
    assert partial.position.lowest_price == Decimal("0.0015") and partial.position.token_symbol == "WIF"
    nsim.close_position(agent, raw["id"])
    closed = next_event(ws, PositionEvent)
    assert closed.type is PositionEventType.CLOSED and closed.position_id == raw["id"]
    assert ws.get_positions() == []
    eventually(lambda: len(events) == 4)


def test_price_batch_is_one_state_change_with_server_formulas(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    raws = [
        nsim.open_position(agent, symbol=f"T{i}", purchase_price=0.001 * (i + 1), amount=100, notify=False)
        for i in range(5)
    ]
    ws = nclient()
    calls: list[list[Position]] = []
    batches: list[PriceBatch] = []
    ws.on_positions()(calls.append)
    ws.on_price_update()(batches.append)
    ws.start().wait_for_positions(timeout=5)
    eventually(lambda: len(calls) == 1)
    nsim.take_profit(agent, raws[0]["id"], sold=40, at_price=0.002)
    eventually(lambda: len(calls) == 2)
    new_prices = {r["tokenAddress"]: r["purchasePrice"] * 1.5 for r in raws}
    nsim.send_prices(agent, new_prices)
    eventually(lambda: len(batches) == 1)
    eventually(lambda: len(calls) == 3)
    assert len(batches[0].updates) == 5
    assert all(u.token_address == u.token_address.lower() for u in batches[0].updates)
    # One on_positions call for the whole batch, and in it every position repriced.
    assert all(p.current_price == Decimal(repr(new_prices[p.token_address])) for p in calls[2])
    # The client agrees with what the server would send as initial_data, take-profit included.
    server = {
        r["id"]: with_prices(r, new_prices[r["tokenAddress"]], new_prices[r["tokenAddress"]] * nsim.sol_usd)
        for r in nsim.positions[agent].values()
    }
    for p in ws.get_positions():
        expected = server[p.id]
        for name in (
            "positionValueSol",
            "profitLossSol",
            "profitLossPercent",
            "priceChangePercent",
            "positionValueUsd",
        ):
            assert float(p.get(name)) == pytest.approx(expected[name], rel=1e-9), name
    tp = position(ws, raws[0]["id"])
    assert tp.remaining_amount == Decimal(60) and tp.realized_profit_sol == Decimal(repr(0.001 * 40))


def test_an_update_before_initial_data_is_not_lost(nsim: NexgentSimulator, agent: str, nclient: Make) -> None:
    early = nsim.open_position(agent, symbol="EARLY", notify=False)
    later = dict(early, id="p-early-2", tokenSymbol="EARLY2")
    nsim.early_updates.append({"eventType": "position_created", "position": later})
    ws = nclient()
    ws.start().wait_for_positions(timeout=5)
    assert {p.id for p in ws.get_positions()} == {early["id"], "p-early-2"}


def test_pings_are_answered_with_type_pong_and_timestamp(agent: str, nclient: Make) -> None:
    with NexgentSimulator(price_interval=0, ping_interval=0.05) as sim:
        sim.add_agent(agent)
        ws = nclient(api_url=sim.url, token=sim.issue_token())
        ws.start().wait_connected(5)
        sim.wait_for(lambda: sum(1 for m in sim.received() if m.get("type") == "pong") >= 10)
        pong = next(m for m in sim.received() if m.get("type") == "pong")
        assert set(pong) == {"type", "timestamp"} and pong["timestamp"].endswith("Z")
        assert ws.health().reconnects == 0
        assert ws.close(2)


def test_silence_reconnects_and_positions_are_kept_stale_meanwhile(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    nsim.open_position(agent, notify=False)
    ws = nclient(stale_timeout=0.3)
    ws.start().wait_for_positions(timeout=5)
    kept = ws.get_positions()
    nsim.stop_listening()
    lost = next_event(ws, Disconnected, timeout=2)
    assert isinstance(lost.error, ConnectionLostError)
    assert ws.get_positions() == kept and ws.positions_stale
    nsim.start_listening()
    next_event(ws, Connected, timeout=5)
    ws.wait_for_positions(timeout=5)
    assert not ws.positions_stale
    nsim.half_open()
    lost = next_event(ws, Disconnected, timeout=2)
    assert isinstance(lost.error, StaleConnectionError)
    assert next_event(ws, Connected, timeout=5).reconnect


def test_takeover_defect_socket_that_only_answers_probes_is_treated_as_silent(
    agent: str, nclient: Make
) -> None:
    with NexgentSimulator(price_interval=0.05, ping_interval=0.05, takeover_defect=True) as sim:
        sim.add_agent(agent)
        sim.open_position(agent, notify=False)
        first = nclient(api_url=sim.url, token=sim.issue_token())
        first.start().wait_for_positions(5)
        second = nclient(api_url=sim.url, token=sim.issue_token(), stale_timeout=0.5)
        replaced: list[Exception] = []
        first.on_error()(replaced.append)
        second.start().wait_for_positions(5)
        # The first client is replaced and stops; the second sits on a socket the
        # server forgot (no pings, no prices), notices, and reconnects.
        eventually(lambda: first.state is ConnectionState.REPLACED)
        lost = next_event(second, Disconnected, timeout=3)
        assert isinstance(lost.error, StaleConnectionError)
        assert next_event(second, Connected, timeout=5).reconnect
        second.wait_for_positions(5)
        eventually(lambda: sim.live(agent) is not None)
        assert first.state is ConnectionState.REPLACED and any(
            isinstance(e, ConnectionReplacedError) for e in replaced
        )


def test_expired_token_is_refreshed_through_the_provider(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    expired = nsim.issue_token(ttl=0)
    asked: list[str] = []

    def provider() -> str:
        asked.append(threading.current_thread().name)
        return nsim.issue_token()

    ws = nclient(token=expired, token_provider=provider)
    ws.start().wait_for_positions(timeout=5)
    assert len(asked) == 1
    assert ws.state is ConnectionState.CONNECTED


def test_401_without_provider_or_with_a_refused_fresh_token_is_fatal(
    nsim: NexgentSimulator, nclient: Make
) -> None:
    ws = nclient(token="eyJ.not-a-real-token")
    with pytest.raises(AuthenticationError):
        ws.start().wait_connected(timeout=1)
    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        return "eyJ.also-bad"

    refused = nclient(token="eyJ.bad", token_provider=provider)
    with pytest.raises(AuthenticationError, match="fresh"):
        refused.start().wait_for_positions(timeout=1)
    assert calls == [1]
    assert refused.state is ConnectionState.FAILED
    assert nsim.refused_total == 3  # one, then two: nothing retried after that


def test_secrets_never_appear_in_repr_health_or_errors(nsim: NexgentSimulator, nclient: Make) -> None:
    ws = nclient(token="eyJ.TOPSECRETJWT")
    with pytest.raises(AuthenticationError) as info:
        ws.start().wait_connected(timeout=1)
    assert "TOPSECRETJWT" not in str(info.value) + repr(ws) + str(ws.health())


def test_agent_not_found_is_fatal_with_its_own_error(nsim: NexgentSimulator, nclient: Make) -> None:
    nsim.add_agent("someone-elses", user="user-2")
    ws = nclient(agent_id="someone-elses")
    with pytest.raises(AgentNotFoundError):
        ws.start().wait_for_positions(timeout=2)
    assert ws.state is ConnectionState.FAILED
    assert nsim.connections_total == 1


def test_takeover_is_reported_and_not_fought(nsim: NexgentSimulator, agent: str, nclient: Make) -> None:
    first = nclient()
    errors: list[Exception] = []
    first.on_error()(errors.append)
    first.start().wait_for_positions(5)
    second = nclient()
    second.start().wait_for_positions(5)
    lost = next_event(first, Disconnected)
    assert isinstance(lost.error, ConnectionReplacedError) and lost.retry_in is None
    assert first.state is ConnectionState.REPLACED
    assert "ConnectionReplacedError" in (first.health().last_error or "")
    eventually(lambda: errors)
    with pytest.raises(ConnectionReplacedError):
        first.run_forever()
    assert nsim.connections_total == 2 and second.connected


def test_takeover_with_opt_in_reconnects(nsim: NexgentSimulator, agent: str, nclient: Make) -> None:
    first = nclient(reconnect_on_replace=True)
    first.start().wait_for_positions(5)
    second = nclient()
    second.start().wait_for_positions(5)
    assert isinstance(next_event(first, ErrorEvent).error, ConnectionReplacedError)
    assert next_event(first, Connected).reconnect
    eventually(lambda: second.state is ConnectionState.REPLACED)


@pytest.mark.parametrize(
    ("code", "reason"),
    [(1011, "Internal server error"), (1000, "Server shutdown"), (1000, "Connection timeout")],
)
def test_other_closes_reconnect(nsim: NexgentSimulator, nclient: Make, code: int, reason: str) -> None:
    ws = nclient()
    ws.start().wait_for_positions(5)
    nsim.drop_all(code=code, reason=reason)
    lost = next_event(ws, Disconnected)
    assert lost.error.code == code and lost.retry_in is not None
    assert next_event(ws, Connected).reconnect


def test_server_closes_when_pongs_stop(agent: str, nclient: Make) -> None:
    with NexgentSimulator(price_interval=0, ping_interval=0.05) as sim:
        sim.add_agent(agent)
        ws = nclient(api_url=sim.url, token=sim.issue_token())
        ws.start().wait_connected(5)
        # The server registers the connection a moment after the client sees it open.
        conn = eventually(lambda: sim.live(agent), what="the server to register the connection")
        assert conn is not None
        conn.last_pong = -1e9  # as if the client had stopped answering
        lost = next_event(ws, Disconnected)
        assert lost.error.reason == "Connection timeout"
        assert next_event(ws, Connected).reconnect
        assert ws.close(2)


def test_failed_initial_data_reaches_the_waiter(agent: str, nclient: Make) -> None:
    with NexgentSimulator(price_interval=0, fail_initial_data=True) as sim:
        sim.add_agent(agent)
        ws = nclient(api_url=sim.url, token=sim.issue_token())
        with pytest.raises(ServerError, match="Failed to load initial data"):
            ws.start().wait_for_positions(timeout=5)
        assert ws.close(2)


def test_malformed_messages_are_counted_and_never_corrupt_the_cache(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    raw = nsim.open_position(agent, notify=False)
    ws = nclient()
    ws.start().wait_for_positions(5)
    before = ws.get_positions()
    bad_price = {
        "type": "price_update_batch",
        "data": {"updates": [{"tokenAddress": raw["tokenAddress"], "price": "oops"}]},
    }
    nsim.send_raw(json.dumps(bad_price))
    nsim.send_raw('{"type":"initial_data","data":{"positions":[{"id":"x"}]}}')
    bad_update = {
        "type": "position_update",
        "data": {"eventType": "position_updated", "position": {"id": raw["id"], "purchasePrice": [1]}},
    }
    nsim.send_raw(json.dumps(bad_update))
    nsim.send_raw("{not json")
    nsim.send_raw('{"type":"error","data":{"message":"Invalid message format"}}')
    assert isinstance(next_event(ws, ErrorEvent).error, ProtocolError)
    eventually(lambda: ws.health().bad_messages == 4 and ws.health().server_errors == 1)
    assert ws.get_positions() == before
    assert ws.connected


def test_close_clears_positions(nsim: NexgentSimulator, agent: str, nclient: Make) -> None:
    nsim.open_position(agent, notify=False)
    ws = nclient()
    ws.start().wait_for_positions(5)
    assert ws.get_positions()
    assert ws.close(2)
    assert ws.get_positions() == [] and ws.get_cached_price(next(iter(nsim.prices))) is None


def test_a_fresh_token_that_expired_during_a_long_outage_is_refreshed_again(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    # Regression: the provider was asked once per connection: a token it handed
    # over that expired before the server came back ended the client for good.
    first = nsim.issue_token()
    handed: list[str] = []

    def provider() -> str:
        token = nsim.issue_token()
        handed.append(token)
        if len(handed) == 1:
            nsim.stop_listening()  # the outage starts before the fresh token is used
        return token

    ws = nclient(token=first, token_provider=provider)
    ws.start().wait_for_positions(5)
    nsim.expire_token(first)
    nsim.drop_all(abrupt=True)
    eventually(lambda: len(handed) == 1, what="the first refresh")
    eventually(lambda: ws.health().reconnects == 0 and ws.state is ConnectionState.BACKOFF, what="the outage")
    nsim.expire_token(handed[0])  # the outage outlived the fresh token
    nsim.start_listening()
    ws.wait_connected(10)
    assert len(handed) == 2 and ws.state is ConnectionState.CONNECTED


def test_after_failed_initial_data_position_events_are_applied_and_reported(
    agent: str, nclient: Make
) -> None:
    # Regression: after "Failed to load initial data" every later position event
    # was held back (no callback, not in get_positions) and piled up in memory.
    with NexgentSimulator(price_interval=0, fail_initial_data=True) as sim:
        sim.add_agent(agent)
        early = sim.open_position(agent, symbol="EARLY", notify=False)
        sim.early_updates.append({"eventType": "position_created", "position": early})
        ws = nclient(api_url=sim.url, token=sim.issue_token())
        events: list[PositionEvent] = []
        ws.on_position_update()(events.append)
        with pytest.raises(ServerError, match="Failed to load initial data"):
            ws.start().wait_for_positions(timeout=5)
        eventually(
            lambda: [p.id for p in ws.get_positions()] == [early["id"]], what="the early event applied"
        )
        later = sim.open_position(agent, symbol="LATER")
        eventually(lambda: len(ws.get_positions()) == 2, what="the later event applied")
        eventually(lambda: {e.position_id for e in events} == {early["id"], later["id"]})
        sim.close_position(agent, later["id"])
        eventually(lambda: [p.id for p in ws.get_positions()] == [early["id"]])
        assert ws.close(2)


def test_one_bad_price_in_a_batch_is_counted_and_the_rest_apply(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    raw = nsim.open_position(
        agent, token_address="So1GoodToken", purchase_price=0.001, amount=10, notify=False
    )
    ws = nclient()
    ws.start().wait_for_positions(5)
    updates = [
        {"tokenAddress": "so1goodtoken", "price": 0.002, "priceUsd": 0},
        {"tokenAddress": "so1other", "price": 0, "priceUsd": 0},
    ]
    nsim.send_raw(json.dumps({"type": "price_update_batch", "data": {"updates": updates}}))
    eventually(lambda: ws.get_cached_price("So1GoodToken") == Decimal("0.002"))
    eventually(lambda: ws.health().bad_messages == 1)
    assert ws.get_cached_price_usd("So1GoodToken") is None and ws.get_cached_price("so1other") is None
    assert position(ws, raw["id"]).profit_loss_percent == Decimal(100)


def test_a_connected_message_for_another_agent_is_reported(
    nsim: NexgentSimulator, agent: str, nclient: Make
) -> None:
    ws = nclient()
    ws.start().wait_for_positions(timeout=5)
    assert ws.health().bad_messages == 0  # the simulator's own "connected" names our agent
    nsim.send_raw(json.dumps({"type": "connected", "data": {"agentId": "someone-else"}}))
    health = eventually(lambda: (h := ws.health()).bad_messages == 1 and h, what="the mismatch reported")
    assert "someone-else" in (health.last_error or "") and ws.connected
