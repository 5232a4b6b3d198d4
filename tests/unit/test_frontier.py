"""The completeness frontier F: frozen during a recovery, then the watermark, never backwards."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.watermark import Position, Watermark
from connector.engine.frontier import Frontier


def test_f_stays_at_the_resume_point_until_the_recovery_is_published_and_acknowledged() -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, Position(1_000, "E0", "old"))
    frontier.begin_recovery()
    live = watermark.arrive(5_000, execution_id="E-live")
    watermark.acknowledge(live)
    assert frontier.value() == Position(1_000, "E0", "old")  # a live fill proves nothing yet
    backfilled = watermark.arrive(2_000, execution_id="E-backfill")
    frontier.recovery_published(backfilled)
    assert frontier.value() == Position(1_000, "E0", "old")  # the backfill is not acknowledged
    watermark.acknowledge(backfilled)
    assert frontier.recovered
    assert frontier.value() == Position(5_000, "E-live", "")


def test_f_never_goes_below_the_resume_point() -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, Position(9_000, "E9", "s"))
    frontier.begin_recovery()
    old = watermark.arrive(100, execution_id="E-old")
    watermark.acknowledge(old)
    frontier.recovery_published(old)
    assert frontier.value() == Position(9_000, "E9", "s")


def test_a_first_start_from_now_has_no_frontier_until_the_stream_proves_one() -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, None)
    frontier.begin_recovery()
    assert frontier.value() is None
    frontier.recovery_published(watermark.last_sequence)
    sequence = watermark.arrive(700, execution_id="E1")
    assert frontier.value() is None
    watermark.acknowledge(sequence)
    assert frontier.value() == Position(700, "E1", "")


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_f_is_monotonic_across_recoveries_whatever_the_acknowledgement_order(data: st.DataObject) -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, Position(0, "", ""))
    pending: list[int] = []
    seen = [0]
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        frontier.begin_recovery()
        for _ in range(data.draw(st.integers(min_value=0, max_value=8))):
            pending.append(watermark.arrive(data.draw(st.integers(min_value=0, max_value=1_000))))
        frontier.recovery_published(watermark.last_sequence)
        for sequence in data.draw(st.permutations(pending))[: data.draw(st.integers(0, len(pending)))]:
            watermark.acknowledge(sequence)
            pending.remove(sequence)
            value = frontier.value()
            assert value is not None
            assert value.venue_time_ns >= seen[-1]
            seen.append(value.venue_time_ns)


def test_a_completed_recovery_proves_its_window_even_on_a_quiet_market() -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, Position(1_000, "E0", "s"))
    frontier.begin_recovery()
    gap_record = watermark.arrive(None)
    frontier.recovery_published(gap_record, proven_ns=9_000)
    assert frontier.value() == Position(1_000, "E0", "s"), "not before the recovery's records are in"
    watermark.acknowledge(gap_record)
    assert frontier.value() == Position(9_000, "E0", "")
    frontier.begin_recovery()
    assert frontier.value() == Position(9_000, "E0", ""), "the next recovery starts from there"


def test_an_interrupted_recovery_keeps_the_slices_it_proved() -> None:
    watermark = Watermark()
    frontier = Frontier(watermark, Position(1_000, "E0", "s"))
    frontier.begin_recovery()
    first = watermark.arrive(1_500, execution_id="E1")
    frontier.proven(first, 2_000)
    live = watermark.arrive(50_000, execution_id="E-live")  # beside the backfill
    second = watermark.arrive(2_500, execution_id="E2")
    frontier.proven(second, 3_000)
    watermark.acknowledge(first)
    assert frontier.value() == Position(2_000, "E0", "")
    watermark.acknowledge(second)
    assert frontier.value() == Position(2_000, "E0", ""), "the live record before the second slice is not in"
    watermark.acknowledge(live)
    assert frontier.value() == Position(3_000, "E0", ""), "a slice's end, never the live watermark"
    frontier.begin_recovery()  # the stream dropped: the next recovery starts from the last slice
    assert frontier.resume == Position(3_000, "E0", "")
