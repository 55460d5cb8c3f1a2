"""The sans-IO frame reader: fragmentation, control frames, splits, batches, bad frames."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentx_sync import frames
from agentx_sync.errors import ProtocolError


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = False) -> bytes:
    """A server frame (unmasked unless asked)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, mask | n))
    elif n < 65536:
        head = bytes((b0, mask | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mask | 127)) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


def test_one_text_frame() -> None:
    assert frames.FrameReader().feed(frame(frames.TEXT, b'{"a":1}')) == [(frames.TEXT, '{"a":1}')]


def test_many_frames_in_one_read() -> None:
    data = b"".join(frame(frames.TEXT, f"m{i}".encode()) for i in range(500))
    out = frames.FrameReader().feed(data)
    assert [p for _, p in out] == [f"m{i}" for i in range(500)]


@pytest.mark.parametrize("size", [10, 200, 70_000])
def test_frames_split_across_reads_at_every_kind_of_boundary(size: int) -> None:
    payload = ("x" * size).encode()
    data = frame(frames.TEXT, payload) + frame(frames.TEXT, b"after")
    for cut in sorted({1, 2, 3, 4, 9, 10, len(data) // 2, len(data) - 6, len(data) - 1}):
        reader = frames.FrameReader()
        first = reader.feed(data[:cut])
        second = reader.feed(data[cut:])
        assert [p for _, p in first + second] == [payload.decode(), "after"], cut
        assert reader.buffered == 0


def test_byte_by_byte() -> None:
    reader = frames.FrameReader()
    data = frame(frames.TEXT, "héllo".encode()) + frame(frames.PING, b"p")
    out = [m for b in data for m in reader.feed(bytes([b]))]
    assert out == [(frames.TEXT, "héllo"), (frames.PING, b"p")]


def test_fragmented_message_with_control_frames_between() -> None:
    data = (
        frame(frames.TEXT, b'{"a":', fin=False)
        + frame(frames.PING, b"1")
        + frame(0, b'"b', fin=False)
        + frame(frames.PONG, b"")
        + frame(0, b'c"}')
    )
    out = frames.FrameReader().feed(data)
    assert out == [(frames.PING, b"1"), (frames.PONG, b""), (frames.TEXT, '{"a":"bc"}')]


def test_fragmented_utf8_split_inside_a_character() -> None:
    encoded = "€uro".encode()
    data = frame(frames.TEXT, encoded[:1], fin=False) + frame(0, encoded[1:])
    assert frames.FrameReader().feed(data) == [(frames.TEXT, "€uro")]


def test_binary_message() -> None:
    assert frames.FrameReader().feed(frame(frames.BINARY, b"\x00\x01")) == [(frames.BINARY, b"\x00\x01")]


def test_close_frame_and_parse() -> None:
    out = frames.FrameReader().feed(frame(frames.CLOSE, (1000).to_bytes(2, "big") + b"Server shutdown"))
    assert out[0][0] == frames.CLOSE
    assert frames.parse_close(out[0][1]) == (1000, "Server shutdown")  # type: ignore[arg-type]
    assert frames.parse_close(b"") == (None, "")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(frames.TEXT, b"\xff\xfe"), 1007),
        (frame(frames.TEXT, b"x", rsv=0x40), 1002),
        (frame(frames.TEXT, b"x", masked=True), 1002),
        (frame(0, b"x"), 1002),
        (frame(frames.TEXT, b"a", fin=False) + frame(frames.TEXT, b"b"), 1002),
        (frame(frames.PING, b"x" * 126), 1002),
        (frame(frames.PING, b"x", fin=False), 1002),
        (frame(0x3, b""), 1002),
    ],
)
def test_protocol_violations_raise_with_close_code(data: bytes, code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        frames.FrameReader().feed(data)
    assert info.value.close_code == code


def test_oversized_frame_is_refused_from_its_header() -> None:
    reader = frames.FrameReader(max_size=1000)
    head = frame(frames.TEXT, b"x" * 5000)[:4]  # only the header has arrived
    with pytest.raises(ProtocolError) as info:
        reader.feed(head)
    assert info.value.close_code == 1009


@pytest.mark.parametrize("size", [200, 5000])
def test_oversized_frame_is_refused_when_it_is_all_there(size: int) -> None:
    with pytest.raises(ProtocolError) as info:
        frames.FrameReader(max_size=100).feed(frame(frames.TEXT, b"x" * size) + frame(frames.TEXT, b"ok"))
    assert info.value.close_code == 1009


def test_oversized_fragmented_message_is_refused() -> None:
    reader = frames.FrameReader(max_size=1000)
    with pytest.raises(ProtocolError) as info:
        reader.feed(frame(frames.TEXT, b"x" * 600, fin=False) + frame(0, b"x" * 600, fin=False))
    assert info.value.close_code == 1009


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536])
def test_encode_frame_masks_and_round_trips(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    mask = b"\x12\x34\x56\x78"
    data = frames.encode_frame(frames.TEXT, payload, mask)
    assert data[0] == 0x81 and data[1] & 0x80
    head = 2 + (2 if 126 <= size < 65536 else 8 if size >= 65536 else 0)
    assert data[head : head + 4] == mask
    body = data[head + 4 :]
    assert bytes(b ^ mask[i % 4] for i, b in enumerate(body)) == payload


# A message: text or binary, whole or in fragments with control frames between.
_messages = st.lists(
    st.tuples(
        st.one_of(
            st.tuples(st.text(max_size=300).map(str.encode), st.just(True)),
            st.tuples(st.binary(max_size=70_000), st.just(False)),
        ),
        st.integers(1, 4),  # fragments
        st.sampled_from([b"", b"ping", b"x" * 125]),  # a ping between fragments
    ),
    max_size=12,
)


@given(_messages, st.lists(st.integers(0, 2**20), max_size=8))
def test_any_stream_cut_anywhere_gives_the_messages_back(
    messages: list[tuple[tuple[bytes, bool], int, bytes]], cuts: list[int]
) -> None:
    data = b""
    expected: list[frames.Message] = []
    for (payload, text), pieces, ping in messages:
        opcode = frames.TEXT if text else frames.BINARY
        size = -(-len(payload) // pieces) or 1
        parts = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        for i, part in enumerate(parts):
            data += frame(opcode if i == 0 else 0, part, fin=i == len(parts) - 1)
            if i < len(parts) - 1:
                data += frame(frames.PING, ping)
                expected.append((frames.PING, ping))
        expected.append((frames.TEXT, payload.decode()) if text else (frames.BINARY, payload))
    reader = frames.FrameReader()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = [m for a, b in itertools.pairwise(bounds) for m in reader.feed(data[a:b])]
    assert out == expected
    assert reader.buffered == 0
