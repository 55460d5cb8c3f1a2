"""The pure per-connection Session, driven with plain byte strings.

These are the interleavings that only a simulator could produce before the
session was split out: a ping between data frames, a close after data, a
binary frame or bad JSON in the middle of a read, and pong liveness per platform.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentx_sync import frames
from agentx_sync.dialects.agentexchange import AgentExchangeDialect
from agentx_sync.dialects.nexgent import NexgentDialect
from agentx_sync.errors import ProtocolError
from agentx_sync.models import PriceBatch, Ticker
from agentx_sync.session import Session

MASK = b"\x01\x02\x03\x04"
STAMP = "2026-12-02T12:00:00.000Z"


def frame(opcode: int, payload: bytes | str) -> bytes:
    """An unmasked server frame."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    head = bytes((0x80 | opcode, n)) if n < 126 else bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    return head + data


def text(message: dict[str, Any]) -> bytes:
    return frame(frames.TEXT, json.dumps(message))


def unmask(reply: bytes) -> tuple[int, bytes]:
    """A client frame's opcode and payload (the session masks what it sends)."""
    assert reply[1] & 0x80, "client frames must be masked"
    n = reply[1] & 0x7F
    key, body = reply[2:6], reply[6 : 6 + n]
    return reply[0] & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(body))


def ticker(price: str) -> bytes:
    return text({"channel": "ticker", "symbol": "BTCUSDT", "data": {"price": price, "quantity": "1"}})


def exchange() -> Session:
    return Session(AgentExchangeDialect("ws://127.0.0.1:1", "ak_test"), 1 << 20, lambda: STAMP, lambda: MASK)


def nexgent() -> Session:
    dialect = NexgentDialect("http://127.0.0.1:1", "jwt", "agent-1")
    return Session(dialect, 1 << 20, lambda: STAMP, lambda: MASK)


def test_a_read_of_records_only() -> None:
    out = exchange().receive(ticker("1") + ticker("2"), 5.0)
    assert [e.price for e in out.events] == [1, 2] and all(type(e) is Ticker for e in out.events)
    assert out.records_only and out.alive and out.messages == 2
    assert not out.replies and not out.bad and out.close is None
    assert out.events[0].received_at == 5.0


def test_a_ping_frame_between_data_frames_is_answered_in_place() -> None:
    out = exchange().receive(ticker("1") + frame(frames.PING, b"hi") + ticker("2"), 1.0)
    assert [e.price for e in out.events] == [1, 2]
    assert not out.records_only and out.alive and out.messages == 2
    assert [unmask(r) for r in out.replies] == [(frames.PONG, b"hi")]


def test_json_pings_get_each_platforms_pong() -> None:
    out = exchange().receive(ticker("1") + text({"type": "ping"}) + ticker("2"), 1.0)
    assert len(out.events) == 2 and out.messages == 3
    assert [unmask(r) for r in out.replies] == [(frames.TEXT, b'{"action":"pong"}')]
    out = nexgent().receive(text({"type": "ping", "timestamp": "t"}), 1.0)
    assert out.alive and not out.events
    opcode, payload = unmask(out.replies[0])
    assert opcode == frames.TEXT and json.loads(payload) == {"type": "pong", "timestamp": STAMP}


def test_a_close_after_data_keeps_the_data_and_answers_the_close() -> None:
    close = frame(frames.CLOSE, (1001).to_bytes(2, "big") + b"going away")
    out = exchange().receive(ticker("1") + ticker("2") + close + ticker("3"), 1.0)
    assert [e.price for e in out.events] == [1, 2]  # nothing after the close
    assert out.close == (1001, "going away") and out.messages == 2
    assert unmask(out.replies[-1]) == (frames.CLOSE, (1001).to_bytes(2, "big"))


@pytest.mark.parametrize(
    "intruder",
    [frame(frames.BINARY, b"\x00\x01"), frame(frames.TEXT, "{not json"), text({"channel": "ticker"})],
    ids=["binary frame", "bad JSON", "a ticker without data"],
)
def test_a_bad_message_in_the_middle_of_a_read_costs_only_itself(intruder: bytes) -> None:
    out = exchange().receive(ticker("1") + intruder + ticker("2"), 1.0)
    assert [e.price for e in out.events] == [1, 2]
    assert len(out.bad) == 1 and isinstance(out.bad[0], ProtocolError)
    assert not out.records_only and out.alive and out.close is None


def test_pong_liveness_per_platform() -> None:
    # AgentExchange: every message shows the server alive; Nexgent: a pong
    # answers the client's ping and says nothing of the server's own pings.
    assert exchange().receive(frame(frames.PONG, b""), 1.0).alive
    assert not nexgent().receive(frame(frames.PONG, b""), 1.0).alive
    assert not nexgent().receive(text({"type": "pong"}), 1.0).alive
    batch = {"type": "price_update_batch", "data": {"updates": [], "timestamp": STAMP}}
    out = nexgent().receive(text({"type": "pong"}) + text(batch), 1.0)
    assert out.alive and type(out.events[0]) is PriceBatch


def test_a_message_split_across_reads() -> None:
    session = exchange()
    whole = ticker("7")
    first = session.receive(whole[:5], 1.0)
    assert not first.events and not first.alive and first.messages == 0
    second = session.receive(whole[5:], 2.0)
    assert [e.price for e in second.events] == [7] and second.events[0].received_at == 2.0


def test_unknown_messages_are_counted_as_ignored() -> None:
    out = exchange().receive(text({"channel": "news", "data": {}}) + ticker("1"), 1.0)
    assert out.ignored == 1 and len(out.events) == 1 and not out.records_only


def test_a_decoder_bug_is_a_bad_message_with_its_cause() -> None:
    class Broken(AgentExchangeDialect):
        def decode(self, text: str, now: float) -> Any:
            raise KeyError("bug")

    session = Session(Broken("ws://127.0.0.1:1", "ak_test"), 1 << 20, lambda: STAMP, lambda: MASK)
    out = session.receive(ticker("1"), 1.0)
    assert "decoder failed on (KeyError)" in str(out.bad[0]) and isinstance(out.bad[0].__cause__, KeyError)


def test_a_frame_the_connection_cannot_survive_raises_with_its_close_code() -> None:
    with pytest.raises(ProtocolError) as info:
        exchange().receive(bytes((0x83, 0)), 1.0)  # a reserved opcode
    assert info.value.close_code == 1002
