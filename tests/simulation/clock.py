"""The simulation's virtual clock: monotonic seconds, wall nanoseconds, and the simulator's datetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from connector.core.venue_time import NANOS_PER_SECOND

EPOCH = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


class SimClock:
    """One clock for the engine (``monotonic``, ``time_ns``) and the venue (called: a datetime)."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self._start = start
        self._base_ns = int(start.timestamp()) * NANOS_PER_SECOND
        self._now = 0.0

    def monotonic(self) -> float:
        """Seconds since the simulation began."""
        return self._now

    def time_ns(self) -> int:
        """Wall time, epoch nanoseconds."""
        return self._base_ns + round(self._now * NANOS_PER_SECOND)

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=self._now)

    def wall_ns(self, at: float) -> int:
        """The wall time at monotonic ``at``."""
        return self._base_ns + round(at * NANOS_PER_SECOND)

    def monotonic_of(self, moment: datetime) -> float:
        """The monotonic time of a simulator datetime."""
        return (moment - self._start).total_seconds()

    def advance_to(self, at: float) -> None:
        """Move the clock forward (never back)."""
        self._now = max(self._now, at)
