"""Checkpoints under sustained backpressure: Kafka taking records slower than the venue sends them.

A checkpoint skipped whenever records wait for room in the producer's queue is never written while
the backlog lasts; a crash then restarts from an old checkpoint, or, on a first start from ``now``,
from no checkpoint at all (``make bench`` lost 14,705 executions that way).
"""

from __future__ import annotations

import dataclasses
import itertools

from tests.simulation.world import CHECKPOINTS, World, scenario


def test_checkpoints_keep_coming_while_the_producer_queue_stays_full() -> None:
    plan = scenario(7)
    plan = dataclasses.replace(
        plan,
        faults=(),
        producer_capacity=20,  # room for 20 records, acknowledged 0.2-1.0 s later: a slow broker
        ack_latency_s=(0.2, 1.0),
        setup=dataclasses.replace(plan.setup, updates_per_s=80.0),
        engine=dataclasses.replace(plan.engine, checkpoint_interval_s=1.0),
    )
    outcome = World(plan).run()
    written = [stored.appended_at for stored in outcome.kafka.records(CHECKPOINTS)[0]]
    during_the_flow = [at for at in written if at < plan.duration_s]
    gaps = [later - earlier for earlier, later in itertools.pairwise(during_the_flow)]
    assert len(during_the_flow) >= plan.duration_s / 2, f"only {len(during_the_flow)} checkpoints: {written}"
    assert max(gaps) < 5.0, f"a {max(gaps):.1f} s stretch without a checkpoint (interval 1 s)"
