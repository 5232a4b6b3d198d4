"""Simulator + embedded Kafka + the pipeline in-process: every venue execution in Kafka exactly once.

The venue's journal is the ground truth. Records are decoded with fastavro from the ``.avsc``
files alone (single-object encoding), by a reader we did not write.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.config import Settings
from connector.core.record_schemas import RecordType
from connector.core.venue_time import ns_from_timestamp
from connector.embedded import EmbeddedKafka
from connector.kafka.topics import topic_names
from connector.simulator import SimulatedVenue, SimulatorConfig
from tests.records import decode, read_topic
from tests.registry_fixtures import FakeSchemaRegistry
from tests.service_fixtures import connector_settings, frontier_ns, running_connector, wait_until


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[SimulatedVenue]:
    config = SimulatorConfig(
        seed=11,
        rate=0.0,
        warmup_updates=40,
        heartbeat_interval_s=0.2,
        journal_path=tmp_path / "journal.jsonl",
    )
    with SimulatedVenue(config) as simulated:
        yield simulated


def stream_into_kafka(venue: SimulatedVenue, settings: Settings, embedded_kafka: EmbeddedKafka) -> int:
    """Run the connector on the live stream for 3 s of venue trading; return the journal cut."""
    for topic in topic_names(settings).values():
        embedded_kafka.create_topic(topic, partitions=3, replication_factor=3)
    with running_connector(settings) as built:
        snapshot_orders = built.metrics.events_received.labels("snapshot_order")
        wait_until(lambda: snapshot_orders._value.get() > 0, 20, "the snapshot")
        cut = venue.journal.last_seq
        venue.set_rate(200.0)
        time.sleep(3.0)
        venue.set_rate(0.0)
        last_seq = venue.journal.last_seq
        last_time = max(
            ns_from_timestamp(entry.execution.transact_time) for entry in venue.journal.executions()
        )
        # heartbeats every 0.2 s follow the last update and prove the quiet stream complete
        wait_until(
            lambda: (frontier_ns(built) or 0) >= last_time // 1000 * 1000, 20, "F to pass the last fill"
        )
        dead = built.metrics.registry.get_sample_value(
            "pmx_connector_dlq_records_total", {"reason": "MappingError"}
        )
        assert not dead
    assert venue.journal.last_seq == last_seq
    return cut


def test_every_journal_execution_reaches_kafka_once(
    venue: SimulatedVenue, embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    settings = connector_settings(
        venue, embedded_kafka.bootstrap_servers, tmp_path, connector={"name": "e2e"}
    )
    cut = stream_into_kafka(venue, settings, embedded_kafka)
    bootstrap = embedded_kafka.bootstrap_servers
    topics = topic_names(settings)

    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    snapshots = [
        decode(m.value(), RecordType.ORDER_SNAPSHOT) for m in read_topic(bootstrap, topics["snapshots"])
    ]
    assert snapshots, "the warm-up left open orders, so the snapshot is not empty"
    assert {r["snapshot_size"] for r in snapshots} == {len(snapshots)}
    assert all(r["source"] == "SNAPSHOT" for r in snapshots)

    published: dict[str, list[str]] = defaultdict(list)  # order id -> execution ids, in Kafka order
    for message in read_topic(bootstrap, topics["executions"]):
        record = decode(message.value(), RecordType.EXECUTION)
        headers = dict(message.headers())
        assert message.key() == record["order_id"].encode()
        assert headers["execution_id"] == record["execution_id"].encode()
        assert (headers["event_type"], headers["source"], headers["connector"]) == (
            b"execution",
            b"stream",
            b"e2e",
        )
        assert headers["session_id"] == record["session_id"].encode() != b""
        assert message.timestamp()[1] == record["transact_time"] // 1_000_000
        assert record["execution"]["id"] == record["execution_id"]
        published[record["order_id"]].append(record["execution_id"])

    # Ground truth: every execution the venue produced after the stream subscribed (the flow was
    # paused while it subscribed, so the journal's sequence at that moment is the exact cut).
    venue_order: dict[str, list[str]] = defaultdict(list)
    for entry in journal:
        if entry["kind"] == "execution" and entry["seq"] > cut:
            venue_order[entry["order_id"]].append(entry["execution_id"])
    streamed = {execution_id for ids in venue_order.values() for execution_id in ids}
    in_kafka = [execution_id for ids in published.values() for execution_id in ids]
    assert len(streamed) > 100, "the venue traded while the stream was connected"
    assert streamed - set(in_kafka) == set(), "executions missing from Kafka"
    assert len(in_kafka) == len(set(in_kafka)), "duplicates in Kafka"
    assert set(in_kafka) == streamed
    assert dict(published) == dict(venue_order), "per-order order differs from the venue's"
    cancel_rejects = [e for e in journal if e["kind"] == "cancel_reject" and e["seq"] > cut]
    assert len(read_topic(bootstrap, topics["cancel_rejects"])) == len(cancel_rejects)


def test_registry_mode_records_decode_with_confluents_deserializer_via_aiokafka(
    venue: SimulatedVenue, embedded_kafka: EmbeddedKafka, tmp_path: Path, fake_registry: FakeSchemaRegistry
) -> None:
    """Confluent framing through a registry on loopback; read by aiokafka, decoded by AvroDeserializer."""
    settings = connector_settings(
        venue, embedded_kafka.bootstrap_servers, tmp_path, schema_registry={"url": fake_registry.url}
    )
    cut = stream_into_kafka(venue, settings, embedded_kafka)
    registry = SchemaRegistryClient.new_client({"url": fake_registry.url})
    executions_topic = topic_names(settings)["executions"]
    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    expected = {e["execution_id"] for e in journal if e["kind"] == "execution" and e["seq"] > cut}

    async def consume() -> list[tuple[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            executions_topic,
            bootstrap_servers=embedded_kafka.bootstrap_servers,
            group_id="e2e-aiokafka",
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            # librdkafka's mock cluster writes the transaction markers' batches with a CRC that
            # aiokafka rejects (a real broker's pass: tests/integration/test_transactions.py).
            check_crcs=False,
        )
        await consumer.start()
        try:
            records: list[tuple[bytes, bytes]] = []
            deadline = time.monotonic() + 30
            while len(records) < len(expected) and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                records.extend((m.key, m.value) for batch in batches.values() for m in batch)
            return records
        finally:
            await consumer.stop()

    records = asyncio.run(consume())
    deserialize = AvroDeserializer(registry)
    context = SerializationContext(executions_topic, MessageField.VALUE)
    decoded = [deserialize(value, context) for _key, value in records]
    assert all(value[0] == 0 for _key, value in records), "Confluent magic byte"
    assert [key for key, _value in records] == [d["order_id"].encode() for d in decoded]
    assert sorted(d["execution_id"] for d in decoded) == sorted(expected)
