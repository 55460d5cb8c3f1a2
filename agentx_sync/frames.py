"""Sans-IO RFC 6455 framing for the client side: bytes in, messages out.

websocket-client performs the HTTP upgrade; after it, the IO thread reads the
socket in large chunks and :class:`FrameReader` cuts every complete frame out
of each chunk. One ``recv`` then yields hundreds of messages instead of two
system calls per message. Partial frames wait in the buffer for the next chunk.
"""

from __future__ import annotations

from typing import Final

from .errors import ProtocolError

__all__ = [
    "BINARY",
    "CLOSE",
    "PING",
    "PONG",
    "TEXT",
    "FrameReader",
    "encode_close",
    "encode_frame",
    "parse_close",
]

CONT: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

_DATA_OPCODES = frozenset({TEXT, BINARY})
_CONTROL_OPCODES = frozenset({CLOSE, PING, PONG})

#: One decoded message: ``(TEXT, str)``, ``(BINARY, bytes)`` or a control frame
#: ``(PING | PONG | CLOSE, bytes)``.
Message = tuple[int, "str | bytes"]


class FrameReader:
    """Turns a stream of server bytes into whole messages.

    Args:
        max_size: the largest message accepted, in bytes; a larger one raises
            :class:`ProtocolError` with close code 1009 before it is buffered.
    """

    __slots__ = ("_buf", "_frag_opcode", "_frag_parts", "_frag_size", "max_size")

    def __init__(self, max_size: int = 4 * 1024 * 1024) -> None:
        self.max_size = max_size
        self._buf = b""
        self._frag_opcode: int | None = None
        self._frag_parts: list[bytes] = []
        self._frag_size = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buf) + self._frag_size

    def feed(self, data: bytes) -> list[Message]:
        """Add bytes from the socket; return every message now complete.

        Raises:
            ProtocolError: the stream breaks RFC 6455 (``close_code`` says how
                to fail the connection). The reader must not be fed again.
        """
        if self._buf:
            data = self._buf + data
        out: list[Message] = []
        try:
            pos = self._cut(data, out)
        except UnicodeDecodeError as exc:
            raise ProtocolError(f"invalid UTF-8 in a text message: {exc.reason}", close_code=1007) from None
        self._buf = data[pos:]
        return out

    def _cut(self, data: bytes, out: list[Message]) -> int:  # noqa: C901, PLR0912, PLR0915 - the frame reader's measured fast path for whole text frames (README, Performance)
        """Append every complete frame's message to ``out``; return where the rest starts."""
        append = out.append
        pos = 0
        end = len(data)
        max_size = self.max_size
        fragmenting = self._frag_opcode is not None
        while end - pos >= 2:
            b0 = data[pos]
            b1 = data[pos + 1]
            if b0 == 0x81 and not fragmenting:
                # The common frame first: a whole text message, up to 64 KiB,
                # that breaks no rule. The C codec validates its UTF-8;
                # feed() turns its error into 1007.
                if b1 < 126:
                    start = pos + 2
                    stop = start + b1
                elif b1 == 126 and end - pos >= 4:
                    start = pos + 4
                    stop = start + (data[pos + 2] << 8 | data[pos + 3])
                else:
                    stop = 0  # longer, masked, or its length is still on its way
                if 0 < stop <= end and stop - start <= max_size:
                    append((TEXT, data[start:stop].decode()))
                    pos = stop
                    continue
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = 10
            if b0 & 0x70:
                raise ProtocolError("reserved bits set in a frame", close_code=1002)
            if b1 & 0x80:
                raise ProtocolError("the server masked a frame", close_code=1002)
            if length > max_size:
                raise ProtocolError(
                    f"a {length}-byte frame exceeds max_message_size {max_size}", close_code=1009
                )
            stop = pos + head + length
            if stop > end:
                break
            payload = data[pos + head : stop]
            pos = stop
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode == TEXT and fin and not fragmenting:
                append((TEXT, payload.decode()))
            elif opcode in _CONTROL_OPCODES:
                if not fin or length > 125:
                    raise ProtocolError("a fragmented or oversized control frame", close_code=1002)
                append((opcode, payload))
            elif opcode in _DATA_OPCODES or opcode == CONT:
                message = self._fragment(opcode, payload, bool(fin))
                fragmenting = self._frag_opcode is not None
                if message is not None:
                    append(message)
            else:
                raise ProtocolError(f"unknown opcode {opcode:#x}", close_code=1002)
        return pos

    def _fragment(self, opcode: int, payload: bytes, fin: bool) -> Message | None:
        if opcode == CONT:
            if self._frag_opcode is None:
                raise ProtocolError("a continuation frame with no message to continue", close_code=1002)
        elif self._frag_opcode is not None:
            raise ProtocolError("a new message began inside a fragmented one", close_code=1002)
        else:
            self._frag_opcode = opcode
        self._frag_size += len(payload)
        if self._frag_size > self.max_size:
            raise ProtocolError(
                f"a fragmented message exceeds max_message_size {self.max_size}", close_code=1009
            )
        self._frag_parts.append(payload)
        if not fin:
            return None
        whole = b"".join(self._frag_parts)
        first = self._frag_opcode
        self._frag_opcode = None
        self._frag_parts = []
        self._frag_size = 0
        return (TEXT, _utf8(whole)) if first == TEXT else (BINARY, whole)


def _utf8(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in a text message: {exc.reason}", close_code=1007) from None


def encode_frame(opcode: int, payload: bytes, mask: bytes) -> bytes:
    """One final, masked client frame. ``mask`` is 4 random bytes, passed in."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    if n:
        key = (mask * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return head + mask + payload


def encode_close(code: int, reason: str, mask: bytes) -> bytes:
    """A masked close frame with a status code and a (truncated) reason."""
    return encode_frame(CLOSE, code.to_bytes(2, "big") + reason.encode()[:120], mask)


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """The (code, reason) of a close frame's payload; (None, "") when empty."""
    if len(payload) < 2:
        return None, ""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
