"""One recovery session per stream: an explicit state machine from the first message to "recovered".

Every new stream starts a session. The venue does not say
what a stream sends first (venue-api.md §2.2), so nothing here looks at the first message's type: its
send time S is when the stream started, whatever it carries. States (:class:`RecoveryState`):

``AWAITING_FIRST_MESSAGE``
    the stream is open and silent.
``BACKFILLING``
    the first message came: the recovery window ``[R - before, S + after]`` is being searched
    (:mod:`connector.engine.backfill`) and live messages are held back, in order, for at most
    ``holdback_max_s`` (and a record and byte bound), so a short outage keeps each order's history
    exactly in venue order: backfilled executions first, then what the stream sent.
``BACKFILLING_BESIDE_LIVE``
    the hold-back bound passed: held messages are released and live ones flow beside the backfill
    (risk consumers need live fills within seconds, whatever the outage cost). Both the live records
    and the backfilled ones published from then on carry the header ``ordering: relaxed``, because
    per order the two may interleave out of venue order.
``COMPLETE``
    the backfill is published (or its window declared a gap), held messages released: the session
    names its last arrival to the :class:`~connector.engine.frontier.Frontier` (the barrier).

Gaps (``beyond_retention``, ``cancel_rejects_unrecoverable``, ``rest_exhausted``) are published as
GapDetected records before the barrier, so F cannot pass a gap before its record is acknowledged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

from connector.core.backfill_plan import Gap, GapReason, RecoveryMargins, Window, plan_recovery
from connector.core.pacing import RequestPacer
from connector.core.records import VenueMessage
from connector.core.venue_time import iso_from_ns
from connector.engine.backfill import BackfillRun, BackfillState, BackfillTuning
from connector.engine.ports import ExecutionSearch, SearchFailure, SearchPage
from connector.errors import SearchRefused

_LOG: Final = logging.getLogger(__name__)

HTTP_FORBIDDEN: Final = 403
HTTP_TOO_MANY_REQUESTS: Final = 429


class RecoveryState(StrEnum):
    """Where a stream's recovery is."""

    AWAITING_FIRST_MESSAGE = "awaiting_first_message"
    BACKFILLING = "backfilling"
    BACKFILLING_BESIDE_LIVE = "backfilling_beside_live"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class HoldBackLimits:
    """How long, and how much, live traffic may be held back behind a backfill."""

    max_s: float
    max_records: int
    max_bytes: int


class RecoveryOutput(Protocol):
    """Where a session's decisions go (the service: dedup, arrival numbering, the outbox)."""

    def live(self, message: VenueMessage, *, relaxed: bool) -> None:
        """Publish a live message's records."""

    def backfilled(self, executions: Sequence[Any], *, relaxed: bool) -> None:
        """Publish searched executions (in the order given)."""

    def gap(self, gap: Gap) -> None:
        """Publish a GapDetected record."""

    def searched(self, result: str) -> None:
        """A search request ended: ``ok``, ``throttled`` (429) or ``error``."""

    def overflowed(self) -> None:
        """The backfill outlasted the hold-back bound (count it, say it)."""

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        """Everything the recovery publishes is published; its last arrival is ``barrier``.

        ``proven_ns`` is the end of the window the backfill searched (or declared a gap): every
        execution at or before it is published once the barrier is acknowledged.
        """

    def backfilled_through(self, barrier: int, proven_ns: int) -> None:
        """A slice of the window is published (last arrival ``barrier``): F may reach ``proven_ns``."""

    def last_sequence(self) -> int:
        """The arrival sequence of the newest record published so far."""


class HoldBack:
    """Live messages held while a backfill runs, in order, bounded in time, records and bytes."""

    def __init__(self, limits: HoldBackLimits) -> None:
        """Hold nothing yet."""
        self._limits = limits
        self._held: deque[VenueMessage] = deque()
        self._records = 0
        self._bytes = 0
        self._since: float | None = None

    def __len__(self) -> int:
        return len(self._held)

    def offer(self, message: VenueMessage, now: float) -> bool:
        """Hold a message; False (and nothing held) when it would pass a bound."""
        records = self._records + len(message.records)
        size = self._bytes + message.size_bytes
        if self.expired(now) or records > self._limits.max_records or size > self._limits.max_bytes:
            return False
        if self._since is None:
            self._since = now
        self._held.append(message)
        self._records, self._bytes = records, size
        return True

    def expired(self, now: float) -> bool:
        """Whether the oldest held message has waited ``max_s``."""
        deadline = self.deadline()  # one expression for both, so a wake-up at the deadline expires it
        return deadline is not None and now >= deadline

    def deadline(self) -> float | None:
        """When the time bound passes (None while nothing is held)."""
        return None if self._since is None else self._since + self._limits.max_s

    def release(self) -> list[VenueMessage]:
        """Everything held, oldest first; the buffer is empty afterwards."""
        released = list(self._held)
        self._held.clear()
        self._records = self._bytes = 0
        self._since = None
        return released


