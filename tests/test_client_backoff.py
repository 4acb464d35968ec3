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
        assert all(base * 0.7 <= d <= min(base * 1.3, 30.0) for d in delays)
        assert max(delays) - min(delays) > base * 0.25  # it really spreads


def test_the_seed_allows_ten_retries() -> None:
    assert Backoff().retries == 10


class Extreme(random.Random):
    """A random source that always draws one end of the range it is asked for."""

    def __init__(self, high: bool) -> None:
        super().__init__()
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


def test_no_delay_exceeds_the_maximum_after_jitter() -> None:
    backoff = Backoff()
    rng = random.Random(12)
    for attempt in range(40):
        for source in (Extreme(high=True), Extreme(high=False), rng, rng, rng):
            assert backoff.delay(attempt, source) <= 30.0, (attempt, source)
    # the cap is reached at the highest draw, and never passed
    assert backoff.delay(9, Extreme(high=True)) == 30.0


def test_delays_at_the_cap_are_still_spread_below_it() -> None:
    backoff = Backoff()
    rng = random.Random(3)
    delays = [backoff.delay(attempt, rng) for attempt in (5, 9, 20) for _ in range(300)]
    assert min(delays) >= 30.0 * 0.7
    assert max(delays) - min(delays) > 5.0
    assert sum(d == 30.0 for d in delays) < 5  # no crowd reconnecting at exactly 30 s
    assert backoff.delay(9, Extreme(high=False)) == 21.0
