"""The completeness frontier F: the one number the connector promises about the past, derived here only.

F (DESIGN.md §4): every execution the subscription covers with ``transact_time`` <= F is in Kafka, or
declared in a GapDetected record. It is what the checkpoint stores, what the ConnectorHeartbeat
record, ``/status`` and the watermark metric report, and where the next recovery starts.

It is derived, never set:

- while a stream's recovery is running, F stays at the *resume point* R (F when that stream began);
- when the recovery has published everything it will publish (the backfill, its gap records, the
  live updates held back behind it), it names the arrival sequence of its last record: the
  *barrier*; once Kafka has acknowledged every arrival up to the barrier, F follows the watermark W
  (the acknowledged prefix), never going below R;
- a new stream (or a new venue session mid-stream) starts a new recovery: R becomes the current F.

So F never moves backwards, never passes an unacknowledged record, and never passes a window a
running backfill has not proven.
"""

from __future__ import annotations

from connector.core.watermark import Position, Watermark


class Frontier:
    """Derives F from the resume point, the current recovery's barrier and the watermark."""

    __slots__ = ("_barrier", "_resume", "_watermark")

    def __init__(self, watermark: Watermark, resume: Position | None) -> None:
        """Start at the checkpoint (or ``start_from``), with no recovery complete yet."""
        self._watermark = watermark
        self._resume = resume
        self._barrier: int | None = None

    @property
    def resume(self) -> Position | None:
        """R: where the current recovery started (F when its stream began)."""
        return self._resume

    @property
    def recovered(self) -> bool:
        """Whether the current recovery is complete and acknowledged (F follows the watermark)."""
        return self._barrier is not None and self._watermark.acknowledged_through(self._barrier)

    def begin_recovery(self) -> None:
        """A new stream or venue session: freeze F where it is until this recovery completes."""
        self._resume = self.value()
        self._barrier = None

    def recovery_published(self, barrier: int) -> None:
        """The recovery published its last record at arrival ``barrier``."""
        self._barrier = barrier

    def value(self) -> Position | None:
        """F now."""
        if not self.recovered:
            return self._resume
        position = self._watermark.position
        resume = self._resume
        if position is None or (resume is not None and position.venue_time_ns < resume.venue_time_ns):
            return resume
        return position
