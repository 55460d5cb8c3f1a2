"""Many processes, one connection: ``share=`` against a real redis-server.

Members are OS processes (tests/share_member.py) unless a test needs to hold
a follower still from inside; every wait is on a condition, with a bound.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis

from agentx_sync import AgentExchangeWS, NexgentWS
from agentx_sync.errors import ShareError, ShareRefusedError
from agentx_sync.share import LEASE
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import eventually, run_in_child
from .sharing import Member, RedisServer, free_port, leader_of

pytestmark = pytest.mark.foreign_sockets  # member processes and redis-server come and go

#: How long a takeover may take: the lease runs out, then a follower's next look, then one connect.
TAKEOVER = LEASE + 1.0 + 10.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer("--stream-node-max-entries", "4").start()
    yield server
    server.stop()


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    for member in made:
        err = member.stop()
        assert "Traceback" not in err, err


def exchange_member(sim: Simulator, redis_server: RedisServer, **extra: Any) -> Member:
    return Member(
        platform="agentexchange", key=sorted(sim.api_keys)[0], url=sim.url, redis=redis_server.url, **extra
    )


def shared_leader(client: Any, redis_server: RedisServer, *symbols: str) -> AgentExchangeWS:
    """An in-process client that leads the shared feed of ``symbols`` (default BTCUSDT)."""
    leader: AgentExchangeWS = client(share=redis_server.url)
    leader.subscribe_ticker(*(symbols or ("BTCUSDT",)))
    leader.start()
    leader.wait_connected(10)
    assert leader.health().role == "leader"
    return leader


def leader_and_follower(
    client: Any, redis_server: RedisServer, sim: Simulator
) -> tuple[AgentExchangeWS, AgentExchangeWS, redis.Redis]:
    """An in-process leader of BTCUSDT and a follower, the market quiet (only the test's own
    ticks), and a Redis client to look at what they wrote."""
    leader = shared_leader(client, redis_server)
    follower: AgentExchangeWS = client(share=redis_server.url)
    follower.wait_connected(10)
    sim.pause_market()
    return leader, follower, redis_server.client()


def all_see(members: list[Member], symbol: str, price: str, sim: Simulator) -> None:
    """Tick ``symbol`` at ``price`` until every member's cache shows it."""
    for member in members:
        deadline = time.monotonic() + 20
        while member.status.get("prices", {}).get(symbol) != price:
            assert time.monotonic() < deadline, f"{member.pid} never saw {symbol} at {price}: {member.status}"
            sim.tick(symbol, price)
            try:
                member.wait(lambda s: s.get("prices", {}).get(symbol) == price, 0.5)
            except AssertionError:
                pass


def test_three_processes_share_one_websocket(redis_server: RedisServer, members: list[Member]) -> None:
    with Simulator(rate=0, seed=1) as sim:
        members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        members[0].wait(lambda s: s["role"] == "leader" and s["state"] == "connected", what="a leader")
        members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        # A symbol only the third process wants: the leader subscribes to it for it.
        members.append(exchange_member(sim, redis_server, tickers=["SOLUSDT"]))
        for member in members[1:]:
            member.wait(lambda s: s["role"] == "follower" and s["state"] == "connected", what="following")
        eventually(
            lambda: any("ticker:SOLUSDT" in subs for subs in sim.subscriptions()), 10, "SOL on the wire"
        )
        all_see(members, "BTCUSDT", "70001.5", sim)
        all_see(members[2:], "SOLUSDT", "123.25", sim)
        assert len(sim.connections()) == 1 and sim.connections_total == 1
        assert {m.status["leader"] for m in members} == {members[0].status["leader"]}


