"""Simulator + embedded Kafka + the pipeline in-process: every venue execution in Kafka exactly once.

The venue's journal is the ground truth. Records are decoded with fastavro from the ``.avsc``
files alone (single-object encoding), by a reader we did not write.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.config import VenueSettings
from connector.core.dedup import RecentExecutionIds
from connector.core.mapping import RecordMapper
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.watermark import Watermark
from connector.embedded import EmbeddedKafka
from connector.engine.pipeline import Pipeline, Topics
from connector.kafka.encoding import Encoder, SingleObjectEncoder, registry_encoder
from connector.kafka.publisher import Publisher, build_producer
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.venue.auth import TokenProvider, load_private_key
from connector.venue.stream import OrderStreamClient, StreamEnded, open_channel, read
from tests.records import decode, read_topic

TOPICS = Topics("e2e.executions", "e2e.snapshots", "e2e.cancel-rejects", "e2e.dlq")


class CountingObserver:
    def __init__(self) -> None:
        self.events: dict[str, int] = defaultdict(int)
        self.heartbeats = 0
        self.duplicates = 0
        self.dead_letters: list[tuple[str, str]] = []

    def event_received(
        self, event_type: str, received_time_ns: int, processed_sent_time_ns: int | None
    ) -> None:
        self.events[event_type] += 1

    def venue_heartbeat(self, processed_sent_time_ns: int | None, session_id: str) -> None:
        self.heartbeats += 1

    def duplicate_dropped(self) -> None:
        self.duplicates += 1

    def dead_lettered(self, event_type: str, reason: str) -> None:
        self.dead_letters.append((event_type, reason))


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


def stream_into_kafka(
    venue: SimulatedVenue,
    embedded_kafka: EmbeddedKafka,
    tmp_path: Path,
    encoders: Mapping[RecordType, Encoder],
) -> int:
    """Run the pipeline on the live stream for 3 s of venue trading; return the journal cut."""
    for topic in (TOPICS.executions, TOPICS.snapshots, TOPICS.cancel_rejects, TOPICS.dlq):
        embedded_kafka.create_topic(topic, partitions=3, replication_factor=3)
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(venue.generate_client_key())
    endpoints = venue.endpoints
    settings = VenueSettings(
        grpc_target=endpoints.grpc_target,
        rest_url=endpoints.rest_url,
        insecure=True,
        participant_id=endpoints.participant_id,
    )
    tokens = TokenProvider(
        key=load_private_key(key_file),
        client_id=endpoints.client_id,
        token_url=endpoints.token_url,
        audience=endpoints.audience,
    )
    watermark = Watermark()
    publisher = Publisher(build_producer(embedded_kafka.bootstrap_servers, {}), watermark)
    observer = CountingObserver()
    pipeline = Pipeline(
        mapper=RecordMapper.for_venue(),
        encoders=encoders,
        sink=publisher,
        watermark=watermark,
        topics=TOPICS,
        connector_name="e2e",
        recent_ids=RecentExecutionIds(100_000),
        observer=observer,
    )
    channel = open_channel(settings)
    stream = OrderStreamClient(channel, settings, tokens.token).open()
    ended: list[StreamEnded] = []

    def reader() -> None:
        try:
            for response in read(stream):
                pipeline.on_response(response, time.time_ns())
        except StreamEnded as exc:
            ended.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while observer.events["snapshot_order"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        cut = venue.journal.last_seq
        venue.set_rate(200.0)
        time.sleep(3.0)
        venue.set_rate(0.0)
        last_seq = venue.journal.last_seq
        time.sleep(0.5)  # heartbeats every 0.2 s follow the last update
        stream.cancel()
        thread.join(timeout=10)
    finally:
        channel.close()
    assert ended and ended[0].status == "CANCELLED"
    publisher.poll(0)
    assert publisher.flush(30) == 0
    assert watermark.in_flight == 0 and watermark.failure is None
    assert observer.dead_letters == []
    assert venue.journal.last_seq == last_seq
    return cut


def test_every_journal_execution_reaches_kafka_once(
    venue: SimulatedVenue, embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    cut = stream_into_kafka(
        venue, embedded_kafka, tmp_path, {t: SingleObjectEncoder(schema_dict(t)) for t in RecordType}
    )
    bootstrap = embedded_kafka.bootstrap_servers

    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    snapshots = [
        decode(m.value(), RecordType.ORDER_SNAPSHOT) for m in read_topic(bootstrap, TOPICS.snapshots)
    ]
    assert snapshots, "the warm-up left open orders, so the snapshot is not empty"
    assert {r["snapshot_size"] for r in snapshots} == {len(snapshots)}
    assert all(r["source"] == "SNAPSHOT" for r in snapshots)

    published: dict[str, list[str]] = defaultdict(list)  # order id -> execution ids, in Kafka order
    for message in read_topic(bootstrap, TOPICS.executions):
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
    assert len(read_topic(bootstrap, TOPICS.cancel_rejects)) == len(cancel_rejects)


def test_registry_mode_records_decode_with_confluents_deserializer_via_aiokafka(
    venue: SimulatedVenue, embedded_kafka: EmbeddedKafka, tmp_path: Path
) -> None:
    """Confluent framing through a mock:// registry; read by aiokafka, decoded by AvroDeserializer."""
    registry = SchemaRegistryClient.new_client({"url": "mock://e2e"})
    encoders = {t: registry_encoder(registry, schema_dict(t)) for t in RecordType}
    cut = stream_into_kafka(venue, embedded_kafka, tmp_path, encoders)
    journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    expected = {e["execution_id"] for e in journal if e["kind"] == "execution" and e["seq"] > cut}

    async def consume() -> list[tuple[bytes, bytes]]:
        consumer = AIOKafkaConsumer(
            TOPICS.executions,
            bootstrap_servers=embedded_kafka.bootstrap_servers,
            group_id="e2e-aiokafka",
            auto_offset_reset="earliest",
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
    context = SerializationContext(TOPICS.executions, MessageField.VALUE)
    decoded = [deserialize(value, context) for _key, value in records]
    assert all(value[0] == 0 for _key, value in records), "Confluent magic byte"
    assert [key for key, _value in records] == [d["order_id"].encode() for d in decoded]
    assert sorted(d["execution_id"] for d in decoded) == sorted(expected)
