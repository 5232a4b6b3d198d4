"""Pure planning of gap recovery: which venue window to search, in which slices, and what to declare.

The venue's stream has no resume token, so every new stream re-reads the executions the connector may
have missed through the REST execution search (DESIGN.md §4). This module decides, with no I/O and no
clock of its own:

- the recovery window ``[R - before, S + after]``: from the resume point R (the completeness
  frontier F when the stream started) minus a margin of seconds that covers the search's time
  semantics, to the new stream's first message S plus a small margin; clipped to the venue's
  execution retention;
- the slices the window is searched in: every slice is searched to ``eof`` and its executions are
  published in venue order, so memory is bounded by the slice, not by the outage (each slice is asked
  for only once all of it is older than the venue's indexing delay: ``engine/backfill.py``);
- the gaps to declare: the part older than the retention (``beyond_retention``), and the
  disconnected window for cancel rejects, which no endpoint returns (``cancel_rejects_unrecoverable``,
  informational);
- whether a searched execution belongs to the subscription (the search takes one symbol, so the
  filter is applied client-side), and the order to publish a slice's executions in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from connector.core.venue_time import ns_from_timestamp, seconds_to_ns

DAY_S: Final = 86_400.0
MIN_SLICE_NS: Final = 1_000_000_000


class GapReason(StrEnum):
    """Why completeness of a window cannot be proven (the GapDetected ``reason``)."""

    REST_EXHAUSTED = "rest_exhausted"
    BEYOND_RETENTION = "beyond_retention"
    CANCEL_REJECTS_UNRECOVERABLE = "cancel_rejects_unrecoverable"
    DROPCOPY_RESUME_REFUSED = "dropcopy_resume_refused"


@dataclass(frozen=True, slots=True)
class Window:
    """A window of venue time, ``[start_ns, end_ns]`` (the search's bounds are treated as inclusive)."""

    start_ns: int
    end_ns: int


@dataclass(frozen=True, slots=True)
class Gap:
    """A window the connector cannot prove complete, and why."""

    reason: GapReason
    window: Window
    detail: str


@dataclass(frozen=True, slots=True)
class RecoveryMargins:
    """The margins and delays of a recovery window (``backfill.*`` settings)."""

    before_s: float
    after_s: float
    indexing_delay_s: float
    retention_days: float


@dataclass(frozen=True, slots=True)
class RecoveryPlan:
    """What to search (None: nothing) and what to declare before searching."""

    search: Window | None
    gaps: tuple[Gap, ...]


def plan_recovery(
    *, resume_ns: int | None, stream_start_ns: int, now_ns: int, margins: RecoveryMargins
) -> RecoveryPlan:
    """Plan the recovery of a stream whose first message was sent at ``stream_start_ns`` (venue time).

    Args:
        resume_ns: the completeness frontier when the stream started (every execution at or before it
            is in Kafka), or None for a first start from "now" (nothing to recover).
        stream_start_ns: venue time of the new stream's first message, whatever its type.
        now_ns: the current wall time (for the retention limit).
        margins: the settings' margins.
    """
    if resume_ns is None:
        return RecoveryPlan(None, ())
    gaps: list[Gap] = []
    if resume_ns < stream_start_ns:
        gaps.append(
            Gap(
                GapReason.CANCEL_REJECTS_UNRECOVERABLE,
                Window(resume_ns, stream_start_ns),
                "cancel rejects sent while disconnected cannot be re-read from the venue",
            )
        )
    oldest_kept_ns = now_ns - seconds_to_ns(margins.retention_days * DAY_S)
    if resume_ns < oldest_kept_ns:
        gaps.append(
            Gap(
                GapReason.BEYOND_RETENTION,
                Window(resume_ns, oldest_kept_ns),
                f"the venue keeps executions for {margins.retention_days:g} days only",
            )
        )
    start_ns = max(resume_ns - seconds_to_ns(margins.before_s), oldest_kept_ns)
    end_ns = stream_start_ns + seconds_to_ns(margins.after_s)
    return RecoveryPlan(Window(start_ns, max(start_ns, end_ns)), tuple(gaps))


def next_slice(start_ns: int, window: Window, length_ns: int) -> Window:
    """The next slice of ``window`` from ``start_ns``: at most ``length_ns`` long (at least a second)."""
    return Window(start_ns, min(window.end_ns, start_ns + max(length_ns, MIN_SLICE_NS)))


def next_slice_length_ns(previous_ns: int, found: int, *, target: int, cap_ns: int) -> int:
    """Adapt the slice length so a slice holds about ``target`` executions (bounded memory)."""
    if found <= 0:
        return cap_ns
    return max(MIN_SLICE_NS, min(cap_ns, previous_ns * target // found))


def publication_order(executions: Sequence[Any]) -> list[Any]:
    """A slice's executions in venue order, whatever order the search returned them in.

    Sorted by ``transact_time``; executions of one order at the same instant (one venue update can
    carry an order's NEW, its partial fills and its final FILL or CANCELED) by the order's state
    after each: cumulative quantity first, a closed order (no quantity left) last. The sort is
    stable, so the search's own order decides what is left.
    """

    def key(execution: Any) -> tuple[int, int, bool]:
        order = execution.order
        return (ns_from_timestamp(execution.transact_time), int(order.cum_qty), int(order.leaves_qty) == 0)

    return sorted(executions, key=key)


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
