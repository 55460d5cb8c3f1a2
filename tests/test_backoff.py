"""Reconnect delays: 1 s doubling to 60 s, jittered, reset after a stable connection."""

from __future__ import annotations

import pytest

from agentx_sync.backoff import Backoff, BackoffPolicy


def test_default_delays_double_from_1_to_60_without_jitter() -> None:
    b = Backoff(BackoffPolicy(jitter=0))
    assert [b.next_delay(0.5) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


def test_jitter_stays_within_bounds_and_under_the_cap() -> None:
    b = Backoff()  # 20 % jitter by default
    lows = [Backoff().next_delay(0.0) for _ in range(3)]
    assert lows == [0.8, 0.8, 0.8]
    assert Backoff().next_delay(0.999999) == pytest.approx(1.2, abs=1e-5)
    for _ in range(20):
        b.next_delay(0.999999)
    assert b.next_delay(0.999999) == 60.0  # capped after jitter
    assert b.next_delay(0.0) == 48.0


def test_clients_dropped_together_get_different_delays() -> None:
    import random

    rng = random.Random(7)
    delays = {round(Backoff().next_delay(rng.random()), 6) for _ in range(20)}
    assert len(delays) == 20


def test_stable_connection_resets_the_delay() -> None:
    b = Backoff(BackoffPolicy(jitter=0, stable_after=30))
    for _ in range(4):
        b.next_delay(0.5)
    b.connected(now=100.0)
    b.disconnected(now=129.0)  # not stable yet
    assert b.next_delay(0.5) == 16
    b.connected(now=200.0)
    b.disconnected(now=230.0)
    assert b.next_delay(0.5) == 1


def test_policy_validates() -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(initial=0)
    with pytest.raises(ValueError):
        BackoffPolicy(jitter=1.5)
