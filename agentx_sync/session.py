"""One connection's protocol state, sans IO: bytes in, one :class:`Outcome` out.

The shape of wsproto's ``Connection``: the IO thread feeds :meth:`Session.receive`
what the socket gave and acts on the result; the session never touches a
socket, a thread or a clock (the caller passes the time in). It owns the frame
reader, decodes each message once, answers the server's pings (WebSocket ping
frames and the dialect's JSON pings), and says which messages were bad,
whether the read showed the server alive, and whether a close frame came.
``tests/test_session.py`` drives it with plain byte strings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from . import frames
from .dialects import Ping, Pong
from .errors import ProtocolError

__all__ = ["Outcome", "Session", "SessionDialect"]


class SessionDialect(Protocol):
    """What a session needs of a platform's dialect."""

    @property
    def pong_counts_as_liveness(self) -> bool: ...
    @property
    def records(self) -> frozenset[type]: ...
    def decode(self, text: str, now: float) -> Any: ...
    def pong(self, ping: Ping, now_iso: str) -> str: ...


class Outcome:
    """What one read brought, in arrival order.

    Attributes:
        events: decoded events for the client (records, and control events
            such as subscription answers).
        texts: the message text of each event, in step with ``events`` (what
            a shared feed relays to other processes).
        records_only: every message of the read was a well-formed record (the
            common case: the IO thread may apply it without looking further).
        replies: frames to send now, in order (pongs).
        bad: messages that could not be decoded, as errors to report.
        close: ``(code, reason)`` when the server sent a close frame; the
            events before it are in ``events``, and ``replies`` ends with the
            close frame that answers it.
        messages: text messages received (data, pings and bad ones alike).
        alive: the read shows the server alive (any message but a pong that
            does not count as liveness on this platform).
        ignored: messages of a type or channel the library does not know.
    """

    __slots__ = ("alive", "bad", "close", "events", "ignored", "messages", "records_only", "replies", "texts")

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.texts: list[str] = []
        self.records_only = True
        self.replies: list[bytes] = []
        self.bad: list[ProtocolError] = []
        self.close: tuple[int | None, str] | None = None
        self.messages = 0
        self.alive = False
        self.ignored = 0


class Session:
    """The protocol state of one WebSocket connection (a client's, so frames are masked).

    Args:
        dialect: the platform's decoder and pong.
        max_message_size: a larger message is a ProtocolError (close 1009).
        timestamp: the wall-clock time, ISO 8601, for the dialect's pong.
        mask: four random bytes per frame sent (RFC 6455 section 5.3).
    """

    def __init__(
        self,
        dialect: SessionDialect,
        max_message_size: int,
        timestamp: Callable[[], str],
        mask: Callable[[], bytes] = lambda: os.urandom(4),
    ) -> None:
        self.dialect = dialect
        self.reader = frames.FrameReader(max_message_size)
        self._timestamp = timestamp
        self._mask = mask
        self._decode = dialect.decode
        self._records = dialect.records
        self._pong_alive = dialect.pong_counts_as_liveness

    def receive(self, data: bytes, now: float) -> Outcome:
        """Feed what the socket gave; ``now`` stamps the records.

        Raises:
            ProtocolError: a frame the connection cannot survive (its
                ``close_code`` says which close frame to send).
        """
        out = Outcome()
        decode, records, events, texts = self._decode, self._records, out.events, out.texts
        for opcode, payload in self.reader.feed(data):
            if opcode != frames.TEXT:
                self._frame(out, opcode, payload)  # type: ignore[arg-type]
                if out.close is not None:
                    break
                continue
            out.messages += 1
            try:
                event = decode(payload, now)  # type: ignore[arg-type]
            except Exception as exc:  # a decoder bug must not end the connection either
                self._bad(out, exc)
                continue
            if type(event) in records:
                events.append(event)
                texts.append(payload)  # type: ignore[arg-type]
                out.alive = True
            else:
                self._control(out, event, payload)  # type: ignore[arg-type]
        return out

    def _control(self, out: Outcome, event: Any, text: str) -> None:
        """A text message that is not a record: a ping, a pong, a control event or nothing known."""
        out.records_only = False
        if type(event) is Pong:
            out.alive = out.alive or self._pong_alive
            return
        out.alive = True
        if type(event) is Ping:
            out.replies.append(self._text(self.dialect.pong(event, self._timestamp())))
        elif event is None:
            out.ignored += 1
        else:
            out.events.append(event)
            out.texts.append(text)

    def _frame(self, out: Outcome, opcode: int, payload: bytes) -> None:
        """A control or binary frame."""
        out.records_only = False
        if opcode == frames.PING:
            out.alive = True
            out.replies.append(frames.encode_frame(frames.PONG, payload, self._mask()))
        elif opcode == frames.PONG:
            out.alive = out.alive or self._pong_alive
        elif opcode == frames.CLOSE:
            code, reason = frames.parse_close(payload)
            out.close = (code, reason)
            out.replies.append(frames.encode_close(code or 1000, "", self._mask()))
        else:
            out.alive = True
            out.bad.append(ProtocolError("a binary frame, where only text is expected"))

    @staticmethod
    def _bad(out: Outcome, exc: Exception) -> None:
        out.records_only = False
        out.alive = True
        if isinstance(exc, ProtocolError):
            out.bad.append(exc)
        else:
            error = ProtocolError(f"a message the decoder failed on ({type(exc).__name__})")
            error.__cause__ = exc
            out.bad.append(error)

    def _text(self, text: str) -> bytes:
        return frames.encode_frame(frames.TEXT, text.encode(), self._mask())
