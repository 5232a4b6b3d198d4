"""Pure planning of gap recovery: which venue window to search, what to declare, how fast to ask.

The venue's stream has no resume token, so after any interruption the connector re-reads the
executions it may have missed through the REST execution search (DESIGN.md §4). This module decides,
with no I/O and no clock of its own:

- the search window: from the resume point (the watermark or checkpoint) minus a margin to the new
  stream's start plus a margin; clipped to the venue's execution retention;
- the gaps to declare: the part of the window older than the retention (``beyond_retention``), and
  the disconnected window for cancel rejects, which no endpoint can return
  (``cancel_rejects_unrecoverable``, informational);
- whether a searched execution belongs to the subscription (the search takes one symbol, so the
  filter is applied client-side);
- the pacing of search requests (a sliding window of N per minute, plus the venue's ``Retry-After``)
  and the retry budget after which completeness cannot be proven (``rest_exhausted``).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

NANOS_PER_SECOND: Final = 1_000_000_000
RATE_WINDOW_S: Final = 60.0
RETRY_BASE_S: Final = 1.0
RETRY_CAP_S: Final = 30.0


class GapReason(StrEnum):
    """Why completeness of a window cannot be proven (the GapDetected ``reason``)."""

    REST_EXHAUSTED = "rest_exhausted"
    BEYOND_RETENTION = "beyond_retention"
    CANCEL_REJECTS_UNRECOVERABLE = "cancel_rejects_unrecoverable"


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open window of venue time, ``[start_ns, end_ns)``."""

    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class Gap:
    """A window the connector cannot prove complete, and why."""

    reason: GapReason
    window: Window
    detail: str


@dataclass(frozen=True, slots=True)
class BackfillPlan:
    """What to search (None: nothing) and what to declare before searching."""

    search: Window | None
    gaps: tuple[Gap, ...]


def plan_backfill(
    *,
    resume_ns: int | None,
    stream_start_ns: int,
    now_ns: int,
    margin_s: float,
    retention_s: float,
) -> BackfillPlan:
    """Plan the recovery for a stream that started at ``stream_start_ns`` (venue time).

    Args:
        resume_ns: venue time up to which every event is known to be in Kafka (the watermark or the
            checkpoint), or None for a first start from "now" (nothing to recover).
        stream_start_ns: venue time of the new stream's first message (its snapshot).
        now_ns: the current time (for the retention limit).
        margin_s: overlap searched before ``resume_ns`` and after ``stream_start_ns``.
        retention_s: how long the venue keeps executions.
    """
    if resume_ns is None:
        return BackfillPlan(None, ())
    margin_ns = int(margin_s * NANOS_PER_SECOND)
    gaps: list[Gap] = []
    if resume_ns < stream_start_ns:
        gaps.append(
            Gap(
                GapReason.CANCEL_REJECTS_UNRECOVERABLE,
                Window(resume_ns, stream_start_ns),
                "cancel rejects sent while disconnected cannot be re-read from the venue",
            )
        )
    oldest_kept_ns = now_ns - int(retention_s * NANOS_PER_SECOND)
    start_ns = resume_ns - margin_ns
    if resume_ns < oldest_kept_ns:
        gaps.append(
            Gap(
                GapReason.BEYOND_RETENTION,
                Window(resume_ns, oldest_kept_ns),
                f"the venue keeps executions for {retention_s / 86_400:g} days only",
            )
        )
    start_ns = max(start_ns, oldest_kept_ns)
    return BackfillPlan(Window(start_ns, stream_start_ns + margin_ns), tuple(gaps))


@dataclass(frozen=True, slots=True)
class SubscriptionFilter:
    """The stream's filter, applied to searched executions (empty means all)."""

    symbols: frozenset[str]
    accounts: frozenset[str]

    def matches(self, symbol: str, account: str) -> bool:
        """Whether an execution of this symbol and account belongs to the subscription."""
        return (not self.symbols or symbol in self.symbols) and (
            not self.accounts or account in self.accounts
        )


class RequestPacer:
    """A sliding-window rate limit (N requests per minute) plus the venue's ``Retry-After``.

    One pacer serves every backfill of a process (the venue's limit is per firm, not per backfill),
    so it is safe to share between threads.
    """

    def __init__(self, requests_per_minute: int) -> None:
        """Allow ``requests_per_minute`` requests in any 60 s window."""
        self._limit = requests_per_minute
        self._sent: deque[float] = deque()
        self._not_before = 0.0
        self._lock = threading.Lock()

    def wait_s(self, now: float) -> float:
        """How long to wait (monotonic seconds) before the next request may be sent."""
        with self._lock:
            while self._sent and now - self._sent[0] >= RATE_WINDOW_S:
                self._sent.popleft()
            wait = self._not_before - now
            if len(self._sent) >= self._limit:
                wait = max(wait, self._sent[0] + RATE_WINDOW_S - now)
            return max(0.0, wait)

    def sent(self, now: float) -> None:
        """Record that a request was sent at ``now``."""
        with self._lock:
            self._sent.append(now)

    def hold(self, now: float, seconds: float) -> None:
        """Send nothing for ``seconds`` (the venue's ``Retry-After``)."""
        with self._lock:
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
