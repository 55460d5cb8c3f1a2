"""Sans-IO platform dialects: text in, typed events out; no sockets, no threads.

A dialect builds the connection URL, encodes what the client sends, decodes
what the server sends, and classifies handshake statuses and close codes.
The IO layer (``connection.py``) drives it.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from ..errors import ProtocolError

__all__ = ["ErrorMessage", "Ping", "Pong", "Subscribed", "Unsubscribed", "Verdict", "loads"]


def loads(text: str) -> dict[str, Any]:
    """Parse one message into a JSON object, or raise ProtocolError."""
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("a message that is not valid JSON", raw=text) from None
    if type(msg) is not dict:
        raise ProtocolError("a message that is not a JSON object", raw=text)
    return msg


class Verdict(enum.Enum):
    """What the IO layer does after a failed handshake or a close."""

    RECONNECT = "reconnect"  # back off, then connect again
    AUTH_FAILED = "auth_failed"  # credentials refused (maybe refresh and retry)
    FATAL = "fatal"  # stop for good
    REPLACED = "replaced"  # another client took over (Nexgent)
    RETRY_NOW = "retry_now"  # connect again at once (after a token refresh)


@attrs.frozen
class Ping:
    """The server's application-level ping; the IO thread answers it."""

    timestamp: str | None = None


@attrs.frozen
class Pong:
    """The server's answer to a client ping (not a sign of server liveness)."""


@attrs.frozen
class Subscribed:
    channel: str


@attrs.frozen
class Unsubscribed:
    channel: str


@attrs.frozen
class ErrorMessage:
    """The server's ``error`` message, before the client attributes it."""

    message: str
    code: str | None = None
