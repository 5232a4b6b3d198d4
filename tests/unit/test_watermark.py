"""The watermark never passes an unacknowledged event, whatever the acknowledgement order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.watermark import Position, Watermark

# An arrival: (venue time or None, is a heartbeat). Times are non-decreasing in arrival order in the
# live stream, but backfill and snapshots can bring older times, so any order is generated.
ARRIVALS = st.lists(
    st.tuples(st.none() | st.integers(min_value=0, max_value=10_000), st.booleans()), min_size=1, max_size=60
)


def oracle(times: list[int | None], acknowledged: set[int], start: int | None) -> int | None:
    """Newest time in the longest fully-acknowledged prefix (independently computed)."""
    best = start
    for sequence, time in enumerate(times):
        if sequence not in acknowledged:
            break
        if time is not None and (best is None or time > best):
            best = time
    return best


@settings(max_examples=300, deadline=None)
@given(arrivals=ARRIVALS, data=st.data())
def test_watermark_is_the_newest_time_of_the_acknowledged_prefix(
    arrivals: list[tuple[int | None, bool]], data: st.DataObject
) -> None:
    start = data.draw(st.none() | st.integers(min_value=0, max_value=5_000))
    watermark = Watermark(Position(start, "", "") if start is not None else None)
    times: list[int | None] = []
    acknowledged: set[int] = set()
    pending: list[int] = []
    for time, heartbeat in arrivals:
        if heartbeat and time is not None:
            watermark.arrive_heartbeat(time)
            acknowledged.add(len(times))
        else:
            pending.append(watermark.arrive(time, execution_id=f"E{len(times)}"))
        times.append(time)
    order = data.draw(st.permutations(pending))
    count = data.draw(st.integers(min_value=0, max_value=len(order)))
    for sequence in order[:count]:
        watermark.acknowledge(sequence)
        acknowledged.add(sequence)
        expected = oracle(times, acknowledged, start)
        actual = watermark.position.venue_time_ns if watermark.position else None
        assert actual == expected
        assert watermark.in_flight == len(set(pending) - acknowledged)


@settings(max_examples=200, deadline=None)
@given(arrivals=ARRIVALS, data=st.data())
def test_a_failure_freezes_the_watermark(
    arrivals: list[tuple[int | None, bool]], data: st.DataObject
) -> None:
    watermark = Watermark()
    sequences = [watermark.arrive(time) for time, _ in arrivals]
    failed = data.draw(st.sampled_from(sequences))
    order = data.draw(st.permutations([s for s in sequences if s != failed]))
    split = data.draw(st.integers(min_value=0, max_value=len(order)))
    for sequence in order[:split]:
        watermark.acknowledge(sequence)
    watermark.fail(failed, "MSG_TIMED_OUT")
    frozen = watermark.position
    for sequence in order[split:]:
        watermark.acknowledge(sequence)
    watermark.acknowledge(failed)  # even a late success does not unfreeze it
    assert watermark.position == frozen
    assert watermark.failure is not None and watermark.failure.sequence == failed
    times_before = [t for t, _ in arrivals[:failed] if t is not None]
    if frozen is not None:
        assert frozen.venue_time_ns <= max(times_before)


def test_heartbeat_advances_a_quiet_stream_once_earlier_events_are_acknowledged() -> None:
    watermark = Watermark()
    first = watermark.arrive(100, execution_id="E1", session_id="s")
    watermark.arrive_heartbeat(500, session_id="s")
    assert watermark.position is None  # E1 is not acknowledged yet
    watermark.acknowledge(first)
    assert watermark.position == Position(500, "E1", "s")
    assert watermark.in_flight == 0


def test_the_watermark_never_goes_back_below_the_checkpoint() -> None:
    watermark = Watermark(Position(1_000, "E9", "old"))
    watermark.acknowledge(watermark.arrive(400, execution_id="E-backfilled"))
    assert watermark.position == Position(1_000, "E9", "old")


def test_duplicate_and_unknown_acknowledgements_are_harmless() -> None:
    watermark = Watermark()
    sequence = watermark.arrive(7, execution_id="E1")
    watermark.acknowledge(sequence)
    watermark.acknowledge(sequence)
    watermark.acknowledge(12345)
    assert watermark.position == Position(7, "E1", "")
    assert watermark.failure is None


@settings(max_examples=200, deadline=None)
@given(arrivals=ARRIVALS, data=st.data())
def test_a_restart_keeps_the_frozen_position_and_ignores_late_callbacks_of_the_old_run(
    arrivals: list[tuple[int | None, bool]], data: st.DataObject
) -> None:
    watermark = Watermark()
    old = [watermark.arrive(time) for time, _ in arrivals]
    failed = data.draw(st.sampled_from(old))
    for sequence in data.draw(st.permutations([s for s in old if s != failed])):
        watermark.acknowledge(sequence)
    watermark.fail(failed, "MSG_TIMED_OUT")
    frozen = watermark.position

    watermark.restart()  # the pipeline re-reads the venue from the frozen position

    assert watermark.failure is None
    assert watermark.position == frozen
    assert watermark.in_flight == 0
    new = watermark.arrive(20_000, execution_id="E-new")
    watermark.acknowledge(failed)  # a late callback from before the restart changes nothing
    assert watermark.position == frozen
    watermark.acknowledge(new)
    assert watermark.position == Position(20_000, "E-new", "")
