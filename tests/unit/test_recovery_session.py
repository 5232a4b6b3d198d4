"""The recovery session on its own: a 403 from the search stops the service with one clear line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from connector.core.backfill_plan import Gap, RecoveryMargins
from connector.core.pacing import RequestPacer
from connector.core.records import MessageKind, VenueMessage
from connector.engine.backfill import BackfillTuning
from connector.engine.ports import SearchFailure, SearchPage, SearchRequest
from connector.engine.recovery import HoldBackLimits, RecoverySession
from connector.errors import SearchRefused

S = 1_000_000_000
NOW_NS = 1_800_000_000 * S


class ForbiddenSearch:
    """Answers every request with HTTP 403 (the credentials lack ``read:reports``)."""

    def __init__(self) -> None:
        self.requests: list[SearchRequest] = []

    def submit(self, request: SearchRequest) -> None:
        self.requests.append(request)

    def poll(self) -> SearchPage | SearchFailure | None:
        if not self.requests:
            return None
        return SearchFailure(403, None, "insufficient_scope")

    def cancel(self) -> None:
        self.requests.clear()


class Output:
    """Records what the session publishes."""

    def __init__(self) -> None:
        self.gaps: list[Gap] = []
        self.searches: list[str] = []

    def live(self, message: VenueMessage, *, relaxed: bool) -> None:
        del message, relaxed

    def backfilled(self, executions: Sequence[Any], *, relaxed: bool) -> None:
        del executions, relaxed

    def gap(self, gap: Gap) -> None:
        self.gaps.append(gap)

    def searched(self, result: str) -> None:
        self.searches.append(result)

    def overflowed(self) -> None:
        pass

    def recovered(self, barrier: int, proven_ns: int | None) -> None:
        del barrier, proven_ns
        raise AssertionError("a refused search recovered nothing")

    def backfilled_through(self, barrier: int, proven_ns: int) -> None:
        del barrier, proven_ns

    def last_sequence(self) -> int:
        return 0


def test_a_403_from_the_search_is_fatal_with_the_missing_scope_named() -> None:
    search, output = ForbiddenSearch(), Output()
    session = RecoverySession(
        resume_ns=NOW_NS - 60 * S,
        margins=RecoveryMargins(before_s=5.0, after_s=1.0, indexing_delay_s=2.0, retention_days=7.0),
        tuning=BackfillTuning(indexing_delay_s=2.0, slice_max_s=300.0, retry_budget_s=600.0),
        limits=HoldBackLimits(max_s=5.0, max_records=1000, max_bytes=1 << 20),
        search=search,
        pacer=RequestPacer(12, now=0.0),
        output=output,
    )
    heartbeat = VenueMessage(MessageKind.HEARTBEAT, "s-1", NOW_NS, NOW_NS, (), 10)
    session.on_message(heartbeat, 0.0, NOW_NS)
    wake = session.step(0.0, NOW_NS)
    assert search.requests == [] and wake is not None  # the window's tail is not indexed yet
    session.step(wake, NOW_NS + int(wake * S))
    assert len(search.requests) == 1
    with pytest.raises(SearchRefused, match=r"read:reports scope") as refused:
        session.step(wake + 0.1, NOW_NS + int((wake + 0.1) * S))
    assert "\n" not in str(refused.value) and "HTTP 403" in str(refused.value)
    assert output.searches == ["error"]
