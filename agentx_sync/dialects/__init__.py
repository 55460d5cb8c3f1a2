"""Sans-IO platform dialects: text in, typed events out; no sockets, no threads.

A dialect builds the connection URL, encodes what the client sends, decodes
what the server sends, and classifies handshake statuses and close codes.
The IO layer (``connection.py``) drives it.
"""

from __future__ import annotations

import enum
import json
import json.scanner
import os
from collections.abc import Callable
from typing import Any

import attrs

from ..errors import ProtocolError

__all__ = [
    "JSON_PARSER",
    "Decision",
    "ErrorMessage",
    "Ping",
    "Pong",
    "Subscribed",
    "Unsubscribed",
    "Verdict",
    "loads",
    "parse_json",
]


def _stdlib_loads() -> Callable[[str], Any]:
    # json.loads() minus its wrapper: the C scanner, plus the checks loads() makes.
    scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

    def parse(text: str) -> Any:
        try:
            value, end = scan(text, 0)
        except StopIteration:
            stripped = text.lstrip(" \t\n\r")
            if stripped == text:
                raise ValueError("not JSON") from None
            return parse(stripped)
        if end != len(text) and text[end:].strip():
            raise ValueError("extra data after JSON")
        return value

    return parse


def _choose_parser() -> tuple[str, Callable[[str], Any]]:
    """orjson when installed (the ``[fast]`` extra) unless AGENTX_SYNC_JSON=stdlib."""
    if os.environ.get("AGENTX_SYNC_JSON", "").lower() != "stdlib":
        try:
            import orjson
        except ImportError:
            pass
        else:
            return "orjson", orjson.loads
    return "stdlib", _stdlib_loads()


#: Which JSON parser decodes messages: "orjson" or "stdlib".
JSON_PARSER, parse_json = _choose_parser()


def loads(text: str) -> dict[str, Any]:
    """Parse one message into a JSON object, or raise ProtocolError."""
    try:
        msg = parse_json(text)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
        raise ProtocolError("a message that is not valid JSON", raw=text) from None
    if type(msg) is not dict:
        raise ProtocolError("a message that is not a JSON object", raw=text)
    return msg


class Verdict(enum.Enum):
    """A fact: what a failed handshake or a close means, as the platform's dialect reads it."""

    RECONNECT = "reconnect"  # a passing loss: nothing says the next attempt will fail
    AUTH_FAILED = "auth_failed"  # the credentials were refused
    FATAL = "fatal"  # the next attempt would fail the same way (e.g. a foreign agent)
    REPLACED = "replaced"  # another client took the connection over (Nexgent)


class Decision(enum.Enum):
    """What the client decides the IO thread does about a :class:`Verdict`."""

    BACK_OFF = "back_off"  # wait the backoff delay, then connect again
    RETRY_NOW = "retry_now"  # connect again at once (after a token refresh)
    STOP = "stop"  # end for good


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
