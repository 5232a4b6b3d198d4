"""Pure, bounded memory of recently published execution IDs, for dropping overlaps (no I/O).

Overlaps happen by design: the backfill window starts before the watermark, and a restart re-reads
from the checkpoint. The set is seeded at start-up from the tail of the executions topic, so a clean
restart republishes nothing. It holds at most ``capacity`` IDs and forgets the oldest first: an
overlap older than that is published again, which consumers absorb (every duplicate carries the
same execution ID). Dropping a new execution by mistake is impossible: only exact IDs match.
"""

from __future__ import annotations

from collections import deque


class RecentExecutionIds:
    """A first-in-first-out bounded set of execution IDs.

    A set answers membership and a deque remembers the order, so forgetting the oldest is O(1). (A
    dict used as an ordered set is not: deleting its first key leaves a hole at the front of its
    entry table, and every ``next(iter(...))`` after that scans all the holes until the table is
    rebuilt, tens of microseconds per add once the set is full.)
    """

    __slots__ = ("_capacity", "_ids", "_order")

    def __init__(self, capacity: int) -> None:
        """Remember at most ``capacity`` IDs (at least 1)."""
        if capacity < 1:
            msg = f"capacity must be at least 1, got {capacity}"
            raise ValueError(msg)
        self._capacity = capacity
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def capacity(self) -> int:
        """How many IDs the set remembers at most."""
        return self._capacity

    def __contains__(self, execution_id: object) -> bool:
        return execution_id in self._ids

    def clear(self) -> None:
        """Forget everything (before re-seeding from the executions topic)."""
        self._ids.clear()
        self._order.clear()

    def add(self, execution_id: str) -> bool:
        """Remember an ID; return False if it was already remembered (a duplicate)."""
        ids = self._ids
        if execution_id in ids:
            return False
        ids.add(execution_id)
        order = self._order
        order.append(execution_id)
        if len(order) > self._capacity:
            ids.discard(order.popleft())
        return True
