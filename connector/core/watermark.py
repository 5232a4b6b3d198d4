"""Pure arrival numbering and the acknowledged-prefix watermark (no I/O, no threads).

The venue gives no sequence number and no resume token, so the connector numbers every event it
publishes in arrival order. The *watermark* W is the newest *proof time* in the longest prefix of
arrivals that Kafka has acknowledged. Rules (DESIGN.md §4):

- it only moves forward, and never past an event that is not acknowledged;
- each arrival carries the venue time it proves, or None when it proves nothing about older
  executions: an execution proves its ``transact_time`` (the stream delivers a subscription's
  executions in venue order), a snapshot order, a dead letter and a cancel reject without a
  ``transact_time`` prove nothing (their only time is the venue's *send* time, and fills older than
  that may still be queued behind them); venue heartbeats, for the same reason, are no arrivals.

The watermark is not the completeness frontier F: a backfill still running, or an old execution
still unacknowledged, keeps F behind W. Only :class:`connector.engine.frontier.Frontier` turns W into
F, and a checkpoint is only ever written from F.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """A point in venue time, with the newest execution and the venue session at it."""

    venue_time_ns: int
    last_execution_id: str
    session_id: str


class Watermark:
    """Tracks arrivals and acknowledgements; exposes the acknowledged-prefix position.

    Every record passes :meth:`arrive` and :meth:`acknowledge` once: the prefix's newest proof is kept
    as plain fields and becomes a :class:`Position` only when :attr:`position` is read.
    """

    __slots__ = (
        "_acknowledged",
        "_newest_execution_id",
        "_newest_ns",
        "_newest_session_id",
        "_next_sequence",
        "_position",
        "_prefix_end",
        "_proofs",
    )

    def __init__(self) -> None:
        """Start empty (where to resume is the frontier's business, not the watermark's)."""
        self._proofs: dict[int, tuple[int | None, str, str]] = {}
        self._acknowledged: set[int] = set()
        self._next_sequence = 0
        self._prefix_end = 0  # the lowest sequence not yet acknowledged (or not yet arrived)
        self._newest_ns: int | None = None  # the newest proof in the acknowledged prefix
        self._newest_execution_id = ""  # the last non-empty execution ID among the proofs that advanced
        self._newest_session_id = ""
        self._position: Position | None = None  # built from the three above when read (None: stale)

    @property
    def position(self) -> Position | None:
        """The newest proof time (and execution) in the acknowledged prefix, or None if nothing yet."""
        position = self._position
        if position is None and self._newest_ns is not None:
            position = self._position = Position(
                self._newest_ns, self._newest_execution_id, self._newest_session_id
            )
        return position

    @property
    def in_flight(self) -> int:
        """Events that arrived and are not acknowledged yet."""
        return self._next_sequence - self._prefix_end - len(self._acknowledged)

    @property
    def last_sequence(self) -> int:
        """The sequence of the newest arrival (-1 before the first)."""
        return self._next_sequence - 1

    def acknowledged_through(self, sequence: int) -> bool:
        """Whether every arrival up to and including ``sequence`` is acknowledged."""
        return sequence < self._prefix_end

    def arrive(self, proof_ns: int | None, execution_id: str = "", session_id: str = "") -> int:
        """Number an event that will be published; return its arrival sequence."""
        sequence = self._next_sequence
        self._next_sequence = sequence + 1
        self._proofs[sequence] = (proof_ns, execution_id, session_id)
        return sequence

    def acknowledge(self, sequence: int) -> None:
        """Record that Kafka acknowledged the event; advance the prefix as far as it now reaches."""
        prefix_end = self._prefix_end
        if sequence != prefix_end or sequence >= self._next_sequence:
            if prefix_end < sequence < self._next_sequence:
                self._acknowledged.add(sequence)
            return  # acknowledged out of order; or a duplicate callback, or unknown
        proofs, acknowledged = self._proofs, self._acknowledged
        newest_ns = self._newest_ns
        while True:
            proof_ns, execution_id, session_id = proofs.pop(prefix_end)
            if proof_ns is not None and (newest_ns is None or proof_ns >= newest_ns):
                newest_ns = self._newest_ns = proof_ns
                if execution_id:
                    self._newest_execution_id = execution_id
                self._newest_session_id = session_id
                self._position = None  # built again when read
            prefix_end += 1
            if prefix_end not in acknowledged:
                break
            acknowledged.discard(prefix_end)
        self._prefix_end = prefix_end
