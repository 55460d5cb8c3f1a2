"""Reconnect delays: exponential, capped, jittered, reset after a stable link.

Pure: the caller passes the clock reading and a random number in [0, 1).
"""

from __future__ import annotations

import attrs

__all__ = ["Backoff", "BackoffPolicy"]


@attrs.frozen
class BackoffPolicy:
    """How long to wait before reconnecting.

    Attributes:
        initial: the first delay, in seconds.
        maximum: the cap on any delay.
        factor: growth per failed attempt.
        jitter: each delay is scaled by a random factor in
            ``[1 - jitter, 1 + jitter]`` (then capped), so that many clients
            dropped together do not come back in lock-step.
        stable_after: a connection that stayed up this long resets the delay
            to ``initial``.
    """

    initial: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    maximum: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    jitter: float = attrs.field(default=0.2, validator=[attrs.validators.ge(0), attrs.validators.lt(1)])
    stable_after: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))


class Backoff:
    """The running state of one client's reconnect attempts."""

    __slots__ = ("_connected_at", "attempts", "policy")

    def __init__(self, policy: BackoffPolicy | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self.attempts = 0
        self._connected_at: float | None = None

    def next_delay(self, rand: float) -> float:
        """The delay before the next attempt; counts the attempt."""
        p = self.policy
        base = min(p.maximum, p.initial * p.factor ** min(self.attempts, 64))
        self.attempts += 1
        return min(p.maximum, base * (1.0 + p.jitter * (2.0 * rand - 1.0)))

    def connected(self, now: float) -> None:
        """A connection opened at ``now``."""
        self._connected_at = now

    def disconnected(self, now: float) -> None:
        """The connection ended at ``now``; a stable one resets the delays."""
        if self._connected_at is not None and now - self._connected_at >= self.policy.stable_after:
            self.attempts = 0
        self._connected_at = None