class RecoverySession:
    """The recovery of one stream (or one venue session), driven by the service's loop."""

    def __init__(
        self,
        *,
        resume_ns: int | None,
        margins: RecoveryMargins,
        tuning: BackfillTuning,
        limits: HoldBackLimits,
        search: ExecutionSearch,
        pacer: RequestPacer,
        output: RecoveryOutput,
    ) -> None:
        """Wait for the stream's first message."""
        self.state = RecoveryState.AWAITING_FIRST_MESSAGE
        self.stream_start_ns: int | None = None
        self.backfill: BackfillRun | None = None
        self.overflowed = False
        self._resume_ns = resume_ns
        self._margins = margins
        self._tuning = tuning
        self._search = search
        self._pacer = pacer
        self._out = output
        self._hold = HoldBack(limits)

    @property
    def complete(self) -> bool:
        """Whether the session published everything its recovery will publish."""
        return self.state is RecoveryState.COMPLETE

    def on_message(self, message: VenueMessage, now: float, now_ns: int) -> None:
        """Take one live message: start the recovery on the first, then hold or publish."""
        if self.state is RecoveryState.AWAITING_FIRST_MESSAGE:
            self._start(message.sent_ns or message.received_ns, now, now_ns)
        if self.state is RecoveryState.BACKFILLING:
            if not message.records or self._hold.offer(message, now):
                return
            self._overflow(now)
        self._out.live(message, relaxed=self.state is RecoveryState.BACKFILLING_BESIDE_LIVE)

    def step(self, now: float, now_ns: int) -> float | None:
        """Drive the backfill and the hold-back bound; return when to be called again (None: on input).

        Raises:
            SearchRefused: the search answered 403: the credentials lack the ``read:reports`` scope
                (retrying cannot help; the service stops with one clear line).
        """
        run = self.backfill
        if run is None or self.complete:
            return None
        answer = self._search.poll()
        if answer is not None:
            self._out.searched(search_result(answer))
            if isinstance(answer, SearchFailure) and answer.status == HTTP_FORBIDDEN:
                msg = (
                    f"the venue refused the execution search ({answer}); the credentials need the "
                    "read:reports scope for gap recovery"
                )
                raise SearchRefused(msg)
            ready = run.on_answer(answer, now)
            if ready:
                self._out.backfilled(ready, relaxed=self.overflowed)
            if run.completed_through_ns is not None and not run.finished:
                self._out.backfilled_through(self._out.last_sequence(), run.completed_through_ns)
        if self.state is RecoveryState.BACKFILLING and self._hold.expired(now):
            self._overflow(now)
        if run.finished:
            self._finish(run)
            return None
        request = run.next_request(now, now_ns)
        if request is not None:
            self._search.submit(request)
        wake = run.wake_at(now, now_ns)
        deadline = self._hold.deadline()
        if deadline is not None and (wake is None or deadline < wake):
            wake = deadline
        return wake

    def abandon(self) -> None:
        """The stream ended before the recovery completed: stop searching, drop what is held.

        Held messages are not lost: the next recovery starts from the same resume point and its
        window covers them.
        """
        if self.backfill is not None:
            self._search.cancel()
            self.backfill.cancel_request()
        self._hold.release()

    def describe(self) -> dict[str, Any]:
        """The session for ``/status``."""
        document: dict[str, Any] = {
            "state": self.state.value,
            "stream_start": iso_from_ns(self.stream_start_ns),
            "resume_point": iso_from_ns(self._resume_ns),
            "held_messages": len(self._hold),
            "ordering_relaxed": self.overflowed and not self.complete,
        }
        run = self.backfill
        if run is not None:
            progress = run.progress
            document["backfill"] = {
                "state": run.state.value,
                "window": describe_window(run.window),
                "requests": progress.requests,
                "pages": progress.pages,
                "executions": progress.executions,
                "throttled": progress.throttled,
                "last_failure": progress.last_failure,
            }
        return document

    def _start(self, stream_start_ns: int, now: float, now_ns: int) -> None:
        self.stream_start_ns = stream_start_ns
        plan = plan_recovery(
            resume_ns=self._resume_ns, stream_start_ns=stream_start_ns, now_ns=now_ns, margins=self._margins
        )
        for gap in plan.gaps:
            self._out.gap(gap)
        if plan.search is None:
            self._complete(None)
            return
        self.backfill = BackfillRun(plan.search, self._tuning, self._pacer, now=now)
        self.state = RecoveryState.BACKFILLING
        _LOG.info("recovery started: searching %s", describe_window(plan.search))

    def _overflow(self, now: float) -> None:
        del now
        self.state = RecoveryState.BACKFILLING_BESIDE_LIVE
        self.overflowed = True
        self._out.overflowed()
        released = self._hold.release()
        _LOG.warning(
            "the backfill outlasted the hold-back bound: %d held messages released, live updates now "
            "flow beside it (records marked ordering=relaxed)",
            len(released),
        )
        for message in released:
            self._out.live(message, relaxed=True)

    def _finish(self, run: BackfillRun) -> None:
        if run.state is BackfillState.EXHAUSTED:
            self._out.gap(Gap(GapReason.REST_EXHAUSTED, run.window, run.failure_detail))
        else:
            _LOG.info(
                "backfill done: %d executions in %d pages, %d requests",
                run.progress.executions,
                run.progress.pages,
                run.progress.requests,
            )
        released = self._hold.release()
        if released:
            _LOG.info("releasing %d held live messages", len(released))
        for message in released:
            self._out.live(message, relaxed=False)
        self._complete(run.window.end_ns)

    def _complete(self, proven_ns: int | None) -> None:
        self.state = RecoveryState.COMPLETE
        self._out.recovered(self._out.last_sequence(), proven_ns)


def search_result(answer: SearchPage | SearchFailure) -> str:
    """The ``result`` label of a search answer: ok, throttled (429) or error."""
    if isinstance(answer, SearchPage):
        return "ok"
    return "throttled" if answer.status == HTTP_TOO_MANY_REQUESTS else "error"


def describe_window(window: Window) -> str:
    """A window as two RFC 3339 times."""
    return f"[{iso_from_ns(window.start_ns)}, {iso_from_ns(window.end_ns)}]"
