"""TLS verification, secrets kept out of every output, loopback by default."""

from __future__ import annotations

import base64
import json
import logging
import socket
import ssl
from collections.abc import Iterator
from decimal import Decimal

import pytest
import trustme

from agentx_sync import (
    AgentExchangeWS,
    AuthenticationError,
    Connected,
    ConnectionState,
    NexgentWS,
    Ticker,
    TLSError,
)
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import FAST, eventually, next_event


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_untrusted_certificate_is_refused_clearly_and_not_retried(ca: trustme.CA) -> None:
    with Simulator(rate=10, ssl_context=server_context(ca, "127.0.0.1")) as sim:
        assert sim.url.startswith("wss://127.0.0.1:")
        ws = AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST)
        with pytest.raises(TLSError, match="certificate"):
            ws.start().wait_connected(timeout=2)
        assert ws.state is ConnectionState.FAILED
        assert ws.close(2)


def test_wrong_host_name_is_refused(ca: trustme.CA) -> None:
    with Simulator(rate=10, ssl_context=server_context(ca, "exchange.example")) as sim:
        ws = AgentExchangeWS(
            api_key="ak_test", base_url=sim.url, ssl_context=client_context(ca), backoff=FAST
        )
        with pytest.raises(TLSError, match="mismatch"):
            ws.start().wait_connected(timeout=2)
        assert ws.close(2)


def test_user_supplied_ca_is_accepted_for_both_clients(ca: trustme.CA) -> None:
    with Simulator(rate=50, ssl_context=server_context(ca, "127.0.0.1")) as sim:
        with AgentExchangeWS(api_key="ak_test", base_url=sim.url, ssl_context=client_context(ca)) as ws:
            assert ws.wait_for_price("BTCUSDT", 5) > 0
    with NexgentSimulator(price_interval=0, ssl_context=server_context(ca, "127.0.0.1")) as nsim:
        agent = nsim.add_agent()
        url = nsim.url.replace("wss://", "https://")
        with NexgentWS(
            api_url=url, token=nsim.issue_token(), agent_id=agent, ssl_context=client_context(ca)
        ) as nws:
            assert nws.wait_for_positions(5) == []


def test_a_burst_over_tls_arrives_whole_and_in_order(ca: trustme.CA) -> None:
    # TLS hands out one record (16 KiB at most) a read; the IO thread gathers
    # what is waiting into one batch. Every message must still arrive once.
    with Simulator(rate=0, ssl_context=server_context(ca, "127.0.0.1")) as sim:
        with AgentExchangeWS(api_key="ak_test", base_url=sim.url, ssl_context=client_context(ca)) as ws:
            ws.subscribe_ticker("all")
            ws.wait_connected(5)
            sim.wait_for(lambda: {"ticker:all"} <= set().union(*sim.subscriptions()))
            for i in range(3000):
                trade = {"price": f"{i}.5", "quantity": "1", "timestamp": "2026-11-21T12:00:00Z"}
                sim.send_raw(json.dumps({"channel": "ticker", "symbol": f"S{i % 7}", "data": trade}))
            eventually(lambda: ws.get_cached_price("S3") == Decimal("2999.5"), timeout=10)
            assert ws.health().bad_messages == 0
            assert [ws.get_cached_price(f"S{k}") for k in range(7)] == [
                Decimal(f"{max(i for i in range(3000) if i % 7 == k)}.5") for k in range(7)
            ]
            prices = [t.price for t in iter(lambda: ws.get_event(0), None) if isinstance(t, Ticker)]
            assert prices == [Decimal(f"{i}.5") for i in range(3000)]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        if record.exc_info and record.exc_info[1] is not None:
            self.lines.append(repr(record.exc_info[1]))


@pytest.fixture
def everything() -> Iterator[Capture]:
    """Every log record of every logger, at DEBUG."""
    handler = Capture()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s %(args)s"))
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def chain(error: BaseException | None) -> str:
    texts = []
    while error is not None:
        texts.append(f"{error!r} {error}")
        error = error.__cause__ or error.__context__
    return " ".join(texts)