def test_kill_9_of_the_leader_hands_the_feed_to_another_process(
    redis_server: RedisServer, members: list[Member]
) -> None:
    with Simulator(rate=0, seed=1) as sim:
        for _ in range(3):
            members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        eventually(lambda: sum(m.status.get("role") == "leader" for m in members) == 1, 20, "one leader")
        all_see(members, "BTCUSDT", "70000.5", sim)
        old = leader_of(members)
        old.kill(signal.SIGKILL)
        killed_at = time.monotonic()
        rest = [m for m in members if m is not old]
        eventually(lambda: any(m.status.get("role") == "leader" for m in rest), TAKEOVER, "a new leader")
        assert time.monotonic() - killed_at < TAKEOVER
        all_see(rest, "BTCUSDT", "70100.5", sim)
        eventually(lambda: len(sim.connections()) == 1, 10, "one WebSocket")
        assert sum(m.status.get("role") == "leader" for m in rest) == 1


def test_a_frozen_leader_steps_down_and_never_publishes_after_its_lease(
    redis_server: RedisServer, members: list[Member]
) -> None:
    r = redis_server.client()
    with Simulator(rate=50, seed=1) as sim:
        for _ in range(2):
            members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        eventually(lambda: sum(m.status.get("role") == "leader" for m in members) == 1, 20, "one leader")
        old = leader_of(members)
        new = next(m for m in members if m is not old)
        old.kill(signal.SIGSTOP)
        eventually(lambda: new.status.get("role") == "leader", TAKEOVER, "the follower takes over")
        taken: bytes = r.get(next(iter(r.scan_iter("agentx_sync:*:lease"))))  # type: ignore[assignment]
        old.kill(signal.SIGCONT)
        old.wait(
            lambda s: s["role"] == "follower" and s["state"] == "connected", 20, "the old leader follows"
        )
        eventually(lambda: len(sim.connections()) == 1, 10, "one WebSocket")
        all_see(members, "BTCUSDT", "69999.5", sim)
        # Fencing: once the new leader wrote, no entry of the old leader's run follows.
        stream = next(iter(r.scan_iter("agentx_sync:*:feed")))
        entries: list[tuple[bytes, dict[bytes, bytes]]] = r.xrange(stream)  # type: ignore[assignment]
        runs = [fields[b"r"].split(b"#")[0] for _, fields in entries]
        new_member = b":".join(taken.split(b":")[1:4])
        first_new = runs.index(new_member)
        assert all(run == new_member for run in runs[first_new:])
        r.close()


def test_nexgent_three_processes_one_connection_same_positions_and_no_token_in_redis(
    redis_server: RedisServer, members: list[Member]
) -> None:
    with NexgentSimulator(price_interval=0, seed=2) as nsim:
        agent = nsim.add_agent("agent-1")
        token = nsim.issue_token()
        for i in range(3):
            nsim.open_position(agent, symbol=f"T{i}", purchase_price=0.0001 * (i + 1), notify=False)
        config = {"platform": "nexgent", "url": nsim.url.replace("ws://", "http://"), "agent": agent}
        for _ in range(3):
            members.append(Member(**config, token=token, redis=redis_server.url))
        for member in members:
            member.wait(lambda s: s["state"] == "connected" and len(s["positions"]) == 3, what="positions")
        address = next(iter(nsim.prices))
        nsim.send_prices(agent, {address: 0.00042})
        for member in members:
            member.wait(
                lambda s: any(p[0] == "0.00042" for p in s["positions"].values()), what="the new price"
            )
        assert len({repr(sorted(m.status["positions"].items())) for m in members}) == 1
        assert nsim.connections_total == 1 and len(nsim.connections()) == 1  # no takeover loop
        r = redis_server.client()
        for key in r.scan_iter("*"):
            kind = r.type(key)
            dump = repr(key) + repr(
                r.xrange(key) if kind == b"stream" else r.hgetall(key) if kind == b"hash" else r.get(key)
            )
            assert token not in dump and token.split(".")[-1] not in dump
        r.close()


