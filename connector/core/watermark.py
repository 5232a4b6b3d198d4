"""Pure arrival numbering and the acknowledged-prefix watermark (no I/O, no threads).

The venue gives no sequence number and no resume token, so the connector numbers every event in
arrival order. The *watermark* is the newest venue time in the longest prefix of arrivals that
Kafka has acknowledged. Rules (DESIGN.md §4):

- it only moves forward, and never past an event that is not acknowledged;
- a venue heartbeat is an event with no record: it counts as acknowledged as soon as it arrives,
  so once everything before it is acknowledged the watermark moves to the heartbeat's
  ``processed_sent_time`` (a quiet market still advances the checkpoint);
- a failed delivery freezes the watermark: the pipeline must restart from it, since the failed
  event (and every later one) may be missing from Kafka. The first failure is kept until
  :meth:`Watermark.restart`, which forgets every unacknowledged arrival (late acknowledgements of
  them are then ignored) and keeps the position, so re-reading the venue from it loses nothing.

A checkpoint may only ever be written from :attr:`Watermark.position`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where the acknowledged prefix ends: the venue time and the newest execution in it."""

    venue_time_ns: int
    last_execution_id: str
    session_id: str


@dataclass(frozen=True, slots=True)
class DeliveryFailure:
    """The first delivery that failed: the arrival number and the reason."""

    sequence: int
    reason: str


@dataclass(slots=True)
class _Arrival:
    venue_time_ns: int | None
    execution_id: str
    session_id: str
    acknowledged: bool = False


class Watermark:
    """Tracks arrivals and acknowledgements; exposes the acknowledged-prefix position."""

    __slots__ = ("_arrivals", "_failure", "_next_sequence", "_position", "_prefix_end", "_unacknowledged")

    def __init__(self, start: Position | None = None) -> None:
        """Start empty, or from a checkpointed position (the watermark never goes below it)."""
        self._arrivals: dict[int, _Arrival] = {}
        self._next_sequence = 0
        self._prefix_end = 0  # the lowest sequence not yet acknowledged (or not yet arrived)
        self._position = start
        self._failure: DeliveryFailure | None = None
        self._unacknowledged = 0

    @property
    def position(self) -> Position | None:
        """The newest venue time (and execution) in the acknowledged prefix, or None if nothing yet."""
        return self._position

    @property
    def failure(self) -> DeliveryFailure | None:
        """The first failed delivery, once one happened; the watermark is then frozen."""
        return self._failure

    @property
    def in_flight(self) -> int:
        """Events that arrived and are not acknowledged yet (failed ones included)."""
        return self._unacknowledged

    def restart(self) -> None:
        """Forget the failure and every unacknowledged arrival; keep the position (a pipeline restart)."""
        self._arrivals.clear()
        self._prefix_end = self._next_sequence
        self._failure = None
        self._unacknowledged = 0

    def arrive(self, venue_time_ns: int | None, execution_id: str = "", session_id: str = "") -> int:
        """Number an event that will be published; return its arrival sequence."""
        sequence = self._next_sequence
        self._next_sequence += 1
        self._arrivals[sequence] = _Arrival(venue_time_ns, execution_id, session_id)
        self._unacknowledged += 1
        return sequence

    def arrive_heartbeat(self, processed_sent_time_ns: int, session_id: str = "") -> None:
        """Number a venue heartbeat: it has no record, so it is acknowledged on arrival."""
        self.acknowledge(self.arrive(processed_sent_time_ns, session_id=session_id))

    def acknowledge(self, sequence: int) -> None:
        """Record that Kafka acknowledged the event; advance the prefix as far as it now reaches."""
        arrival = self._arrivals.get(sequence)
        if arrival is None or arrival.acknowledged:
            return  # a duplicate callback, or unknown
        arrival.acknowledged = True
        self._unacknowledged -= 1
        if self._failure is not None:
            return
        while (head := self._arrivals.get(self._prefix_end)) is not None and head.acknowledged:
            del self._arrivals[self._prefix_end]
            self._prefix_end += 1
            self._advance(head)

    def fail(self, sequence: int, reason: str) -> None:
        """Record a failed delivery: freeze the watermark (the first failure wins)."""
        if self._failure is None and sequence in self._arrivals:
            self._failure = DeliveryFailure(sequence, reason)

    def _advance(self, arrival: _Arrival) -> None:
        if arrival.venue_time_ns is None:
            return
        current = self._position
        if current is None or arrival.venue_time_ns >= current.venue_time_ns:
            last_execution_id = arrival.execution_id or (current.last_execution_id if current else "")
            self._position = Position(arrival.venue_time_ns, last_execution_id, arrival.session_id)
