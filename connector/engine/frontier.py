"""The completeness frontier F: the one number the connector promises about the past, derived here only.

F (DESIGN.md §4): every execution the subscription covers with ``transact_time`` <= F is in Kafka, or
declared in a GapDetected record. It is what the checkpoint stores, what the ConnectorHeartbeat
record, ``/status`` and the watermark metric report, and where the next recovery starts.

It is derived, never set:

- while a stream's recovery is running, F stays at the *resume point* R (F when that stream began);
- when the recovery has published everything it will publish (the backfill, its gap records, the
  live updates held back behind it), it names the arrival sequence of its last record: the
  *barrier*, and the end of the window its backfill proved (searched once indexed, or declared a
  gap); once Kafka has acknowledged every arrival up to the barrier, F is the newest of R, that
  window's end and the watermark W (the acknowledged prefix of executions);
- a long backfill proves its window slice by slice: once a slice's records are acknowledged, F may
  reach the slice's end (not the watermark), so an interrupted recovery keeps what it proved;
- a new stream starts a new recovery: R becomes the current F (a new venue session id on an open
  stream skips nothing: messages on one stream arrive in order, venue-api.md §2.3).

So F never moves backwards, never passes an unacknowledged record, and never passes a window a
running backfill has not proven.
"""

from __future__ import annotations

from connector.core.watermark import Position, Watermark


class Frontier:
    """Derives F from the resume point, the current recovery's barrier and the watermark."""

    __slots__ = ("_barrier", "_proven", "_resume", "_slices", "_watermark")

    def __init__(self, watermark: Watermark, resume: Position | None) -> None:
        """Start at the checkpoint (or ``start_from``), with no recovery complete yet."""
        self._watermark = watermark
        self._resume = resume
        self._barrier: int | None = None
        self._proven: Position | None = None
        self._slices: list[tuple[int, int]] = []  # (barrier, proven venue time), oldest first

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
        self._proven = None
        self._slices = []

    def proven(self, barrier: int, proven_ns: int) -> None:
        """Part of the window is published through arrival ``barrier``: F may reach ``proven_ns``."""
        self._slices.append((barrier, proven_ns))

    def recovery_published(self, barrier: int, proven_ns: int | None = None) -> None:
        """The recovery published its last record at arrival ``barrier``, proving up to ``proven_ns``."""
        self._barrier = barrier
        resume = self._resume
        if proven_ns is not None and (resume is None or proven_ns > resume.venue_time_ns):
            self._proven = Position(proven_ns, resume.last_execution_id if resume else "", "")

    def value(self) -> Position | None:
        """F now."""
        if not self.recovered:
            return self._slice_frontier()
        candidates = [p for p in (self._resume, self._proven, self._watermark.position) if p is not None]
        return max(candidates, key=lambda position: position.venue_time_ns, default=None)

    def _slice_frontier(self) -> Position | None:
        """R, or the end of the newest acknowledged backfill slice of the running recovery."""
        watermark, resume = self._watermark, self._resume
        while len(self._slices) > 1 and watermark.acknowledged_through(self._slices[1][0]):
            self._slices.pop(0)  # only the newest acknowledged slice matters
        if not self._slices or not watermark.acknowledged_through(self._slices[0][0]):
            return resume
        proven_ns = self._slices[0][1]
        if resume is not None and proven_ns <= resume.venue_time_ns:
            return resume
        return Position(proven_ns, resume.last_execution_id if resume else "", "")
