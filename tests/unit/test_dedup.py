"""The bounded recent-ID set: exact matches only, oldest forgotten first."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.dedup import RecentExecutionIds


@given(ids=st.lists(st.sampled_from([f"E{i}" for i in range(30)]), max_size=200), capacity=st.integers(1, 20))
def test_matches_a_reference_fifo(ids: list[str], capacity: int) -> None:
    recent = RecentExecutionIds(capacity)
    reference: deque[str] = deque()
    for execution_id in ids:
        expected_new = execution_id not in reference
        assert recent.add(execution_id) is expected_new
        if expected_new:
            reference.append(execution_id)
            if len(reference) > capacity:
                reference.popleft()
        assert len(recent) == len(reference)
        assert all(i in recent for i in reference)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentExecutionIds(0)
