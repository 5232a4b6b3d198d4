"""What only a real broker can show: topics made by the connector, real compaction, transactions.

On the session's three-node KRaft cluster (:mod:`tests.kafka_cluster`):

- the connector creates every topic itself through CreateTopics (none is pre-created): the
  checkpoint topic compacted with one partition, the others with ``kafka.partitions``, all with
  replication 3;
- the checkpoint topic is really compacted (its segments made to roll and clean quickly), and a
  restart resumes from the compacted topic: nothing missing, nothing re-published;
- a transactional producer's committed records are what ``read_committed`` consumers see, and an
  aborted transaction's are not (the ground a later exactly-once mode builds on).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tests.chaos import CATCH_UP_TIMEOUT_S, TOPIC_ROLES, Figures, stack, streaming, verify, wait_until
from tests.kafka_cluster import KafkaCluster
from tests.process_stack import stop
from tests.records import read_topic

PARTITIONS = 6  # kafka.partitions' default
COMPACTION_TIMEOUT_S = 60.0


def topic_config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=10)
    return {name: entry.value for name, entry in entries.items()}


def compacted(bootstrap: str, topic: str) -> tuple[bool, int, int]:
    """Whether the topic's single partition has holes (records cleaned away); its records and end."""
    records = len(read_topic(bootstrap, topic, timeout_s=10))
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        probe.close()
    return records < high - low, records, high


def test_the_connector_creates_its_topics_and_resumes_from_a_compacted_checkpoint_topic(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    admin = AdminClient({"bootstrap.servers": real_kafka.bootstrap_servers})
    with stack(tmp_path, rate=20, cluster=real_kafka) as running:
        names = {role: running.topic(role) for role in TOPIC_ROLES}
        assert not set(names.values()) & set(admin.list_topics(timeout=10).topics), "pre-created"
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the first start")
        metadata = admin.list_topics(timeout=10).topics
        for role, topic in names.items():
            partitions = metadata[topic].partitions
            assert len(partitions) == (1 if role == "checkpoints" else PARTITIONS), topic
            assert all(len(p.replicas) == 3 for p in partitions.values()), topic
        checkpoints = names["checkpoints"]
        assert topic_config(admin, checkpoints)["cleanup.policy"] == "compact"
        assert topic_config(admin, names["executions"])["cleanup.policy"] == "delete"

        # Roll a segment at each checkpoint (written every second) and clean at once.
        resource = ConfigResource(
            ResourceType.TOPIC,
            checkpoints,
            incremental_configs=[
                ConfigEntry("segment.ms", "200", incremental_operation=AlterConfigOpType.SET),
                ConfigEntry("min.cleanable.dirty.ratio", "0.01", incremental_operation=AlterConfigOpType.SET),
                ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET),
            ],
        )
        admin.incremental_alter_configs([resource])[resource].result(timeout=10)
        state: list[tuple[bool, int, int]] = []

        def checkpoint_topic_compacted() -> bool:
            state.append(compacted(real_kafka.bootstrap_servers, checkpoints))
            return state[-1][0]

        wait_until(
            checkpoint_topic_compacted, COMPACTION_TIMEOUT_S, f"the log cleaner to compact {checkpoints}"
        )
        assert running.connector is not None
        assert stop(running.connector) == 0
        is_compacted, records, end = compacted(real_kafka.bootstrap_servers, checkpoints)
        assert is_compacted, (records, end)
        time.sleep(3)  # the venue trades on while the connector is down
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the restart from the compacted topic")
        time.sleep(3)
        assert stop(running.connector) == 0
        figures = Figures()
        verify(running, figures)
        second_log = (tmp_path / "run-2.log").read_text()
    print(f"checkpoint topic at restart: {records} records left of offsets 0..{end - 1}\n{figures.table()}")
    assert "resuming from the checkpoint" in second_log
    assert figures.checked_executions > 100, figures.table()
    assert figures.missing == 0, figures.table()
    assert figures.duplicates == 0, figures.table()
    assert figures.orders_out_of_order == 0, figures.table()


def consume_values(bootstrap: str, topic: str, isolation: str) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"txn-{isolation}-{uuid.uuid4()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
        }
    )
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        consumer.assign([TopicPartition(topic, 0, 0)])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
            (position,) = consumer.position([TopicPartition(topic, 0)])
            if position.offset >= high:
                break
        return values
    finally:
        consumer.close()


def test_transactions_commit_and_abort_as_read_committed_consumers_see_them(real_kafka: KafkaCluster) -> None:
    bootstrap = real_kafka.bootstrap_servers
    topic = f"txn-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3)])[topic].result(timeout=30)
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"smoke-{topic}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for index in range(10):
        producer.produce(topic, key=b"order-1", value=f"committed-{index}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for index in range(5):
        producer.produce(topic, key=b"order-1", value=f"aborted-{index}".encode())
    producer.flush(30)  # the aborted records really reach the log before the abort
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"order-1", value=b"committed-after-abort")
    producer.commit_transaction(30)

    committed = consume_values(bootstrap, topic, "read_committed")
    uncommitted = consume_values(bootstrap, topic, "read_uncommitted")
    expected = [f"committed-{index}".encode() for index in range(10)] + [b"committed-after-abort"]
    assert committed == expected
    assert [value for value in uncommitted if value.startswith(b"aborted-")] == [
        f"aborted-{index}".encode() for index in range(5)
    ], "the aborted records are in the log, only hidden from read_committed"
