"""Full-jitter backoff: each wait is random within a doubling bound, capped, and resets."""

from __future__ import annotations

import random

from connector.core.pacing import FullJitterBackoff


def test_bounds_double_up_to_the_cap_and_reset() -> None:
    backoff = FullJitterBackoff(1.0, 30.0, random.Random(4))
    bounds = [1, 2, 4, 8, 16, 30, 30, 30]
    for bound in bounds:
        delay = backoff.next_delay()
        assert 0 <= delay <= bound
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_waits_are_spread_not_synchronised() -> None:
    """Many connectors failing at once must not reconnect in lockstep (no reconnect storm)."""
    firsts = []
    for seed in range(200):
        backoff = FullJitterBackoff(1.0, 30.0, random.Random(seed))
        for _ in range(5):
            delay = backoff.next_delay()
        firsts.append(delay)
    assert max(firsts) <= 16.0
    assert max(firsts) - min(firsts) > 10.0  # spread over the whole window


def test_a_longer_cap_for_resource_exhausted() -> None:
    backoff = FullJitterBackoff(1.0, 30.0, random.Random(1))
    delays = [backoff.next_delay(300.0) for _ in range(12)]
    assert max(delays) > 30.0 and all(d <= 300.0 for d in delays)
