"""One backfill: a recovery window searched over REST to ``eof``, as an explicit state machine.

The engine drives it on its own thread and clock, one request at a time through the
:class:`~connector.engine.ports.ExecutionSearch` port, so the whole of it runs under a simulation
test. The window is searched slice by slice from its start (:class:`BackfillState`):

``WAITING_FOR_INDEX``
    executions become searchable only after the venue's indexing delay, so a slice is not asked
    for before all of it is that old: a request never reaches into the future, nor into the part of
    the past the venue may not have indexed yet, and no slice has to be searched twice;
``SEARCHING``
    the slice is paged to ``eof`` (``eof=false`` with no next page token is a failed request,
    retried: the venue has not said it is done), then its executions are released for publication
    in venue order (the search may return them in any order). The next slice's length adapts so a
    slice holds about ``SLICE_TARGET_EXECUTIONS`` (bounded memory);
``DONE`` / ``EXHAUSTED``
    finished, or failed past the retry budget (the caller declares ``rest_exhausted`` for the window).

Requests are paced by the process-wide :class:`~connector.core.pacing.RequestPacer`; failures wait
per the :class:`~connector.core.pacing.RetryBudget` and the venue's ``Retry-After``. A short outage
costs one request, issued ``margin_after_s + indexing_delay_s`` after the new stream began.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from connector.core.backfill_plan import Window, next_slice, next_slice_length_ns, publication_order
from connector.core.pacing import RequestPacer, RetryBudget
from connector.core.venue_time import seconds_to_ns
from connector.engine.ports import Clock, SearchFailure, SearchPage, SearchRequest

SLICE_TARGET_EXECUTIONS: Final = 20_000
HTTP_TOO_MANY_REQUESTS: Final = 429


class BackfillState(StrEnum):
    """Where a backfill is."""

    WAITING_FOR_INDEX = "waiting_for_index"
    SEARCHING = "searching"
    DONE = "done"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True, slots=True)
class BackfillTuning:
    """The settings a backfill runs with."""

    indexing_delay_s: float
    slice_max_s: float
    retry_budget_s: float


@dataclass(slots=True)
class BackfillProgress:
    """How far a backfill got (for ``/status`` and logs)."""

    requests: int = 0
    pages: int = 0
    executions: int = 0
    throttled: int = 0
    failures: int = 0
    last_failure: str = ""


@dataclass(slots=True)
class _Slice:
    window: Window
    page_token: str = ""
    found: list[Any] = field(default_factory=list)


class BackfillRun:
    """Searches one window; hands back executions to publish, in venue order."""

    def __init__(self, window: Window, tuning: BackfillTuning, pacer: RequestPacer, *, now: float) -> None:
        """Plan the first slice of ``window`` (nothing is sent before :meth:`next_request`)."""
        self.window = window
        self.state = BackfillState.WAITING_FOR_INDEX
        self.progress = BackfillProgress()
        self.failure_detail = ""
        self._pacer = pacer
        self._budget = RetryBudget(tuning.retry_budget_s)
        self._indexing_delay_ns = seconds_to_ns(tuning.indexing_delay_s)
        self._slice_cap_ns = seconds_to_ns(tuning.slice_max_s)
        self._slice = _Slice(next_slice(window.start_ns, window, self._slice_cap_ns))
        self._in_flight = False
        self._retry_at = now
        self.completed_through_ns: int | None = None  # the end of the last slice searched to eof

    @property
    def finished(self) -> bool:
        """Whether the backfill is done or exhausted."""
        return self.state in {BackfillState.DONE, BackfillState.EXHAUSTED}

    def wake_at(self, now: float, now_ns: int) -> float | None:
        """The monotonic time at which :meth:`next_request` may have a request (None: not by time)."""
        if self.finished or self._in_flight:
            return None
        due = max(self._retry_at, now + self._pacer.wait_s(now))
        return max(due, now + max(0, self._indexed_at_ns() - now_ns) / 1e9)

    def next_request(self, now: float, now_ns: int) -> SearchRequest | None:
        """The request to send now, if one is due (at most one is in flight)."""
        if self.finished or self._in_flight or now < self._retry_at or self._pacer.wait_s(now) > 0:
            return None
        if now_ns < self._indexed_at_ns():
            return None
        self.state = BackfillState.SEARCHING
        self._pacer.sent(now)
        self._in_flight = True
        self.progress.requests += 1
        return SearchRequest(self._slice.window, self._slice.page_token)

    def on_answer(self, answer: SearchPage | SearchFailure, now: float) -> list[Any]:
        """Take the answer to the request in flight; return executions now ready to publish, in order."""
        self._in_flight = False
        if isinstance(answer, SearchFailure):
            self._failed(answer, now)
            return []
        if not answer.eof and not answer.next_page_token:
            self._failed(SearchFailure(200, None, "eof=false without a next page token"), now)
            return []
        self._budget.succeeded()
        slice_ = self._slice
        slice_.found.extend(answer.executions)
        self.progress.pages += 1
        self.progress.executions += len(answer.executions)
        if not answer.eof:
            slice_.page_token = answer.next_page_token
            return []
        ready = publication_order(slice_.found)
        self.completed_through_ns = slice_.window.end_ns
        if slice_.window.end_ns >= self.window.end_ns:
            self.state = BackfillState.DONE
            return ready
        length_ns = next_slice_length_ns(
            slice_.window.end_ns - slice_.window.start_ns,
            len(slice_.found),
            target=SLICE_TARGET_EXECUTIONS,
            cap_ns=self._slice_cap_ns,
        )
        self._slice = _Slice(next_slice(slice_.window.end_ns, self.window, length_ns))
        self.state = BackfillState.WAITING_FOR_INDEX
        return ready

    def cancel_request(self) -> None:
        """The request in flight was abandoned (its answer will not come)."""
        self._in_flight = False

    def _indexed_at_ns(self) -> int:
        """When everything in the current slice is searchable (its first page may be asked)."""
        if self._slice.page_token:
            return 0  # paging an answer already begun
        return self._slice.window.end_ns + self._indexing_delay_ns

    def _failed(self, failure: SearchFailure, now: float) -> None:
        self.progress.failures += 1
        self.progress.last_failure = str(failure)
        if failure.status == HTTP_TOO_MANY_REQUESTS:
            self.progress.throttled += 1
        if failure.retry_after_s is not None:
            self._pacer.hold(now, failure.retry_after_s)
        if failure.status == HTTP_TOO_MANY_REQUESTS:
            # The venue answers and asks us to slow down: that is pacing, not an outage, so it
            # refills the retry budget (the pacer and Retry-After decide when to ask again).
            self._budget.succeeded()
            self._retry_at = now + max(1.0, failure.retry_after_s or 0.0)
            return
        delay = self._budget.failed(now, failure.retry_after_s)
        if delay is None:
            self.state = BackfillState.EXHAUSTED
            self.failure_detail = f"execution search failed past its retry budget: {failure}"
            return
        self._retry_at = now + delay


def run_to_end(
    run: BackfillRun,
    page: Callable[[SearchRequest], SearchPage | SearchFailure],
    publish: Callable[[Sequence[Any]], None],
    *,
    clock: Clock,
    sleep: Callable[[float], None],
    on_answer: Callable[[SearchPage | SearchFailure], None] = lambda _answer: None,
) -> None:
    """Drive a backfill to its end with blocking requests (the ``backfill`` command, not the service).

    ``publish`` gets each batch of executions ready for publication, in venue order.
    """
    while not run.finished:
        request = run.next_request(clock.monotonic(), clock.time_ns())
        if request is None:
            wake = run.wake_at(clock.monotonic(), clock.time_ns())
            sleep(max(0.0, (wake if wake is not None else clock.monotonic() + 1.0) - clock.monotonic()))
            continue
        answer = page(request)
        on_answer(answer)
        ready = run.on_answer(answer, clock.monotonic())
        if ready:
            publish(ready)
