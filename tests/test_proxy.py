"""HTTP proxies: an explicit ``proxy=``, the environment's http(s)_proxy and no_proxy, HTTP CONNECT.

The proxy is a real CONNECT proxy on loopback (``ConnectProxy``) that relays
bytes between the client and the simulator, and records each request.
"""

from __future__ import annotations

import base64
import logging
import selectors
import socket
from collections.abc import Iterator

import pytest
import trustme

from agentx_sync import AgentExchangeWS, AuthenticationError, ConnectionState, NexgentWS
from agentx_sync.sim import NexgentSimulator, Simulator

from .conftest import FAST, eventually
from .rawserver import RawConn, RawServer
from .test_security import client_context, server_context

SECRET = "pr0xy-s3cret"


class ConnectProxy:
    """A loopback HTTP CONNECT proxy; ``status`` other than 200 refuses every tunnel."""

    def __init__(
        self, *, auth: tuple[str, str] | None = None, status: int = 200, answer: bool = True
    ) -> None:
        self.auth = auth
        self.status = status
        self.answer = answer
        self.requests: list[str] = []
        self.tunnels = 0
        self.server = RawServer(self._handle, limit=60)
        self.url = f"http://127.0.0.1:{self.server.port}"

    def _handle(self, conn: RawConn) -> None:
        request = conn.read_request()
        self.requests.append(request)
        if not self.answer:  # a proxy that never answers
            while conn.running and conn.sock.recv(1024):
                pass
            return
        line, *headers = request.split("\r\n")
        method, target, _ = line.split(" ")
        host, _, port = target.rpartition(":")
        assert method == "CONNECT" and host == "127.0.0.1"  # never anywhere but loopback
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            given = [
                h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("proxy-authorization:")
            ]
            if given != [expected]:
                conn.sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                return
        if self.status != 200:
            conn.sock.sendall(f"HTTP/1.1 {self.status} Refused\r\nContent-Length: 0\r\n\r\n".encode())
            return
        upstream = socket.create_connection((host, int(port)), timeout=5)
        self.tunnels += 1
        conn.sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._relay(conn, upstream)

    @staticmethod
    def _relay(conn: RawConn, upstream: socket.socket) -> None:
        with upstream, selectors.DefaultSelector() as sel:
            sel.register(conn.sock, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, conn.sock)
            while conn.running:
                for key, _ in sel.select(0.1):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    server = ConnectProxy(auth=("agent", SECRET))
    yield server
    server.close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)


def with_auth(proxy: ConnectProxy, password: str = SECRET) -> str:
    return proxy.url.replace("http://", f"http://agent:{password}@")


def test_an_explicit_proxy_carries_the_connection(sim: Simulator, proxy: ConnectProxy) -> None:
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url, proxy=with_auth(proxy), backoff=FAST) as ws:
        assert ws.wait_for_price("BTCUSDT", 10) > 0
        assert proxy.tunnels == 1
        assert proxy.requests[0].startswith(f"CONNECT 127.0.0.1:{sim.port} HTTP/1.1\r\n")
        assert SECRET not in repr(ws) and SECRET not in str(ws.health())


def test_the_environment_proxy_is_used_unless_no_proxy_exempts_the_host(
    sim: Simulator, proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", with_auth(proxy))
    monkeypatch.setenv("no_proxy", "example.invalid,.corp.example")
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST) as ws:
        ws.wait_for_price("BTCUSDT", 10)
    assert proxy.tunnels == 1
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")  # websocket-client's rules: CIDR networks too
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST) as ws:
        ws.wait_for_price("BTCUSDT", 10)
    monkeypatch.delenv("no_proxy")
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST, trust_env=False) as ws:
        ws.wait_for_price("BTCUSDT", 10)
    assert proxy.tunnels == 1  # exempted, then not trusted: both went direct


def test_wss_goes_through_the_tunnel_with_tls_end_to_end(
    proxy: ConnectProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    monkeypatch.setenv("HTTPS_PROXY", with_auth(proxy))  # upper case works too
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # not for wss://
    with NexgentSimulator(price_interval=0, ssl_context=server_context(ca, "127.0.0.1")) as nsim:
        agent = nsim.add_agent()
        with NexgentWS(
            api_url=nsim.url.replace("wss://", "https://"),
            token=nsim.issue_token(),
            agent_id=agent,
            ssl_context=client_context(ca),
            backoff=FAST,
        ) as ws:
            ws.wait_connected(10)
            assert ws.wait_for_positions(10) == []
    assert proxy.tunnels == 1


def test_a_refused_proxy_password_is_fatal_and_never_shown(
    sim: Simulator, proxy: ConnectProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ws = AgentExchangeWS(
        api_key="ak_test", base_url=sim.url, proxy=with_auth(proxy, "wrong-" + SECRET), backoff=FAST
    )
    try:
        with pytest.raises(AuthenticationError, match=r"proxy .* refused the credentials") as info:
            ws.wait_connected(10)
        assert ws.state is ConnectionState.FAILED
        assert len(proxy.requests) == 1  # not retried
        shown = [str(info.value), repr(ws), str(ws.health()), caplog.text]
        assert not any(SECRET in text for text in shown)
    finally:
        ws.close()


def test_a_proxy_that_refuses_the_tunnel_is_retried_and_said(sim: Simulator) -> None:
    refusing = ConnectProxy(status=502)
    try:
        with AgentExchangeWS(api_key="ak_test", base_url=sim.url, proxy=refusing.url, backoff=FAST) as ws:
            eventually(lambda: len(refusing.requests) >= 2, 10, "a retry")
            assert "refused the tunnel" in (ws.health().last_error or "")
            assert "HTTP 502" in (ws.health().last_error or "")
    finally:
        refusing.close()


def test_a_proxy_that_never_answers_costs_connect_timeout_only(sim: Simulator) -> None:
    silent = ConnectProxy(answer=False)
    try:
        ws = AgentExchangeWS(
            api_key="ak_test", base_url=sim.url, proxy=silent.url, backoff=FAST, connect_timeout=0.5
        )
        with ws:
            error = eventually(lambda: ws.health().last_error, 10, "an error")
            assert "did not open the tunnel within connect_timeout" in error
    finally:
        silent.close()


@pytest.mark.parametrize("bad", ["socks5://127.0.0.1:1080", "https://127.0.0.1:3128", "http://:3128"])
def test_proxies_that_cannot_work_are_refused_at_construction(bad: str) -> None:
    with pytest.raises(ValueError, match="proxy"):
        AgentExchangeWS(api_key="ak_test", base_url="ws://127.0.0.1:1", proxy=bad)


def test_an_unusable_environment_proxy_is_reported_not_crashed(
    sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "socks5://127.0.0.1:1080")
    with AgentExchangeWS(api_key="ak_test", base_url=sim.url, backoff=FAST) as ws:
        error = eventually(lambda: ws.health().last_error, 10, "an error")
        assert "proxy setting is unusable" in error and "socks5" in error
        assert ws.state in (ConnectionState.BACKOFF, ConnectionState.CONNECTING)