def test_order_updates_reach_every_follower_once_in_order_and_a_redis_restart_is_survived(
    redis_server: RedisServer, members: list[Member]
) -> None:
    with Simulator(rate=0, seed=1, fill_delay=0.0) as sim:
        for _ in range(3):
            members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        eventually(lambda: sum(m.status.get("role") == "leader" for m in members) == 1, 20, "one leader")
        for member in members:
            member.wait(lambda s: s["state"] == "connected", what="connected")
        ids = [sim.place_order("BTCUSDT", quantity="0.001") for _ in range(20)]
        expected = [[i, s] for i in ids for s in ("pending", "filled")]
        for member in members:
            member.wait(lambda s: len(s["orders"]) >= len(expected), what="every order update")
            assert member.status["orders"] == expected  # once each, in order
        leader = leader_of(members)
        followers = [m for m in members if m is not leader]
        # Redis goes away: the leader's own cache and callbacks go on.
        redis_server.stop()
        for member in followers:
            member.wait(lambda s: s["share_error"], what="the outage reported")
        more = [sim.place_order("BTCUSDT", quantity="0.001") for _ in range(5)]
        leader.wait(lambda s: len(s["orders"]) == len(expected) + 10, what="the leader's own callbacks")
        all_see([leader], "BTCUSDT", "71000.5", sim)
        resyncs = {m.pid: m.status["resyncs"] for m in followers}
        redis_server.start()
        for member in followers:
            before = resyncs[member.pid]
            member.wait(lambda s: s["resyncs"] > before and not s["share_error"], 30, "a resync")  # noqa: B023
            assert member.status["missed"] >= 10  # the updates it could not see, counted
            # It did not see them, and saw nothing twice.
            assert member.status["orders"] == expected
            assert set(more) <= set(member.status["cached_orders"])  # the snapshot holds them
        later = sim.place_order("BTCUSDT", quantity="0.001")
        for member in members:
            member.wait(lambda s: s["orders"][-1] == [later, "filled"], what="updates flow again")
        assert len(sim.connections()) == 1


def test_a_leader_fenced_with_writes_in_flight_steps_down_then_leads_again_cleanly(
    redis_server: RedisServer, sim: Simulator, client: Any
) -> None:
    """Writes go out several before their answers are read: a lease lost meanwhile (here taken
    by a process that then goes away) stops them, and the next term starts on a clean
    connection, never reading the old term's answers as its own."""
    leader, follower, r = leader_and_follower(client, redis_server, sim)
    sim.tick("BTCUSDT", "59999.5")
    eventually(lambda: follower.get_cached_price("BTCUSDT") == Decimal("59999.5"), 10, "the first price")
    lease = next(iter(r.scan_iter("agentx_sync:*:lease")))
    stream = next(iter(r.scan_iter("agentx_sync:*:feed")))
    changes = leader.health().lease_changes + follower.health().lease_changes
    r.set(lease, b"999999:elsewhere:1:deadbeef", px=int(LEASE * 1000))  # another process leads now
    entries_then = r.xlen(stream)
    for i in range(200):  # prices the leader applies, one at a time, but can no longer publish
        if leader.health().role != "leader":
            break
        price = f"{60000 + i}.5"
        sim.tick("BTCUSDT", price)
        eventually(
            lambda p=price: (
                leader.get_cached_price("BTCUSDT") == Decimal(p) or leader.health().role != "leader"
            ),  # type: ignore[misc]
            10,
            "a price",
        )
    eventually(lambda: leader.health().role != "leader", 10, "the fenced leader steps down")
    assert r.xlen(stream) == entries_then  # nothing was written after the lease was gone
    r.delete(lease)  # the other process goes away: this one (or the follower) leads again
    eventually(lambda: leader.health().role == "leader" or follower.health().role == "leader", TAKEOVER)

    def both_see(price: str) -> bool:
        sim.tick("BTCUSDT", price)  # (again until then: the new leader's connection may be opening)
        return leader.get_cached_price("BTCUSDT") == follower.get_cached_price("BTCUSDT") == Decimal(price)

    eventually(lambda: both_see("61234.5"), TAKEOVER, "prices flow again to both")
    for i in range(20):  # the new term keeps its lease while it writes
        eventually(lambda p=f"{61235 + i}.5": both_see(p), 10, "the next price")  # type: ignore[misc]
    h, f = leader.health(), follower.health()
    assert h.lease_changes + f.lease_changes <= changes + 2  # one step down, one new term: no churn
    assert (h.role, f.role) in (("leader", "follower"), ("follower", "leader"))
    r.close()


