"""The exceptions agentx_sync raises, rooted at :class:`AgentXError`.

::

    AgentXError
    ├── StoppedError               the client has stopped for good: it will not reconnect
    │   ├── AuthenticationError        handshake refused (401/403, a proxy's 407): never retried
    │   ├── AgentNotFoundError         Nexgent close 1008: the agent is not yours
    │   ├── ConnectionReplacedError    Nexgent close 1000 "New connection established"
    │   ├── TLSError                   the server's certificate was refused: not retried
    │   └── ShareRefusedError          Redis refused the shared feed's login or certificate
    ├── ConnectionLostError        the connection dropped; the client reconnects
    │   └── StaleConnectionError   nothing heard for ``stale_timeout`` seconds
    ├── ShareError                 Redis, which shares a feed between processes, failed
    │   └── ShareRefusedError          (also a StoppedError, above)
    ├── ProtocolError              a frame or message the library cannot accept
    ├── ServerError                the server sent an ``error`` message
    │   ├── InvalidChannelError        code INVALID_CHANNEL
    │   ├── SubscriptionLimitError     code SUBSCRIPTION_LIMIT
    │   └── UnknownActionError         code UNKNOWN_ACTION
    ├── CallbackError              a user callback raised (the original is ``__cause__``)
    ├── OrderFailedError           ``wait_for_order`` saw the order end in another status
    ├── ClientClosedError          the client was closed while a caller waited
    └── ClientStateError           start() while a previous run's thread is alive (also a RuntimeError)

Misuse (a bad interval, a negative timeout) raises ``ValueError``/``TypeError``;
timeouts raise the built-in ``TimeoutError``. No websocket-client exception
crosses the public API. No message here ever contains an api key or a token.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentNotFoundError",
    "AgentXError",
    "AuthenticationError",
    "CallbackError",
    "ClientClosedError",
    "ClientStateError",
    "ConnectionLostError",
    "ConnectionReplacedError",
    "InvalidChannelError",
    "OrderFailedError",
    "ProtocolError",
    "ServerError",
    "ShareError",
    "ShareRefusedError",
    "StaleConnectionError",
    "StoppedError",
    "SubscriptionLimitError",
    "TLSError",
    "UnknownActionError",
    "safe_str",
    "server_error",
]


class AgentXError(Exception):
    """Base of every error agentx_sync raises or reports."""


class StoppedError(AgentXError):
    """The client has stopped for good and will not reconnect (``health().state``
    is ``failed`` or ``replaced``): ``except StoppedError`` catches every such end."""


class AuthenticationError(StoppedError):
    """The server refused the credentials at the handshake (HTTP 401/403), or a proxy its own (407)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AgentNotFoundError(StoppedError):
    """Nexgent closed with 1008 "Agent not found": the agent is not the token owner's."""


class ConnectionReplacedError(StoppedError):
    """Another client connected for the same Nexgent agent and replaced this one."""


class ConnectionLostError(AgentXError):
    """The connection dropped; the client reconnects by itself."""

    def __init__(self, message: str, *, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


class StaleConnectionError(ConnectionLostError):
    """Nothing arrived from the server for ``stale_timeout`` seconds."""


class TLSError(StoppedError):
    """TLS failed: an untrusted certificate or a wrong host name. Not retried."""


class ShareError(AgentXError):
    """Redis, which shares one connection between processes (``share=``), failed.

    Unreachable at start: the client stops (``wait_connected`` raises it).
    Later outages are reported through ``on_error`` and ``health()``; the
    client goes on and resyncs when Redis is back. The message never holds a
    password.
    """


class ShareRefusedError(ShareError, StoppedError):
    """Redis refused the login (a wrong password or user) or its TLS certificate: not retried."""


class ProtocolError(AgentXError):
    """A frame or message that the library cannot accept.

    Attributes:
        raw: up to 200 characters of the offending text, for diagnosis.
        close_code: set when the WebSocket must be failed (RFC 6455 codes).
    """

    def __init__(self, message: str, *, raw: str = "", close_code: int | None = None) -> None:
        super().__init__(message)
        self.raw = raw[:200]
        self.close_code = close_code


class ServerError(AgentXError):
    """The server answered with an ``error`` message.

    Attributes:
        code: the server's code (``INVALID_CHANNEL``...) or ``None`` (Nexgent).
        server_message: the server's text.
        request: the request this error answered, when the client can tell.
    """

    def __init__(
        self,
        server_message: str,
        *,
        code: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> None:
        text = f"{code}: {server_message}" if code else server_message
        if request is not None:
            text += f" (in answer to {request})"
        super().__init__(text)
        self.code = code
        self.server_message = server_message
        self.request = request


class InvalidChannelError(ServerError):
    """The server rejected a subscription's channel, symbol or interval."""


class SubscriptionLimitError(ServerError):
    """The server's limit of subscriptions per connection was reached."""


class UnknownActionError(ServerError):
    """The server did not understand a client message's action."""


class CallbackError(AgentXError):
    """A user callback raised; the original exception is ``__cause__``."""

    def __init__(self, message: str, *, callback: str) -> None:
        super().__init__(message)
        self.callback = callback


class OrderFailedError(AgentXError):
    """An awaited order reached a final status other than the one waited for."""

    def __init__(self, message: str, *, order: Any) -> None:
        super().__init__(message)
        self.order = order


class ClientClosedError(AgentXError):
    """The client was closed (or failed for good) while a caller was waiting."""


class ClientStateError(AgentXError, RuntimeError):
    """The client cannot do that in its current state (e.g. start() before the last close() completed)."""


_BY_CODE: dict[str, type[ServerError]] = {
    "INVALID_CHANNEL": InvalidChannelError,
    "SUBSCRIPTION_LIMIT": SubscriptionLimitError,
    "UNKNOWN_ACTION": UnknownActionError,
}


def server_error(message: str, code: str | None = None, request: dict[str, Any] | None = None) -> ServerError:
    """Build the most specific :class:`ServerError` for a server error code."""
    return _BY_CODE.get(code or "", ServerError)(message, code=code, request=request)


def safe_str(exc: BaseException, limit: int = 300) -> str:
    """``str(exc)``, shortened, or a placeholder when its ``__str__`` raises."""
    try:
        text = str(exc)
    except BaseException:
        return f"<{type(exc).__name__} whose str() raised>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
