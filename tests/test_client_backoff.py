"""The client's reconnection schedule: the seed's 1 s, x2, 30 s cap, jitter 0.3."""

from __future__ import annotations

import random

from vstudio_cli.client import Backoff


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(jitter=0.0)
    assert [backoff.delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_jitter_stays_within_thirty_percent() -> None:
    backoff = Backoff()
    rng = random.Random(7)
    for attempt in range(10):
        base = min(30.0, 2.0**attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(base * 0.7 <= d <= base * 1.3 for d in delays)
        assert max(delays) - min(delays) > base * 0.3  # it really spreads


def test_the_seed_allows_ten_retries() -> None:
    assert Backoff().retries == 10