def test_api_key_never_appears_anywhere(everything: Capture) -> None:
    secret = "ak_live_S3CR3T/+=key"
    with Simulator(rate=100, api_keys=[secret]) as sim:
        ws = AgentExchangeWS(api_key=secret, base_url=sim.url, backoff=FAST)
        errors: list[Exception] = []
        ws.on_error()(errors.append)
        ws.start().wait_connected(5)
        ws.wait_for_price("BTCUSDT", 5)
        sim.send_raw("garbage")
        sim.drop_all(abrupt=True)
        next_event(ws, Connected)
        eventually(lambda: len(errors) >= 2)  # the bad message and the drop
        seen = repr(ws) + str(ws.health())
        assert ws.close(2)
        sim.refuse_key(secret)
        refused = AgentExchangeWS(api_key=secret, base_url=sim.url, backoff=FAST)
        with pytest.raises(AuthenticationError) as info:
            refused.start().wait_connected(2)
        assert refused.close(2)
    text = "\n".join(everything.lines) + seen + chain(info.value) + " ".join(chain(e) for e in errors)
    assert everything.lines, "nothing was logged: the capture is broken"
    for form in (secret, "S3CR3T", "S3CR3T%2F%2B%3Dkey"):
        assert form not in text


def test_jwt_never_appears_anywhere(everything: Capture) -> None:
    with NexgentSimulator(price_interval=0.05) as sim:
        agent = sim.add_agent()
        good = sim.issue_token()
        expired = sim.issue_token(ttl=0)
        ws = NexgentWS(
            api_url=sim.url, token=expired, agent_id=agent, token_provider=lambda: good, backoff=FAST
        )
        ws.start().wait_for_positions(5)
        sim.drop_all(code=1011, reason="Internal server error")
        ws.wait_for_positions(5)
        seen = repr(ws) + str(ws.health())
        assert ws.close(2)
        bad = NexgentWS(api_url=sim.url, token=expired, agent_id=agent, backoff=FAST)
        with pytest.raises(AuthenticationError) as info:
            bad.start().wait_connected(2)
        assert bad.close(2)
    text = "\n".join(everything.lines) + seen + chain(info.value)
    assert everything.lines
    for token in (good, expired, good.split(".", 1)[1], expired.split(".", 1)[1]):
        assert token not in text


def test_simulators_bind_loopback_by_default() -> None:
    with Simulator(rate=0) as sim, NexgentSimulator(price_interval=0) as nsim:
        for server in (sim, nsim):
            assert server.host == "127.0.0.1"
            assert server._server is not None
            assert {s.getsockname()[0] for s in server._server.sockets} == {"127.0.0.1"}


def test_a_password_in_the_url_never_appears_anywhere(everything: Capture) -> None:
    # Regression: wss://user:pass@host showed the password in health().url,
    # repr(), the notebook view and log records.
    with Simulator(rate=100) as sim:
        url = sim.url.replace("ws://", "ws://agent:PA55W0RD%2Fx@")
        ws = AgentExchangeWS(api_key="ak_test", base_url=url, backoff=FAST)
        errors: list[Exception] = []
        ws.on_error()(errors.append)
        ws.start().wait_for_price("BTCUSDT", 5)
        sim.send_raw("garbage")
        sim.drop_all(abrupt=True)
        next_event(ws, Connected)
        eventually(lambda: len(errors) >= 2)
        seen = repr(ws) + str(ws.health()) + ws._repr_html_()
        assert ws.health().url.startswith("ws://***@127.0.0.1:")
        conn = sim.wait_connections(1)[0]
        sent = [conn.ws.request.headers.get("Authorization") if conn.ws.request else None]
        assert ws.close(2)
    assert sent and sent[0] == "Basic " + base64.b64encode(b"agent:PA55W0RD/x").decode()
    text = "\n".join(everything.lines) + seen + " ".join(chain(e) for e in errors)
    assert everything.lines, "nothing was logged: the capture is broken"
    for form in ("PA55W0RD", "agent:", base64.b64encode(b"agent:PA55W0RD/x").decode()):
        assert form not in text


def test_an_ssl_context_with_a_plain_url_is_refused() -> None:
    # Regression: the context was silently ignored and the connection ran in plaintext.
    context = ssl.create_default_context()
    with pytest.raises(ValueError, match="not wss://"):
        AgentExchangeWS("ak_test", "ws://127.0.0.1:8000", ssl_context=context)
    with pytest.raises(ValueError, match="not wss://"):
        NexgentWS("http://127.0.0.1:4000", "eyJ.x", "agent", ssl_context=context)
    assert AgentExchangeWS("ak_test", "https://127.0.0.1:8000", ssl_context=context)


def test_a_simulator_that_cannot_listen_leaves_no_thread_behind() -> None:
    # Toward issue 12 (notebooks): a failed Simulator.start() left its loop thread
    # running; the leak fixture fails this test if it still does.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            Simulator(port=taken.getsockname()[1]).start()
