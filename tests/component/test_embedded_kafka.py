"""Component tests of the embedded Kafka: real clients (librdkafka and aiokafka) against the mock cluster."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from connector.embedded import EmbeddedKafka
from connector.embedded.control import ControlServer
from connector.errors import EmbeddedKafkaError

FAST_RECONNECT: dict[str, Any] = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


def idempotent_producer(bootstrap_servers: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **FAST_RECONNECT,
        }
    )


def consume_exactly(bootstrap_servers: str, topic: str, count: int, timeout_s: float = 30.0) -> list[Message]:
    """Consume ``count`` records with a fresh consumer group, then wait a little for any extra one."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST_RECONNECT,
        }
    )
    records: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    pytest.fail(f"consumer error: {error}")
                if error is None:
                    records.append(message)
        # Anything beyond `count` would be a duplicate: give it a chance to show up.
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error() is None:
                records.append(message)
        if records:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return records


def assert_exactly_once_in_key_order(records: list[Message], expected: dict[str, int]) -> None:
    """Every (key, seq) for seq < expected[key] arrives once, each key's sequence strictly increasing."""
    seen: dict[str, list[int]] = defaultdict(list)
    for message in records:
        key = message.key().decode()
        value = json.loads(message.value())
        assert value["key"] == key
        seen[key].append(value["seq"])
    assert set(seen) == set(expected)
    for key, sequence in seen.items():
        assert sequence == list(range(expected[key])), f"key {key}: {sequence[:20]}..."
    assert len(records) == sum(expected.values())


def test_bootstrap_lists_every_broker_and_metadata_agrees(embedded_kafka: EmbeddedKafka) -> None:
    servers = embedded_kafka.bootstrap_servers.split(",")
    assert len(servers) == 3
    assert all(server.startswith("127.0.0.1:") for server in servers)
    assert embedded_kafka.broker_ids == (1, 2, 3)
    embedded_kafka.create_topic("orders", partitions=6, replication_factor=3)
    metadata = Producer({"bootstrap.servers": embedded_kafka.bootstrap_servers}).list_topics(timeout=10)
    assert sorted(metadata.brokers) == [1, 2, 3]
    assert len(metadata.topics["orders"].partitions) == 6
    assert all(len(p.replicas) == 3 for p in metadata.topics["orders"].partitions.values())