def test_a_late_follower_starts_from_a_full_snapshot(
    redis_server: RedisServer, sim: Simulator, client: Any
) -> None:
    leader = shared_leader(client, redis_server, "BTCUSDT", "ETHUSDT")
    leader.on_portfolio()(lambda p: None)
    ids = [sim.place_order("BTCUSDT", quantity="0.001") for _ in range(60)]  # 120 updates: more than 100 kept
    eventually(lambda: (o := leader.get_order(ids[-1])) is not None and o.status == "filled", 10, "orders")
    leader.wait_for_price("ETHUSDT", 10)
    eventually(lambda: leader.get_portfolio() is not None, 10, "a portfolio")
    late: AgentExchangeWS = client(share=redis_server.url)
    late.wait_connected(10)
    # Right away, before anything new could have arrived: the whole cache.
    assert [o.order_id for o in late.get_orders()] == [o.order_id for o in leader.get_orders()]
    assert len(late.get_orders()) == 100
    assert late.get_portfolio() is not None
    assert late.get_cached_price("ETHUSDT") is not None and late.get_cached_price("BTCUSDT") is not None
    assert late.health().role == "follower" and late.health().resyncs == 1


def test_a_follower_that_falls_behind_the_stream_resyncs_and_counts_what_it_missed(
    redis_server: RedisServer, sim: Simulator, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentx_sync import share

    monkeypatch.setattr(share, "MAXLEN", 8)
    leader = shared_leader(client, redis_server)
    follower: AgentExchangeWS = client(share=redis_server.url)
    follower.wait_connected(10)
    sim.pause_market()
    seen: list[Decimal] = []
    follower.on_ticker("BTCUSDT")(lambda t: seen.append(t["price"]))
    shared = leader._shared
    assert shared is not None
    with follower._state.batch:  # the follower cannot apply anything meanwhile
        for i in range(60):  # one stream entry each: far more than the 8 the stream keeps
            relayed = shared.relayed
            sim.tick("BTCUSDT", f"{60000 + i}.5")
            eventually(lambda: shared.relayed > relayed, 10, "the tick relayed")  # noqa: B023
    eventually(
        lambda: follower.get_cached_price("BTCUSDT") == Decimal("60059.5"), 10, "the follower caught up"
    )
    h = follower.health()
    assert h.resyncs >= 2 and h.missed_events > 0
    assert len(seen) == len(set(seen))  # nothing twice


def test_redis_unreachable_at_start_is_a_clear_error(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    ws: AgentExchangeWS = client(share=url)
    errors: list[Exception] = []
    ws.on_error()(errors.append)
    with caplog.at_level(logging.DEBUG), pytest.raises(ShareError) as caught:
        ws.wait_connected(10)
    assert "cannot reach Redis" in str(caught.value) and "hunter2" not in str(caught.value)
    eventually(lambda: errors, 5, "on_error")
    assert isinstance(errors[0], ShareError)
    shown = repr(ws) + repr(ws.health()) + repr(ws.options) + caplog.text + str(errors)
    assert "hunter2" not in shown


def test_a_wrong_redis_password_is_refused_for_good(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer("--requirepass", "right-pass").start()
    try:
        ws: AgentExchangeWS = client(share=f"redis://:wrong-pass-secret@127.0.0.1:{server.port}/0")
        with caplog.at_level(logging.DEBUG), pytest.raises(ShareRefusedError) as caught:
            ws.wait_connected(10)
        assert ws.health().state.value == "failed"
        shown = str(caught.value) + repr(ws) + repr(ws.health()) + caplog.text
        assert "wrong-pass-secret" not in shown and "right-pass" not in shown
        # The right one works, given as a redis-py client.
        import redis

        # ... as the user configured it, decode_responses included (the library reads bytes).
        good = redis.Redis(host="127.0.0.1", port=server.port, password="right-pass", decode_responses=True)
        ok: AgentExchangeWS = client(share=good)
        ok.subscribe_ticker("BTCUSDT")
        ok.wait_connected(10)
        follower: AgentExchangeWS = client(share=good)
        follower.wait_connected(10)
        assert ok.health().role == "leader" and follower.health().role == "follower"
        follower.wait_for_price("BTCUSDT", 10)
        ok.close()
        follower.close()
        good.close()
    finally:
        server.stop()


def test_a_redis_client_with_another_encoding_still_relays_any_text(
    redis_server: RedisServer,
    nsim: NexgentSimulator,
    agent: str,
    nclient: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A redis-py client set to latin-1 (which cannot hold "€" or "🐸"): the library writes
    UTF-8 on its own pool, so leader and follower hold the same positions and names."""
    import redis

    # Without hiredis, as redis-py runs when the [redis] extra is not installed: then
    # redis-py packs commands with the client's encoding (hiredis always packs UTF-8).
    monkeypatch.setattr(redis.connection, "HIREDIS_AVAILABLE", False)
    given = redis.Redis(host="127.0.0.1", port=redis_server.port, encoding="latin-1")
    nsim.open_position(agent, symbol="€URO", purchase_price=0.0002, notify=False)
    leader: NexgentWS = nclient(share=given)
    leader.wait_connected(10)
    follower: NexgentWS = nclient(share=given)
    follower.wait_connected(10)  # from the snapshot
    nsim.open_position(agent, symbol="PEPE🐸", purchase_price=0.0001)  # through the stream
    symbols = {"€URO", "PEPE🐸"}
    eventually(lambda: {p.token_symbol for p in follower.get_positions()} == symbols, 10, "both positions")
    mine, theirs = (
        sorted(ws.get_positions(), key=lambda p: str(p.token_symbol)) for ws in (leader, follower)
    )
    assert mine == theirs
    assert (leader.health().role, follower.health().role) == ("leader", "follower")
    assert follower.health().bad_messages == 0
    given.close()


def test_a_refused_rediss_certificate_is_a_clear_error(
    tmp_path: Any, client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import trustme  # a test extra

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    port = free_port()
    server = RedisServer(
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tmp_path / "cert.pem"),
        "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    server.port = port
    server.start()
    try:
        ws: AgentExchangeWS = client(share=f"rediss://:pw-secret@127.0.0.1:{port}/0")
        with caplog.at_level(logging.DEBUG), pytest.raises(ShareRefusedError) as caught:
            ws.wait_connected(15)
        assert "certificate" in str(caught.value)
        assert "pw-secret" not in str(caught.value) + caplog.text + repr(ws.health())
    finally:
        server.stop()


def test_share_needs_a_redis_url() -> None:
    with pytest.raises(ValueError, match="redis://"):
        AgentExchangeWS("ak_x", "ws://127.0.0.1:1", share="http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="redis://"):
        NexgentWS("http://127.0.0.1:1", "t", "a", share="127.0.0.1:6379")


def test_without_share_nothing_imports_redis() -> None:
    import subprocess
    import sys

    code = (
        "import sys, agentx_sync; from agentx_sync import AgentExchangeWS; "
        "AgentExchangeWS('ak', 'ws://127.0.0.1:1').health(); print('redis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_an_entry_holds_its_texts_whatever_they_contain() -> None:
    from agentx_sync.share import _split

    assert _split("") == []
    assert _split('{"a":1}\x00{"b":2}') == ['{"a":1}', '{"b":2}']
    # A text with a NUL (no well-formed JSON has one) travels as a JSON list instead.
    assert _split("\x01" + json.dumps(["x\x00y", "z"])) == ["x\x00y", "z"]
    assert _split("\x01not json") == [] and _split('\x01[1, "a"]') == ["a"]


def test_the_cli_watches_a_shared_feed_as_a_follower(
    redis_server: RedisServer, sim: Simulator, client: Any
) -> None:
    import subprocess
    import sys

    leader = shared_leader(client, redis_server)
    leader.wait_for_price("BTCUSDT", 10)
    command = [sys.executable, "-m", "agentx_sync.cli", "watch", "BTCUSDT", "--url", sim.url]
    command += ["--api-key", "ak_test", "--plain", "--duration", "2", "--interval", "0.5"]
    run: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60}
    out = subprocess.run([*command, "--share", redis_server.url], check=False, **run)
    assert out.returncode == 0, out.stderr
    assert "follower of" in out.stdout and "BTCUSDT" in out.stdout and "state: connected" in out.stdout
    assert sim.connections_total == 1  # the watcher never opened a WebSocket of its own
    bad = subprocess.run([*command, "--share", "http://x"], check=False, **run)
    assert bad.returncode == 2 and "redis://" in bad.stderr


def test_the_interest_of_a_process_that_died_leaves_the_wire(
    redis_server: RedisServer, members: list[Member]
) -> None:
    from agentx_sync.share import INTEREST_TTL

    def on_wire(key: str) -> bool:
        return any(key in subs for subs in sim.subscriptions())

    with Simulator(rate=0, seed=1) as sim:
        members.append(exchange_member(sim, redis_server, tickers=["BTCUSDT"]))
        members[0].wait(lambda s: s["role"] == "leader" and s["state"] == "connected", what="a leader")
        members.append(exchange_member(sim, redis_server, tickers=["SOLUSDT"]))
        eventually(lambda: on_wire("ticker:SOLUSDT"), 10, "SOL on the wire for the follower")
        members[1].kill(signal.SIGKILL)
        eventually(lambda: not on_wire("ticker:SOLUSDT"), INTEREST_TTL + 5, "SOL off the wire")
        assert on_wire("ticker:BTCUSDT")


def test_the_demo_shares_its_feed(redis_server: RedisServer) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "agentx_sync.cli", "demo", "--plain", "--duration", "2"]
    run: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 60}
    out = subprocess.run([*command, "--share", redis_server.url], check=False, **run)
    assert out.returncode == 0, out.stderr
    assert f"--share {redis_server.url}" in out.stdout and "agentx-sync watch " in out.stdout
    assert "leader of the shared feed" in out.stdout


def test_entries_no_leader_wrote_are_counted_and_skipped(
    redis_server: RedisServer, sim: Simulator, client: Any
) -> None:
    leader, follower, r = leader_and_follower(client, redis_server, sim)
    sim.tick("BTCUSDT", "65000.5")
    stream = eventually(lambda: next(iter(r.scan_iter("agentx_sync:*:feed")), None), 10, "the stream")
    garbage: list[dict[str, Any]] = [
        {"x": "1"},
        {"r": b"\xff\xfe", "s": "zz", "n": "1", "m": "{}"},
        {
            "r": "someone#1",
            "s": "0",
            "n": "1",
            "m": '{"channel":"ticker","symbol":"BTCUSDT","data":{"price":"1"}}',
        },
    ]
    resyncs = follower.health().resyncs
    for fields in garbage:
        r.xadd(stream, fields)  # type: ignore[arg-type]
    sim.tick("BTCUSDT", "65432.5")
    eventually(lambda: follower.get_cached_price("BTCUSDT") == Decimal("65432.5"), 10, "the feed goes on")
    h = follower.health()
    assert h.bad_messages >= 2 and h.resyncs <= resyncs + 1 and h.state.value == "connected"
    assert follower.get_cached_price("BTCUSDT") != Decimal(1) or leader.get_cached_price(
        "BTCUSDT"
    ) == Decimal(1)
    r.close()


def test_a_malformed_snapshot_is_reported_once_and_a_good_one_is_waited_for(
    redis_server: RedisServer, sim: Simulator, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentx_sync import share

    looks = [0]
    resync = share.Shared._resync

    def counted(self: share.Shared) -> bool:
        looks[0] += 1
        return resync(self)

    monkeypatch.setattr(share.Shared, "_resync", counted)
    leader = shared_leader(client, redis_server)
    leader.wait_for_price("BTCUSDT", 10)
    sim.pause_market()  # nothing changes: the leader writes no new snapshot over ours
    shared = leader._shared
    assert shared is not None
    eventually(lambda: not shared._changed, share.SNAPSHOT_EVERY + 5, "the last snapshot written")
    r = redis_server.client()
    key = next(iter(r.scan_iter("agentx_sync:*:snapshot")))
    good = r.get(key)
    assert good is not None
    for bad in (b"not-an-id\n{}", b"1-0\nnot json", b'1-0\n{"run": "x"}', b"\xff\xfe\n{}"):
        r.set(key, bad)
        follower: AgentExchangeWS = client(share=redis_server.url)
        errors: list[Exception] = []
        follower.on_error()(errors.append)
        follower.start()
        eventually(lambda: errors, 10, "the bad snapshot reported")  # noqa: B023
        seen = looks[0]
        eventually(lambda: looks[0] >= seen + 5, 10, "five more looks at it")  # noqa: B023
        assert len(errors) == 1 and follower.health().state.value != "connected"
        r.set(key, good)
        follower.wait_connected(10)  # a good snapshot: it follows
        assert follower.get_cached_price("BTCUSDT") is not None
        follower.close()
    r.close()


def test_a_forked_copy_of_a_leader_leaves_the_parents_lease_and_feed_alone(
    redis_server: RedisServer, sim: Simulator, client: Any
) -> None:
    ws: AgentExchangeWS = client(share=redis_server.url)
    ws.subscribe_ticker("BTCUSDT")
    ws.start().wait_for_price("BTCUSDT", 10)
    assert ws.health().role == "leader"

    def child() -> dict[str, Any]:
        health = ws.health()
        return {"state": health.state.value, "role": health.role, "closed": ws.close(timeout=2)}

    report = run_in_child(child)
    assert report == {"state": "closed", "role": None, "closed": True}
    # The parent still leads and relays.
    shared = ws._shared
    assert shared is not None and shared.token is not None
    relayed = shared.relayed
    eventually(lambda: shared.relayed > relayed + 10, 10, "the parent's relay to go on")
    assert ws.health().role == "leader" and ws.health().lease_changes == 1


def test_the_shared_feed_example_runs_as_a_leader_and_a_follower(
    redis_server: RedisServer, sim: Simulator
) -> None:
    import os
    import subprocess
    import sys

    from .conftest import DEFAULT_SIGINT, EXAMPLES

    env = {
        **os.environ,
        "AGENTEXCHANGE_API_KEY": "ak_test",
        "AGENTEXCHANGE_WS_URL": sim.url,
        "AGENTX_SYNC_SHARE": redis_server.url,
        "DURATION": "0",  # the leader runs until Ctrl-C, after the follower is done
    }
    script = [sys.executable, str(EXAMPLES / "shared_feed.py")]
    first = subprocess.Popen(
        [*DEFAULT_SIGINT, *script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert first.stdout is not None
    line = first.stdout.readline()  # the first process leads before the second starts
    assert line.startswith("[leader] BTCUSDT "), line
    second = subprocess.run(
        script,
        env={**env, "SYMBOL": "ETHUSDT", "DURATION": "3"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    first.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, err + second.stderr
    assert "[follower] ETHUSDT " in second.stdout and "Traceback" not in err + second.stderr
    assert sim.connections_total == 1
