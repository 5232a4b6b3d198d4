"""Pure gap-recovery planning: the window, the declared gaps, the slices, the tail, the order, the pacing."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.backfill_plan import (
    GapReason,
    RecoveryMargins,
    SubscriptionFilter,
    Window,
    next_slice,
    next_slice_length_ns,
    plan_recovery,
    publication_order,
)
from connector.core.pacing import RequestPacer, RetryBudget

S = 1_000_000_000
MARGINS = RecoveryMargins(before_s=5, after_s=1, indexing_delay_s=2, retention_days=7)


def test_a_first_start_from_now_searches_nothing_and_declares_nothing() -> None:
    plan = plan_recovery(resume_ns=None, stream_start_ns=100 * S, now_ns=100 * S, margins=MARGINS)
    assert plan.search is None and plan.gaps == ()


def test_a_reconnect_searches_from_seconds_before_the_resume_point_to_just_after_the_stream_start() -> None:
    plan = plan_recovery(resume_ns=1_000 * S, stream_start_ns=1_100 * S, now_ns=1_100 * S, margins=MARGINS)
    assert plan.search == Window(995 * S, 1_101 * S)
    assert [(g.reason, g.window) for g in plan.gaps] == [
        (GapReason.CANCEL_REJECTS_UNRECOVERABLE, Window(1_000 * S, 1_100 * S))
    ]


def test_a_gap_older_than_the_retention_is_declared_and_the_search_clipped() -> None:
    now = 30 * 86_400 * S
    resume = now - 10 * 86_400 * S
    plan = plan_recovery(resume_ns=resume, stream_start_ns=now, now_ns=now, margins=MARGINS)
    oldest_kept = now - 7 * 86_400 * S
    assert plan.search == Window(oldest_kept, now + 1 * S)
    beyond = [g for g in plan.gaps if g.reason is GapReason.BEYOND_RETENTION]
    assert [g.window for g in beyond] == [Window(resume, oldest_kept)]


@settings(max_examples=300, deadline=None)
@given(
    resume=st.integers(min_value=0, max_value=10**6),
    down=st.integers(min_value=0, max_value=10**6),
    before=st.integers(min_value=0, max_value=120),
    retention_days=st.integers(min_value=1, max_value=10),
)
def test_the_search_plus_declared_gaps_always_cover_the_disconnected_window(
    resume: int, down: int, before: int, retention_days: int
) -> None:
    start = resume + down
    margins = RecoveryMargins(before_s=before, after_s=1, indexing_delay_s=2, retention_days=retention_days)
    plan = plan_recovery(resume_ns=resume * S, stream_start_ns=start * S, now_ns=start * S, margins=margins)
    assert plan.search is not None
    covered = [plan.search, *(g.window for g in plan.gaps if g.reason is GapReason.BEYOND_RETENTION)]
    # every instant of the disconnected window [resume, start] is searched or declared as a gap
    for instant in {resume * S, (resume * S + start * S) // 2, start * S}:
        assert any(w.start_ns <= instant <= w.end_ns for w in covered), (instant, covered)
    assert plan.search.end_ns == (start + 1) * S


def test_a_slice_never_ends_past_the_window() -> None:
    window = Window(0, 1_000 * S)
    assert next_slice(0, window, 300 * S) == Window(0, 300 * S)
    assert next_slice(900 * S, window, 300 * S) == Window(900 * S, 1_000 * S)
    assert next_slice(0, window, 0) == Window(0, 1 * S)  # at least a second


def test_the_slice_length_adapts_to_the_executions_found() -> None:
    assert next_slice_length_ns(100 * S, 40_000, target=20_000, cap_ns=300 * S) == 50 * S
    assert next_slice_length_ns(100 * S, 1_000, target=20_000, cap_ns=300 * S) == 300 * S
    assert next_slice_length_ns(100 * S, 0, target=20_000, cap_ns=300 * S) == 300 * S
    assert next_slice_length_ns(2 * S, 10**9, target=20_000, cap_ns=300 * S) == 1 * S  # at least 1 s


def _execution(time_s: int, cum: int, leaves: int, name: str) -> SimpleNamespace:
    return SimpleNamespace(
        name=name,
        transact_time=SimpleNamespace(seconds=time_s, nanos=0),
        order=SimpleNamespace(cum_qty=cum, leaves_qty=leaves),
    )


def test_publication_order_is_venue_order_whatever_order_the_search_returned() -> None:
    # One order at one instant: NEW, two partial fills, the final fill (one venue update).
    new = _execution(10, 0, 100, "new")
    partial_1 = _execution(10, 30, 70, "partial 1")
    partial_2 = _execution(10, 60, 40, "partial 2")
    fill = _execution(10, 100, 0, "fill")
    earlier = _execution(9, 5, 0, "earlier")
    shuffled = [fill, partial_2, earlier, new, partial_1]
    assert [e.name for e in publication_order(shuffled)] == [
        "earlier",
        "new",
        "partial 1",
        "partial 2",
        "fill",
    ]
    # a cancel after a partial fill at the same instant: same cumulative quantity, closed last
    cancel = _execution(10, 30, 0, "cancel")
    assert [e.name for e in publication_order([cancel, partial_1])] == ["partial 1", "cancel"]


def test_the_filter_matches_the_subscription_and_empty_means_all() -> None:
    everything = SubscriptionFilter(frozenset(), frozenset())
    some = SubscriptionFilter(frozenset({"A-YES"}), frozenset({"firms/F/accounts/1"}))
    assert everything.matches("anything", "any")
    assert some.matches("A-YES", "firms/F/accounts/1")
    assert not some.matches("B-YES", "firms/F/accounts/1")
    assert not some.matches("A-YES", "firms/F/accounts/2")


def test_the_pacer_assumes_half_the_window_spent_at_start_then_allows_n_a_minute() -> None:
    pacer = RequestPacer(12, now=0.0)
    for second in range(6):  # a predecessor may have sent 6 just now: 6 are left
        assert pacer.wait_s(float(second)) == 0.0
        pacer.sent(float(second))
    assert pacer.wait_s(6.0) == 54.0  # the assumed ones (t=0) leave the window at t=60
    assert pacer.wait_s(60.0) == 0.0


def test_the_pacer_allows_n_in_any_minute_once_the_start_has_passed() -> None:
    pacer = RequestPacer(12, now=0.0)
    for second in range(100, 112):
        assert pacer.wait_s(float(second)) == 0.0
        pacer.sent(float(second))
    assert pacer.wait_s(112.0) == 48.0  # the first request (t=100) leaves the window at t=160


def test_the_pacer_honours_retry_after() -> None:
    pacer = RequestPacer(12, now=0.0)
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