def test_idempotent_producer_and_consumer_group_round_trip_10000_keyed_records(
    embedded_kafka: EmbeddedKafka,
) -> None:
    embedded_kafka.create_topic("orders", partitions=6, replication_factor=3)
    producer = idempotent_producer(embedded_kafka.bootstrap_servers)
    failures: list[KafkaError] = []
    acked = 0

    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        nonlocal acked
        if error is not None:
            failures.append(error)
        else:
            acked += 1

    expected: dict[str, int] = defaultdict(int)
    for i in range(10_000):
        key = f"order-{i % 97}"
        value = json.dumps({"key": key, "seq": expected[key]})
        expected[key] += 1
        producer.produce("orders", key=key, value=value, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []
    assert acked == 10_000

    records = consume_exactly(embedded_kafka.bootstrap_servers, "orders", 10_000)
    assert_exactly_once_in_key_order(records, expected)
    assert {m.partition() for m in records} == set(range(6))


def test_cluster_survives_a_broker_going_down_and_up_during_production(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("fills", partitions=3, replication_factor=3)
    producer = idempotent_producer(embedded_kafka.bootstrap_servers)
    failures: list[KafkaError] = []
    deliveries: list[tuple[float, float]] = []  # (produced at, acknowledged at)
    expected: dict[str, int] = defaultdict(int)

    def produce(n: int) -> None:
        for i in range(n):
            key = f"k{i % 31}"
            produced_at = time.monotonic()

            def on_delivery(
                error: KafkaError | None, _message: Message, produced_at: float = produced_at
            ) -> None:
                if error is not None:
                    failures.append(error)
                else:
                    deliveries.append((produced_at, time.monotonic()))

            producer.produce(
                "fills",
                key=key,
                value=json.dumps({"key": key, "seq": expected[key]}),
                on_delivery=on_delivery,
            )
            expected[key] += 1
            producer.poll(0)

    produce(1000)
    assert producer.flush(10) == 0
    leader = producer.list_topics("fills", timeout=10).topics["fills"].partitions[0].leader
    embedded_kafka.set_broker_down(leader)
    down_at = time.monotonic()
    produce(1000)
    producer.poll(1.0)  # records for the down broker's partitions are stuck now
    embedded_kafka.set_broker_up(leader)
    up_at = time.monotonic()
    produce(1000)
    assert producer.flush(30) == 0
    assert failures == []
    assert len(deliveries) == 3000
    # The outage was real: records produced while the leader was down were acked only after it came back.
    assert any(down_at <= produced < up_at and acked > up_at for produced, acked in deliveries)

    records = consume_exactly(embedded_kafka.bootstrap_servers, "fills", 3000)
    assert_exactly_once_in_key_order(records, expected)


def test_aiokafka_produces_and_consumes_with_a_consumer_group(embedded_kafka: EmbeddedKafka) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    embedded_kafka.create_topic("aio", partitions=3, replication_factor=3)
    servers = embedded_kafka.bootstrap_servers

    async def scenario() -> tuple[list[int], list[tuple[str, int]], dict[Any, int]]:
        producer = AIOKafkaProducer(bootstrap_servers=servers, enable_idempotence=True, acks="all")
        await producer.start()
        offsets: list[int] = []
        try:
            for i in range(300):
                metadata = await producer.send_and_wait(
                    "aio", key=f"k{i % 7}".encode(), value=json.dumps({"seq": i}).encode()
                )
                offsets.append(metadata.offset)
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            "aio",
            bootstrap_servers=servers,
            group_id="aio-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        received: list[tuple[str, int]] = []
        try:
            deadline = time.monotonic() + 30
            while len(received) < 300 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=500)
                for batch in batches.values():
                    received.extend((r.key.decode(), json.loads(r.value)["seq"]) for r in batch)
            await consumer.commit()
            committed = {tp: await consumer.committed(tp) for tp in consumer.assignment()}
        finally:
            await consumer.stop()
        return offsets, received, committed

    offsets, received, committed = asyncio.run(scenario())
    assert len(offsets) == 300
    assert sorted(seq for _key, seq in received) == list(range(300))
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, seq in received:
        per_key[key].append(seq)
    assert all(seqs == sorted(seqs) for seqs in per_key.values())
    assert len(committed) == 3
    assert sum(committed.values()) == 300


def test_kafka_bootstrap_servers_fixture_gives_a_working_cluster(kafka_bootstrap_servers: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = idempotent_producer(kafka_bootstrap_servers)
    for i in range(50):
        producer.produce(topic, key=b"k", value=json.dumps({"key": "k", "seq": i}))
    assert producer.flush(30) == 0
    records = consume_exactly(kafka_bootstrap_servers, topic, 50)
    assert_exactly_once_in_key_order(records, {"k": 50})


# --------------------------------------------------------------------------- errors


def test_unknown_broker_raises_embedded_kafka_error(embedded_kafka: EmbeddedKafka) -> None:
    with pytest.raises(EmbeddedKafkaError, match=r"unknown broker 4: the brokers are 1\.\.3"):
        embedded_kafka.set_broker_down(4)
    with pytest.raises(EmbeddedKafkaError, match="unknown broker 0"):
        embedded_kafka.set_broker_rtt(0, 10)


def test_c_api_refusal_is_translated_with_librdkafka_text(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("dup")
    with pytest.raises(
        EmbeddedKafkaError, match=r"could not create topic 'dup': Broker: Topic already exists"
    ):
        embedded_kafka.create_topic("dup")


@pytest.mark.parametrize(
    ("partitions", "replication_factor", "match"),
    [(0, 1, "partitions"), (-1, 1, "partitions"), (1, 0, "replication_factor"), (1, 4, "replication_factor")],
)
def test_bad_topic_arguments_are_refused_before_reaching_librdkafka(
    embedded_kafka: EmbeddedKafka, partitions: int, replication_factor: int, match: str
) -> None:
    with pytest.raises(EmbeddedKafkaError, match=match):
        embedded_kafka.create_topic("bad", partitions=partitions, replication_factor=replication_factor)


def test_use_outside_the_context_and_double_close() -> None:
    kafka = EmbeddedKafka(brokers=1)
    with pytest.raises(EmbeddedKafkaError, match="not started"):
        _ = kafka.bootstrap_servers
    with kafka:
        assert kafka.running
        assert len(kafka.bootstrap_servers.split(",")) == 1
    kafka.close()
    assert not kafka.running
    with pytest.raises(EmbeddedKafkaError, match="closed"):
        kafka.create_topic("late")
    with pytest.raises(EmbeddedKafkaError, match="only once"):
        kafka.start()


def test_push_request_errors_fail_the_next_produce_requests(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("errs")
    producer = Producer({"bootstrap.servers": embedded_kafka.bootstrap_servers, "retries": 0, "acks": "all"})
    producer.list_topics("errs", timeout=10)
    embedded_kafka.push_request_errors(0, [KafkaError.NOT_ENOUGH_REPLICAS])
    outcomes: list[KafkaError | None] = []
    producer.produce("errs", value=b"first", on_delivery=lambda err, _msg: outcomes.append(err))
    producer.flush(10)
    producer.produce("errs", value=b"second", on_delivery=lambda err, _msg: outcomes.append(err))
    producer.flush(10)
    assert outcomes[0] is not None
    assert outcomes[0].code() == KafkaError.NOT_ENOUGH_REPLICAS
    assert outcomes[1] is None
    with pytest.raises(EmbeddedKafkaError, match="api_key"):
        embedded_kafka.push_request_errors(-1, [1])


# --------------------------------------------------------------------------- control server


@pytest.fixture
def control(embedded_kafka: EmbeddedKafka) -> Iterator[ControlServer]:
    with ControlServer(embedded_kafka) as server:
        yield server


def call(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    host_port = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host_port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_control_health(control: ControlServer, embedded_kafka: EmbeddedKafka) -> None:
    assert call(control.url, "GET", "/health") == (
        200,
        {"status": "ok", "bootstrap_servers": embedded_kafka.bootstrap_servers},
    )


def test_control_bad_json_is_400(control: ControlServer) -> None:
    status, body = call(control.url, "POST", "/topics", b"{not json")
    assert status == 400
    assert "not valid JSON" in body["error"]
    status, body = call(control.url, "POST", "/topics", b"[1, 2]")
    assert (status, body) == (400, {"error": "body must be a JSON object"})


def test_control_unknown_broker_is_400_with_message(control: ControlServer) -> None:
    status, body = call(control.url, "POST", "/brokers/9/down")
    assert status == 400
    assert body["error"] == "unknown broker 9: the brokers are 1..3"
    status, body = call(control.url, "POST", "/brokers/abc/up")
    assert status == 400
    assert "positive integer" in body["error"]


def test_control_bad_fields_are_400(control: ControlServer) -> None:
    assert call(control.url, "POST", "/brokers/1/rtt", b'{"rtt_ms": "slow"}')[0] == 400
    assert call(control.url, "POST", "/brokers/1/rtt", b'{"rtt_ms": -5}')[0] == 400
    assert call(control.url, "POST", "/topics", b'{"partitions": 3}') == (
        400,
        {"error": "missing field 'name'"},
    )
    assert call(control.url, "POST", "/request-errors", b'{"api_key": 0, "errors": ["x"]}')[0] == 400


def test_control_unknown_path_is_404_and_wrong_method_405(control: ControlServer) -> None:
    assert call(control.url, "GET", "/nope")[0] == 404
    assert call(control.url, "POST", "/brokers/1/sideways")[0] == 404
    assert call(control.url, "GET", "/brokers/down")[0] == 405
    assert call(control.url, "POST", "/health")[0] == 405


def test_control_operations_reach_the_cluster(control: ControlServer, embedded_kafka: EmbeddedKafka) -> None:
    status, body = call(
        control.url,
        "POST",
        "/topics",
        json.dumps({"name": "ctl", "partitions": 4, "replication_factor": 2}).encode(),
    )
    assert (status, body["topic"], body["partitions"]) == (200, "ctl", 4)
    producer = Producer({"bootstrap.servers": embedded_kafka.bootstrap_servers})
    assert len(producer.list_topics("ctl", timeout=10).topics["ctl"].partitions) == 4
    assert call(control.url, "POST", "/topics", b'{"name": "ctl"}')[0] == 400  # already exists

    assert call(control.url, "POST", "/brokers/2/down") == (
        200,
        {"status": "ok", "broker": 2, "state": "down"},
    )
    assert call(control.url, "POST", "/brokers/2/up")[0] == 200
    assert call(control.url, "POST", "/brokers/down")[0] == 200
    assert call(control.url, "POST", "/brokers/up")[0] == 200
    assert call(control.url, "POST", "/brokers/3/rtt", b'{"rtt_ms": 0}')[0] == 200
    status, body = call(control.url, "POST", "/request-errors", b'{"api_key": 3, "errors": [5]}')
    assert (status, body["errors"]) == (200, [5])
