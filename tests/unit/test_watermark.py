"""The watermark never passes an unacknowledged event, whatever the acknowledgement order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.watermark import Position, Watermark

# An arrival's proof time, or None. Times are non-decreasing in arrival order in the live stream,
# but backfill and snapshots can bring older times, so any order is generated.
ARRIVALS = st.lists(st.none() | st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60)


def oracle(times: list[int | None], acknowledged: set[int]) -> int | None:
    """Newest time in the longest fully-acknowledged prefix (independently computed)."""
    best = None
    for sequence, time in enumerate(times):
        if sequence not in acknowledged:
            break
        if time is not None and (best is None or time > best):
            best = time
    return best


@settings(max_examples=300, deadline=None)
@given(arrivals=ARRIVALS, data=st.data())
def test_watermark_is_the_newest_proof_of_the_acknowledged_prefix(
    arrivals: list[int | None], data: st.DataObject
) -> None:
    watermark = Watermark()
    times: list[int | None] = []
    acknowledged: set[int] = set()
    pending: list[int] = []
    for time in arrivals:
        pending.append(watermark.arrive(time, execution_id=f"E{len(times)}"))
        times.append(time)
    order = data.draw(st.permutations(pending))
    count = data.draw(st.integers(min_value=0, max_value=len(order)))
    for sequence in order[:count]:
        watermark.acknowledge(sequence)
        acknowledged.add(sequence)
        expected = oracle(times, acknowledged)
        actual = watermark.position.venue_time_ns if watermark.position else None
        assert actual == expected
        assert watermark.in_flight == len(set(pending) - acknowledged)
        prefix = next((s for s in range(len(times)) if s not in acknowledged), len(times))
        assert watermark.acknowledged_through(prefix - 1)
        assert not watermark.acknowledged_through(prefix) or prefix == len(times)


def test_an_arrival_that_proves_nothing_holds_the_prefix_but_does_not_move_it() -> None:
    watermark = Watermark()
    snapshot = watermark.arrive(None, session_id="s")
    execution = watermark.arrive(300, execution_id="E2", session_id="s")
    watermark.acknowledge(execution)
    assert watermark.position is None
    watermark.acknowledge(snapshot)
    assert watermark.position == Position(300, "E2", "s")
    assert watermark.last_sequence == 1


def test_duplicate_and_unknown_acknowledgements_are_harmless() -> None:
    watermark = Watermark()
    sequence = watermark.arrive(7, execution_id="E1")
    watermark.acknowledge(sequence)
    watermark.acknowledge(sequence)
    watermark.acknowledge(12345)
    assert watermark.position == Position(7, "E1", "")
    assert watermark.in_flight == 0
