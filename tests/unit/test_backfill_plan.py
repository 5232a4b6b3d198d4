"""Pure gap-recovery planning: the window, the declared gaps, the filter, the pacing, the budget."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.backfill_plan import (
    GapReason,
    RequestPacer,
    RetryBudget,
    SubscriptionFilter,
    Window,
    plan_backfill,
)

S = 1_000_000_000
DAY_S = 86_400.0


def test_a_first_start_from_now_searches_nothing_and_declares_nothing() -> None:
    plan = plan_backfill(
        resume_ns=None, stream_start_ns=100 * S, now_ns=100 * S, margin_s=60, retention_s=7 * DAY_S
    )
    assert plan.search is None and plan.gaps == ()


def test_a_reconnect_searches_from_the_watermark_minus_margin_to_the_stream_start_plus_margin() -> None:
    plan = plan_backfill(
        resume_ns=1_000 * S, stream_start_ns=1_100 * S, now_ns=1_100 * S, margin_s=60, retention_s=7 * DAY_S
    )
    assert plan.search == Window(940 * S, 1_160 * S)
    assert [(g.reason, g.window) for g in plan.gaps] == [
        (GapReason.CANCEL_REJECTS_UNRECOVERABLE, Window(1_000 * S, 1_100 * S))
    ]


def test_a_gap_older_than_the_retention_is_declared_and_the_search_clipped() -> None:
    now = int(30 * DAY_S) * S
    resume = now - int(10 * DAY_S) * S
    plan = plan_backfill(
        resume_ns=resume, stream_start_ns=now, now_ns=now, margin_s=60, retention_s=7 * DAY_S
    )
    oldest_kept = now - int(7 * DAY_S) * S
    assert plan.search == Window(oldest_kept, now + 60 * S)
    beyond = [g for g in plan.gaps if g.reason is GapReason.BEYOND_RETENTION]
    assert [g.window for g in beyond] == [Window(resume, oldest_kept)]


@settings(max_examples=300, deadline=None)
@given(
    resume=st.integers(min_value=0, max_value=10**6),
    down=st.integers(min_value=0, max_value=10**6),
    margin=st.integers(min_value=0, max_value=120),
    retention=st.integers(min_value=1, max_value=10**6),
)
def test_the_search_plus_declared_gaps_always_cover_the_disconnected_window(
    resume: int, down: int, margin: int, retention: int
) -> None:
    start = resume + down
    plan = plan_backfill(
        resume_ns=resume * S,
        stream_start_ns=start * S,
        now_ns=start * S,
        margin_s=margin,
        retention_s=retention,
    )
    assert plan.search is not None
    covered = [plan.search, *(g.window for g in plan.gaps if g.reason is GapReason.BEYOND_RETENTION)]
    # every instant of the disconnected window [resume, start] is searched or declared as a gap
    for instant in {resume * S, (resume * S + start * S) // 2, start * S}:
        assert any(w.start_ns <= instant <= w.end_ns for w in covered), (instant, covered)
    assert plan.search.end_ns == (start + margin) * S


def test_the_filter_matches_the_subscription_and_empty_means_all() -> None:
    everything = SubscriptionFilter(frozenset(), frozenset())
    some = SubscriptionFilter(frozenset({"A-YES"}), frozenset({"firms/F/accounts/1"}))
    assert everything.matches("anything", "any")
    assert some.matches("A-YES", "firms/F/accounts/1")
    assert not some.matches("B-YES", "firms/F/accounts/1")
    assert not some.matches("A-YES", "firms/F/accounts/2")


def test_the_pacer_allows_a_burst_of_n_then_waits_for_the_oldest_to_leave_the_minute() -> None:
    pacer = RequestPacer(12)
    for second in range(12):
        assert pacer.wait_s(float(second)) == 0.0
        pacer.sent(float(second))
    assert pacer.wait_s(12.0) == 48.0  # the first request (t=0) leaves the window at t=60
    assert pacer.wait_s(60.0) == 0.0


def test_the_pacer_honours_retry_after() -> None:
    pacer = RequestPacer(12)
    pacer.hold(10.0, 7.0)
    assert pacer.wait_s(10.0) == 7.0
    assert pacer.wait_s(17.5) == 0.0


def test_the_retry_budget_backs_off_exponentially_honours_retry_after_and_runs_out() -> None:
    budget = RetryBudget(10.0)
    assert budget.failed(0.0) == 1.0
    assert budget.failed(1.0) == 2.0
    assert budget.failed(3.0, retry_after_s=5.0) == 5.0
    assert budget.failed(10.0) is None  # ten seconds of failures: give up
    budget.succeeded()
    assert budget.failed(100.0) == 1.0  # a success refills it
