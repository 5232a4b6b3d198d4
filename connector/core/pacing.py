"""How fast to ask again: reconnect backoff, the venue's search rate limit, and the search retry budget.

Pure and clock-free: every method takes the current monotonic time (seconds) as an argument, so the
engine can be driven on a virtual clock and each rule tested on its own.

- :class:`FullJitterBackoff`: a random wait in ``[0, min(cap, base * 2^attempt)]`` (reconnects, and
  retries of start-up reads);
- :class:`RequestPacer`: a sliding window of N requests per 60 s plus the venue's ``Retry-After``. The
  venue's limit is per firm and outlives this process, so a new pacer assumes half of the window was
  already spent by a predecessor just before it started (a crashed connector, or another tool);
- :class:`RetryBudget`: exponential waits between failed search requests, and the point after which
  the window cannot be proven complete (a ``rest_exhausted`` gap).
"""

from __future__ import annotations

import random
from collections import deque
from typing import Final

RATE_WINDOW_S: Final = 60.0
RETRY_BASE_S: Final = 1.0
RETRY_CAP_S: Final = 30.0
MAX_DOUBLINGS: Final = 30


class FullJitterBackoff:
    """Full-jitter exponential backoff: a random wait in ``[0, min(cap, base * 2^attempt)]``."""

    def __init__(self, base_s: float, cap_s: float, rng: random.Random | None = None) -> None:
        """Start at attempt 0; ``rng`` makes the jitter reproducible (simulation tests)."""
        self._base_s = base_s
        self._cap_s = cap_s
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security

    def next_delay(self, cap_s: float | None = None) -> float:
        """The next wait; each call doubles the bound up to the cap (``cap_s`` overrides it)."""
        bound = min(cap_s or self._cap_s, self._base_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, MAX_DOUBLINGS)
        return self._rng.uniform(0, bound)

    def reset(self) -> None:
        """Back to the first attempt (after a healthy stream)."""
        self._attempt = 0


class RequestPacer:
    """A sliding-window rate limit (N requests per 60 s) plus the venue's ``Retry-After``.

    The first window is assumed half spent (``ceil(N / 2)`` requests at the moment of creation): the
    venue counts per firm, across restarts of this process, so a connector restarted in the middle of
    its predecessor's backfill must not open with a burst the venue will refuse.
    """

    def __init__(self, requests_per_minute: int, now: float) -> None:
        """Allow ``requests_per_minute`` requests in any 60 s window, starting at ``now``."""
        self._limit = requests_per_minute
        self._sent: deque[float] = deque([now] * -(-requests_per_minute // 2))
        self._not_before = now

    def wait_s(self, now: float) -> float:
        """How long to wait before the next request may be sent."""
        while self._sent and now >= self._sent[0] + RATE_WINDOW_S:
            self._sent.popleft()
        wait = self._not_before - now
        if len(self._sent) >= self._limit:
            wait = max(wait, self._sent[0] + RATE_WINDOW_S - now)
        return max(0.0, wait)

    def sent(self, now: float) -> None:
        """Record that a request was sent at ``now``."""
        self._sent.append(now)

    def hold(self, now: float, seconds: float) -> None:
        """Send nothing for ``seconds`` (the venue's ``Retry-After``)."""
        self._not_before = max(self._not_before, now + seconds)


class RetryBudget:
    """How long a failing search is retried, and the exponential wait between attempts."""

    def __init__(self, budget_s: float) -> None:
        """Give up once requests have failed for ``budget_s`` without a success in between."""
        self._budget_s = budget_s
        self._failing_since: float | None = None
        self._failures = 0

    def succeeded(self) -> None:
        """A request succeeded: the budget is full again."""
        self._failing_since = None
        self._failures = 0

    def failed(self, now: float, retry_after_s: float | None = None) -> float | None:
        """A request failed at ``now``: return the wait before retrying, or None when exhausted."""
        if self._failing_since is None:
            self._failing_since = now
        self._failures += 1
        if now - self._failing_since >= self._budget_s:
            return None
        backoff = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(self._failures - 1, 16))
        return max(backoff, retry_after_s or 0.0)
