"""The backfill state machine on a virtual clock: when it asks, how it pages, retries and gives up."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from connector.core.backfill_plan import Window
from connector.core.pacing import RequestPacer
from connector.engine.backfill import BackfillRun, BackfillState, BackfillTuning
from connector.engine.ports import SearchFailure, SearchPage

S = 1_000_000_000
BASE_NS = 1_800_000_000 * S  # wall time at monotonic 0
TUNING = BackfillTuning(indexing_delay_s=2.0, slice_max_s=300.0, retry_budget_s=10.0)


def execution(time_s: float, name: str) -> Any:
    nanos = BASE_NS + int(time_s * S)
    return SimpleNamespace(
        id=name,
        transact_time=SimpleNamespace(seconds=nanos // S, nanos=nanos % S),
        order=SimpleNamespace(cum_qty=0, leaves_qty=1),
    )


def wall(now: float) -> int:
    return BASE_NS + int(now * S)


def test_a_short_window_costs_one_request_sent_once_it_is_all_searchable() -> None:
    window = Window(wall(-10), wall(1))  # the stream began at 0; the window ends 1 s after
    run = BackfillRun(window, TUNING, RequestPacer(12, now=0.0), now=0.0)
    assert run.next_request(0.0, wall(0)) is None
    assert run.state is BackfillState.WAITING_FOR_INDEX
    assert run.wake_at(0.0, wall(0)) == 3.0  # window end (1 s) + indexing delay (2 s)
    request = run.next_request(3.0, wall(3))
    assert request is not None and request.window == window and request.page_token == ""
    ready = run.on_answer(SearchPage([execution(0.5, "b"), execution(-5, "a")], "", eof=True), 3.1)
    assert [e.id for e in ready] == ["a", "b"], "in venue order, whatever order the search answered"
    assert run.state is BackfillState.DONE and run.progress.requests == 1


def test_pages_follow_at_once_and_eof_false_without_a_token_is_retried() -> None:
    run = BackfillRun(Window(wall(-100), wall(-50)), TUNING, RequestPacer(1000, now=0.0), now=0.0)
    first = run.next_request(0.0, wall(0))
    assert first is not None
    assert run.on_answer(SearchPage([execution(-90, "a")], "page-2", eof=False), 0.1) == []
    second = run.next_request(0.1, wall(0.1))
    assert second is not None and second.page_token == "page-2"
    assert run.on_answer(SearchPage([execution(-80, "b")], "", eof=False), 0.2) == []
    assert run.progress.failures == 1, "the venue did not say it was done"
    assert run.next_request(0.3, wall(0.3)) is None  # backing off
    retry = run.next_request(1.2, wall(1.2))
    assert retry is not None and retry.page_token == "page-2", "the same page again"
    ready = run.on_answer(SearchPage([execution(-80, "b")], "", eof=True), 1.3)
    assert [e.id for e in ready] == ["a", "b"]
    assert run.state is BackfillState.DONE


def test_a_429_is_pacing_it_waits_retry_after_and_never_spends_the_budget() -> None:
    run = BackfillRun(Window(wall(-100), wall(-50)), TUNING, RequestPacer(1000, now=0.0), now=0.0)
    now = 0.0
    for _ in range(10):  # 40 s of refusals: four times the retry budget
        request = run.next_request(now, wall(now))
        assert request is not None
        run.on_answer(SearchFailure(429, 4.0, "rate limit exceeded"), now)
        assert run.next_request(now + 3.9, wall(now + 3.9)) is None, "Retry-After: 4"
        now += 4.0
    assert not run.finished, "the venue answers: no gap"
    assert run.progress.throttled == 10
    run.on_answer(SearchFailure(503, None, "unavailable"), now)
    assert not run.finished, "a 429 refilled the budget: one 503 after them is not an outage"


def test_failures_back_off_and_the_budget_runs_out() -> None:
    run = BackfillRun(Window(wall(-100), wall(-50)), TUNING, RequestPacer(1000, now=0.0), now=0.0)
    now = 0.0
    failures = 0
    while not run.finished:
        request = run.next_request(now, wall(now))
        if request is None:
            now = run.wake_at(now, wall(now)) or now + 1
            continue
        run.on_answer(SearchFailure(503, None, "unavailable"), now)
        failures += 1
    assert run.state is BackfillState.EXHAUSTED
    assert "retry budget" in run.failure_detail and failures >= 3
    assert now >= 10.0


def test_a_long_window_goes_slice_by_slice_each_published_as_it_completes() -> None:
    tuning = BackfillTuning(indexing_delay_s=2.0, slice_max_s=100.0, retry_budget_s=10.0)
    run = BackfillRun(Window(wall(-250), wall(0)), tuning, RequestPacer(1000, now=0.0), now=0.0)
    windows = []
    now = 0.0
    while not run.finished:
        request = run.next_request(now, wall(now))
        if request is None:
            now = run.wake_at(now, wall(now)) or now + 1
            continue
        windows.append(request.window)
        start_s = (request.window.start_ns - BASE_NS) / S
        ready = run.on_answer(SearchPage([execution(start_s + 1, f"e{start_s}")], "", eof=True), now)
        assert len(ready) == 1
    assert [(w.start_ns - BASE_NS) // S for w in windows] == [-250, -150, -50]
    assert windows[-1].end_ns == wall(0) and now >= 2.0, "the last slice waited to be searchable"
