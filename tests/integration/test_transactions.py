"""Transactions on the real broker: fencing of a second instance, and what read_committed readers see.

The real engine and Kafka adapters (``build_engine``) in this process, on the session's three-node
KRaft cluster, fed by scripted venue streams:

- in both delivery modes, a second engine with the same connector name and subscription fences the
  first one when it starts (``init_transactions``): the first stops with one line saying another
  instance took over, and nothing it publishes after that reaches a ``read_committed`` reader;
- a standby's warm dedup seed (it tails the executions topic) holds every committed ID and no
  aborted one;
- in ``exactly_once`` mode, what the engine reports as delivered (its frontier) is committed, and
  records of a transaction that never committed (the process "crashed" with it open) are invisible
  to ``read_committed`` readers and are aborted by the next start, which re-publishes nothing
  committed.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connector.config import Settings
from connector.core.dedup import RecentExecutionIds
from connector.core.record_schemas import RecordType
from connector.engine.service import ConnectorService
from connector.errors import FatalProducerError
from connector.kafka.recent_ids import KafkaRecentIdSeeder, WarmRecentIdSeeder
from connector.kafka.topics import topic_names
from tests.engine_fixtures import (
    EmptySearch,
    ScriptedStream,
    engine_on_kafka,
    response_of,
    step_until,
    stop,
    undialled_settings,
    venue_executions,
)
from tests.kafka_cluster import KafkaCluster
from tests.records import decode, read_topic, wait_for_transaction_markers

TIMEOUT_S = 60.0


def settings_for(cluster: KafkaCluster, tmp_path: Path, delivery: str) -> Settings:
    return undialled_settings(
        cluster.bootstrap_servers,
        tmp_path / "unused.pem",
        kafka={
            "bootstrap_servers": cluster.bootstrap_servers,
            "topic_prefix": f"t{uuid.uuid4().hex[:10]}",
            "partitions": 3,
        },
        connector={
            "name": "fencing-test",
            "delivery": delivery,
            "heartbeat_interval_s": 0.2,
            "checkpoint_interval_s": 0.3,
        },
    )


def execution_ids(
    settings: Settings, isolation: str = "read_committed", *, open_transactions: bool = False
) -> list[str]:
    topic = topic_names(settings)["executions"]
    messages = read_topic(
        settings.kafka.bootstrap_servers, topic, isolation=isolation, open_transactions=open_transactions
    )
    return [decode(message.value(), RecordType.EXECUTION)["execution_id"] for message in messages]


def transactional_writer(bootstrap: str, topic: str) -> Producer:
    """Create ``topic`` (3 partitions, 3 replicas) and return a transactional producer ready for it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 3, 3)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}.writer"})
    producer.init_transactions(30)
    return producer


def step_until_fenced(service: ConnectorService, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    with pytest.raises(FatalProducerError) as raised:
        while time.monotonic() < deadline:
            time.sleep(min(service.step(), 0.01))
    return str(raised.value)


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_a_second_instance_fences_the_first_which_stops_and_publishes_nothing_more(
    real_kafka: KafkaCluster, tmp_path: Path, delivery: str
) -> None:
    settings = settings_for(real_kafka, tmp_path, delivery)
    executions = venue_executions(12)
    first_stream = ScriptedStream(response_of(execution) for execution in executions[:4])
    first, _publisher, _metrics, _status = engine_on_kafka(settings, [first_stream])
    step_until(first, lambda: first.frontier is not None and not first.in_flight, TIMEOUT_S, "delivery")
    step_until(
        first,
        lambda: len(execution_ids(settings, open_transactions=True)) == 4,
        TIMEOUT_S,
        "the first four, committed",
    )

    second, _publisher, _metrics, second_status = engine_on_kafka(
        settings, [ScriptedStream(response_of(execution) for execution in executions[8:])], EmptySearch()
    )
    step_until(second, lambda: second_status.phase == "streaming", TIMEOUT_S, "the second instance to stream")

    first_stream.push(*(response_of(execution) for execution in executions[4:8]))
    reason = step_until_fenced(first, TIMEOUT_S)
    assert "another instance with the same connector.name and subscription took over" in reason

    step_until(second, lambda: not second.in_flight, TIMEOUT_S, "the second instance's commit")
    stop(second)
    published = execution_ids(settings)
    expected = [execution.id for execution in (*executions[:4], *executions[8:])]
    assert sorted(published) == sorted(expected), "the fenced instance's records must not be readable"
    assert not {execution.id for execution in executions[4:8]} & set(
        execution_ids(settings, "read_uncommitted")
    )


def test_exactly_once_an_open_transaction_is_invisible_then_aborted_and_nothing_is_published_twice(
    real_kafka: KafkaCluster, tmp_path: Path
) -> None:
    settings = settings_for(real_kafka, tmp_path, "exactly_once")
    executions = venue_executions(10)
    stream = ScriptedStream(response_of(execution) for execution in executions[:5])
    first, publisher, _metrics, status = engine_on_kafka(settings, [stream])
    step_until(first, lambda: status.phase == "streaming" and not first.in_flight, TIMEOUT_S, "a commit")
    frontier = first.frontier
    assert frontier is not None
    assert sorted(execution_ids(settings)) == sorted(e.id for e in executions[:5])

    # A transaction that never commits (a crash): its records reach the log, not read_committed readers.
    first._sink._interval_s = 3600.0  # the engine "crashes" before this transaction's commit
    stream.push(*(response_of(execution) for execution in executions[5:]))
    step_until(
        first,
        lambda: len(execution_ids(settings, "read_uncommitted")) == 10 and publisher.in_flight == 0,
        TIMEOUT_S,
        "delivery, uncommitted",
    )
    assert first.frontier == frontier, "exactly_once: nothing uncommitted counts as delivered"
    assert sorted(execution_ids(settings, "read_uncommitted")) == sorted(e.id for e in executions)
    assert sorted(execution_ids(settings, open_transactions=True)) == sorted(e.id for e in executions[:5])

    # The next start aborts it (init_transactions) before it reads; it publishes the rest once.
    restarted, _publisher2, _metrics2, restarted_status = engine_on_kafka(
        settings, [ScriptedStream(response_of(execution) for execution in executions)], EmptySearch()
    )
    step_until(
        restarted,
        lambda: restarted_status.phase == "streaming" and not restarted.in_flight,
        TIMEOUT_S,
        "the restart's commit",
    )
    stop(restarted)
    assert sorted(execution_ids(settings)) == sorted(e.id for e in executions), "each exactly once"
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "unused"})
    try:
        topic = topic_names(settings)["executions"]
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(3)]
    finally:
        consumer.close()
    assert sum(ends) > 15, "the aborted transaction's records and the markers are in the log"


