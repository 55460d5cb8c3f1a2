"""A client's connection options, in one record, validated once (pure).

``AgentExchangeWS`` and ``NexgentWS`` take these as keyword arguments (their
docstrings say what each does) and build one :class:`Options`; the client and
its connection read them from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .backoff import BackoffPolicy

if TYPE_CHECKING:
    import ssl

__all__ = ["Options"]


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attribute.name} must be > 0, not {value!r}")


def _at_least_one(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise ValueError(f"{attribute.name} must be an integer >= 1, not {value!r}")


@attrs.frozen(kw_only=True)
class Options:
    stale_timeout: float = attrs.field(default=40.0, validator=_positive)
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    backoff: BackoffPolicy | None = None
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, validator=_at_least_one)
    ssl_context: ssl.SSLContext | None = None
    event_queue_size: int = attrs.field(default=10_000, validator=_at_least_one)
    callback_queue_size: int = attrs.field(default=100_000, validator=_at_least_one)
    close_previous: bool | None = None
    coalesce: float = 0.0
    proxy: str | None = attrs.field(default=None, repr=False)  # may hold a password: never shown
    trust_env: bool = True
    #: A Redis URL or a redis-py client: share one connection between processes.
    share: Any = attrs.field(default=None, repr=False)  # a URL may hold a password: never shown

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.coalesce <= min(1.0, self.stale_timeout / 4):
            raise ValueError("coalesce must be between 0 and 1 s (and under a quarter of stale_timeout)")
        if self.proxy:
            from .connection import Proxy

            Proxy.from_url(self.proxy)  # a bad proxy URL fails here, not at every attempt
        if isinstance(self.share, str) and not self.share.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("share must be a redis://, rediss:// or unix:// URL, or a redis-py client")
