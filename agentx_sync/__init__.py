"""agentx_sync: a synchronous, threaded WebSocket client for AI-trading agents.

A background IO thread keeps the connection alive (pings, stale detection,
reconnects with backoff and jitter, re-subscription) and feeds a lock-protected
cache and a bounded event queue; callbacks run on a separate dispatcher thread.
"""

from __future__ import annotations

import logging

from .backoff import BackoffPolicy
from .client import AgentExchangeWS, NexgentWS, PreviousClientClosedWarning
from .errors import (
    AgentNotFoundError,
    AgentXError,
    AuthenticationError,
    CallbackError,
    ClientClosedError,
    ClientStateError,
    ConnectionLostError,
    ConnectionReplacedError,
    InvalidChannelError,
    OrderFailedError,
    ProtocolError,
    ServerError,
    ShareError,
    ShareRefusedError,
    StaleConnectionError,
    StoppedError,
    SubscriptionLimitError,
    TLSError,
    UnknownActionError,
)
from .models import (
    Candle,
    Connected,
    ConnectionState,
    Disconnected,
    ErrorEvent,
    Health,
    Order,
    OrderSide,
    OrderStatus,
    Portfolio,
    Position,
    PositionEvent,
    PositionEventType,
    PriceBatch,
    PriceUpdate,
    Ticker,
)

__all__ = [
    "AgentExchangeWS",
    "AgentNotFoundError",
    "AgentXError",
    "AuthenticationError",
    "BackoffPolicy",
    "CallbackError",
    "Candle",
    "ClientClosedError",
    "ClientStateError",
    "Connected",
    "ConnectionLostError",
    "ConnectionReplacedError",
    "ConnectionState",
    "Disconnected",
    "ErrorEvent",
    "Health",
    "InvalidChannelError",
    "NexgentWS",
    "Order",
    "OrderFailedError",
    "OrderSide",
    "OrderStatus",
    "Portfolio",
    "Position",
    "PositionEvent",
    "PositionEventType",
    "PreviousClientClosedWarning",
    "PriceBatch",
    "PriceUpdate",
    "ProtocolError",
    "ServerError",
    "ShareError",
    "ShareRefusedError",
    "StaleConnectionError",
    "StoppedError",
    "SubscriptionLimitError",
    "TLSError",
    "Ticker",
    "UnknownActionError",
]

__version__ = "0.1.0"

logging.getLogger("agentx_sync").addHandler(logging.NullHandler())