def test_a_read_committed_read_right_after_a_commit_waits_for_its_markers_and_sees_every_record(
    real_kafka: KafkaCluster,
) -> None:
    # commit_transaction returns before the coordinator has written its markers; a reader that took
    # the last stable offset as the end then would see fewer records than were committed.
    bootstrap = real_kafka.bootstrap_servers
    topic = f"t{uuid.uuid4().hex[:10]}.executions"
    producer = transactional_writer(bootstrap, topic)
    producer.begin_transaction()
    for number in range(30):
        producer.produce(topic, b"v", b"order-%d" % (number % 7))
    producer.flush(30)
    assert read_topic(bootstrap, topic, open_transactions=True) == [], "an open transaction is invisible"

    committer = threading.Timer(1.0, producer.commit_transaction, args=(30,))
    committer.start()  # the commit lands while the reader below is already looking
    try:
        assert len(read_topic(bootstrap, topic)) == 30
    finally:
        committer.join()


def test_a_standbys_warm_seed_holds_every_committed_id_since_it_began_tailing_and_none_aborted(
    real_kafka: KafkaCluster,
) -> None:
    bootstrap = real_kafka.bootstrap_servers
    topic = f"t{uuid.uuid4().hex[:10]}.executions"
    producer = transactional_writer(bootstrap, topic)

    def write(ids: range, *, commit: bool) -> None:
        producer.begin_transaction()
        for number in ids:
            producer.produce(
                topic, b"v", b"order-%d" % (number % 7), headers=[("execution_id", b"E%d" % number)]
            )
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)

    write(range(100), commit=True)  # before the tail began, but within its lookback
    cold = KafkaRecentIdSeeder(bootstrap_servers=bootstrap, properties={}, topic=topic)
    recent_ids = RecentExecutionIds(10_000)
    warm = WarmRecentIdSeeder(cold, recent_ids, lookback_s=60)
    warm.start_tailing()
    write(range(100, 200), commit=True)
    write(range(200, 300), commit=False)  # aborted: a read_committed seed must not hold these
    write(range(300, 400), commit=True)
    # commit_transaction returns before the coordinator has written the markers into every partition;
    # until then a read_committed reader's end (the last stable offset) stops short of the last batch.
    # (A takeover does not race so: its init_transactions waits for the old leader's to complete.)
    wait_for_transaction_markers(bootstrap, topic)
    seeded = warm.seed(recent_ids, time.time_ns() - 30 * 10**9)
    assert seeded == 300
    assert warm.seeded_warm, "the tail covered the resume point: no cold read"
    assert all(f"E{n}" in recent_ids for n in (*range(100), *range(100, 200), *range(300, 400)))
    assert not any(f"E{n}" in recent_ids for n in range(200, 300))

    # A resume point older than the tail's lookback: the seed is the cold one (read by time).
    again = WarmRecentIdSeeder(cold, RecentExecutionIds(10_000), lookback_s=0)
    again.start_tailing()
    fresh = RecentExecutionIds(10_000)
    assert again.seed(fresh, time.time_ns() - 3600 * 10**9) == 300
    assert not again.seeded_warm


def test_a_standby_that_began_tailing_before_the_topic_existed_still_seeds_every_committed_id(
    real_kafka: KafkaCluster,
) -> None:
    # A standby starts beside the first leader, which creates the topics: the tail begins first.
    bootstrap = real_kafka.bootstrap_servers
    topic = f"t{uuid.uuid4().hex[:10]}.executions"
    cold = KafkaRecentIdSeeder(bootstrap_servers=bootstrap, properties={}, topic=topic)
    recent_ids = RecentExecutionIds(10_000)
    warm = WarmRecentIdSeeder(cold, recent_ids, lookback_s=60)
    warm.start_tailing()
    time.sleep(1.0)  # the tail has looked for the topic and not found it
    producer = transactional_writer(bootstrap, topic)
    producer.begin_transaction()
    for number in range(200):
        producer.produce(topic, b"v", b"order-%d" % (number % 7), headers=[("execution_id", b"E%d" % number)])
    producer.commit_transaction(30)
    wait_for_transaction_markers(bootstrap, topic)
    seeded = warm.seed(recent_ids, time.time_ns() - 30 * 10**9)
    assert seeded == 200, f"the seed holds {seeded} of the 200 committed IDs (warm: {warm.seeded_warm})"
    assert all(f"E{n}" in recent_ids for n in range(200))
