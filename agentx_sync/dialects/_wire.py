"""Converters from wire values to the library's types, in one place.

Each raises :class:`ProtocolError` naming the field, never anything else.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from ..errors import ProtocolError
from ..numbers import MAX_CHARS, MAX_EXPONENT

__all__ = [
    "Endpoint",
    "as_bool",
    "as_dec",
    "as_dict",
    "as_key",
    "as_opt_dec",
    "as_opt_price",
    "as_opt_str",
    "as_opt_ts",
    "as_price",
    "as_str",
    "as_ts",
    "basic_auth",
    "userinfo_secrets",
    "websocket_endpoint",
]

_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


class Endpoint(NamedTuple):
    """A WebSocket endpoint, split so that credentials in it never leak."""

    url: str  #: ``ws(s)://host[:port]/path``, without userinfo
    safe: str  #: the same, for logs and reprs (userinfo, if any, shown as ``***@``)
    userinfo: str | None  #: ``user:password`` from the URL: a secret, sent as HTTP Basic auth


def websocket_endpoint(url: str, path: str, name: str) -> Endpoint:
    """``url`` as ``ws(s)://host[/prefix]{path}``: http(s) mapped to ws(s), no query.

    Raises:
        ValueError: ``url`` is not an http(s) or ws(s) URL, or its host or port
            is malformed (``name`` says which argument). The message never
            repeats a password.
    """
    parts = urlsplit(url.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    userinfo, _, hostport = parts.netloc.rpartition("@")
    shown = f"{parts.scheme}://{'***@' if userinfo else ''}{hostport}{parts.path}"
    if scheme is None or not hostport:
        raise ValueError(f"{name} must be a ws://, wss://, http:// or https:// URL, not {shown!r}")
    host = parts.hostname or ""
    if not host or (":" in host and not hostport.startswith("[")):
        raise ValueError(
            f"{name} has no valid host: {shown!r} (write an IPv6 address in brackets: ws://[::1]:8000)"
        )
    try:
        parts.port  # noqa: B018 - the check is the point: urlsplit validates lazily
    except ValueError:
        raise ValueError(f"{name} has an invalid port (0-65535 expected): {shown!r}") from None
    prefix = parts.path.rstrip("/")
    if not prefix.endswith(path):
        prefix += path
    return Endpoint(
        urlunsplit((scheme, hostport, prefix, "", "")),
        urlunsplit((scheme, f"***@{hostport}" if userinfo else hostport, prefix, "", "")),
        unquote(userinfo) if userinfo else None,
    )


def basic_auth(endpoint: Endpoint) -> list[str]:
    """The ``Authorization`` header for a URL's userinfo, or none."""
    if endpoint.userinfo is None:
        return []
    return [f"Authorization: Basic {base64.b64encode(endpoint.userinfo.encode()).decode()}"]


def userinfo_secrets(endpoint: Endpoint) -> tuple[str, ...]:
    info = endpoint.userinfo
    if info is None:
        return ()
    _user, _, password = info.partition(":")
    return tuple(s for s in (info, password, quote(password, safe="")) if s)


# A wire decimal starts and ends with these: Decimal() also takes "Infinity",
# "NaN", surrounding spaces and underscores, and isascii() refuses other scripts.
NUMERAL_FIRST = frozenset("0123456789.+-")
NUMERAL_LAST = frozenset("0123456789.")


def as_dec(value: Any, name: str) -> Decimal:
    """A bounded, finite Decimal from a decimal string (or, tolerated, a JSON number).

    Accepted: ASCII digits with an optional sign, point and exponent, at most
    ``MAX_CHARS`` characters, magnitude zero or within ``1e-MAX_EXPONENT ..
    1e+MAX_EXPONENT``. Refused: NaN, infinities, underscores, spaces, other
    scripts' digits, and numbers whose size alone could exhaust memory or
    overflow arithmetic (``"1e999999"``). The checks are ordered cheapest
    first: this runs for every price on the hot path.
    """
    kind = type(value)
    if kind is str:
        text = value
    elif kind is float or kind is int:
        text = repr(value)  # an int's repr is bounded: JSON parsers refuse > 4300 digits
    else:
        raise ProtocolError(f"field {name!r} is {kind.__name__}, not a decimal")
    if (
        not text
        or len(text) > MAX_CHARS
        or not text.isascii()
        or "_" in text
        or text[0] not in NUMERAL_FIRST
        or text[-1] not in NUMERAL_LAST
    ):
        raise ProtocolError(f"field {name!r} is not a plain decimal: {text[:40]!r}")
    try:
        result = Decimal(text)
    except InvalidOperation:
        raise ProtocolError(f"field {name!r} is not a decimal: {text[:40]!r}") from None
    if not -MAX_EXPONENT <= result.adjusted() <= MAX_EXPONENT and not (
        result.is_finite() and result.is_zero()
    ):
        raise ProtocolError(f"field {name!r} is out of range: {text[:40]!r}")
    return result


def as_opt_dec(value: Any, name: str) -> Decimal | None:
    return None if value is None else as_dec(value, name)


def as_price(value: Any, name: str) -> Decimal:
    """A price: a bounded decimal (see :func:`as_dec`) greater than zero."""
    result = as_dec(value, name)
    if result <= 0:
        raise ProtocolError(f"field {name!r} is not a price (not > 0): {str(value)[:40]!r}")
    return result


def as_opt_price(value: Any, name: str) -> Decimal | None:
    return None if value is None else as_price(value, name)


def as_ts(value: Any, name: str) -> datetime:
    """An aware UTC datetime from an ISO-8601 string (``Z`` or an offset)."""
    if type(value) is not str:
        raise ProtocolError(f"field {name!r} is {type(value).__name__}, not a timestamp")
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        # An offset can carry a valid local time past year 9999 in UTC.
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ProtocolError(f"field {name!r} is not a valid ISO-8601 timestamp: {value[:40]!r}") from None


def as_opt_ts(value: Any, name: str) -> datetime | None:
    return None if value is None else as_ts(value, name)


#: The longest wire text kept (names, ids, reasons); a symbol or token address
#: is at most MAX_KEY characters. Longer ones are refused: the cache holds them.
MAX_TEXT = 1024
MAX_KEY = 128


def as_str(value: Any, name: str, limit: int = MAX_TEXT) -> str:
    if type(value) is not str or not value:
        raise ProtocolError(f"field {name!r} is missing or not a string")
    if len(value) > limit:
        raise ProtocolError(f"field {name!r} is longer than {limit} characters")
    return value


def as_key(value: Any, name: str) -> str:
    """A symbol, token address or id: a non-empty string of at most ``MAX_KEY`` characters."""
    return as_str(value, name, MAX_KEY)


def as_opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        raise ProtocolError(f"field {name!r} is {type(value).__name__}, not a string")
    if len(value) > MAX_TEXT:
        raise ProtocolError(f"field {name!r} is longer than {MAX_TEXT} characters")
    return value


def as_bool(value: Any, name: str) -> bool | None:
    if value is None or type(value) is bool:
        return value
    raise ProtocolError(f"field {name!r} is {type(value).__name__}, not a boolean")


def as_dict(value: Any, name: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ProtocolError(f"{name!r} is {type(value).__name__}, not an object")
    return value
