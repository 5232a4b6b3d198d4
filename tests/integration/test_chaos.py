"""The chaos test of issue #5: every fault at once, as processes; nothing missing, order kept.

See :mod:`tests.chaos` for the scenario. It runs on the real Kafka cluster (its broker outage is a
SIGKILL of node 1 and its restart), with ``connector.delivery: exactly_once`` (issue #15), so its
``read_committed`` check also finds no duplicate at all, across the SIGKILLs, the broker outage and
the hostile venue's own duplicates (at-least-once is what every other process test runs). It prints
its figures (``pytest -s`` shows them; they are also in the assertion messages).

It runs once per ``venue.sources`` (issue #16): the order stream alone; both streams, where every
firm execution the last checkpoint's Drop Copy position claims must be there once, whichever stream
brought it; and Drop Copy alone, which must recover every outage without one REST search (its
resume tokens all expire once a cycle: the replay by time covers that).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import run_scenario
from tests.kafka_cluster import KafkaCluster

DURATION_S = 60.0


@pytest.mark.parametrize(
    "sources",
    [("order_stream",), ("order_stream", "drop_copy"), ("drop_copy",)],
    ids=["order-stream", "both", "drop-copy"],
)
def test_no_execution_is_lost_or_doubled_under_chaos_exactly_once(
    tmp_path: Path, real_kafka: KafkaCluster, sources: tuple[str, ...]
) -> None:
    figures = run_scenario(
        tmp_path,
        DURATION_S,
        say=lambda line: print(f"[chaos {'+'.join(sources)}] {line}", flush=True),
        cluster=real_kafka,
        delivery="exactly_once",
        sources=sources,
    )
    print(figures.table())
    report = f"\n{figures.table()}\nlogs in {tmp_path}"
    faults = figures.faults
    assert faults["stream_drops"] >= 5, report
    assert faults["stalls"] >= 1 and faults["token_expiries"] >= 1 and faults["broker_outages"] >= 1, report
    assert faults["sigkill"] >= 2 and faults["sigterm"] >= 1, report
    if "order_stream" in sources:
        assert figures.rest_refusals > 0, report
    else:
        assert figures.rest_searches == 0, report  # Drop Copy resumes from its token or a time
    if "drop_copy" in sources:
        assert figures.dropcopy_claimed > 500, report
        assert figures.dropcopy_tokens_refused >= 1, report  # the expired token: resumed by time
    assert figures.connector_exits[2] == 0 and figures.connector_exits[-1] == 0, report  # the SIGTERMs
    assert figures.checked_executions > 500, report
    assert figures.missing == 0, report
    assert figures.duplicates == 0, report
    assert figures.orders_out_of_order == 0, report
