"""The publisher against a real Kafka-protocol broker: acks feed the watermark, failures freeze it."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer
from pydantic import SecretStr

from connector.core.watermark import Watermark
from connector.embedded import EmbeddedKafka
from connector.kafka.publisher import Publisher, build_producer, client_config, producer_config

FAST_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


def consume_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[tuple[bytes, bytes, int]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            records.append((message.key(), message.value(), message.timestamp()[1]))
    finally:
        consumer.close()
    return records


def test_enforced_guarantees_cannot_be_weakened() -> None:
    config = producer_config("b:9092", {"acks": "1", "enable.idempotence": False, "linger.ms": 20})
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 20


def test_client_config_keeps_connection_settings_and_reveals_secrets_only_here() -> None:
    properties = {
        "security.protocol": "SASL_SSL",
        "sasl.password": SecretStr("hunter2"),
        "linger.ms": 20,
        "queue.buffering.max.messages": 10,
        "acks": "1",
    }
    assert client_config("b:9092", properties) == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "hunter2",
    }
    assert producer_config("b:9092", properties)["sasl.password"] == "hunter2"


def test_acknowledged_records_advance_the_watermark(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("t.exec", partitions=3, replication_factor=3)
    watermark = Watermark()
    publisher = Publisher(build_producer(embedded_kafka.bootstrap_servers, FAST_RECONNECT), watermark)
    for number in range(500):
        sequence = watermark.arrive(1_000_000 + number, execution_id=f"E{number}")
        publisher.publish(
            "t.exec",
            f"O{number % 7}".encode(),
            f"v{number}".encode(),
            headers=[("event_type", b"execution")],
            timestamp_ms=1_700_000_000_000 + number,
            sequence=sequence,
        )
        publisher.poll()
    assert publisher.flush(30) == 0
    assert publisher.counts.acknowledged["t.exec"] == 500
    assert watermark.in_flight == 0
    assert watermark.position is not None
    assert (watermark.position.venue_time_ns, watermark.position.last_execution_id) == (1_000_499, "E499")
    records = consume_all(embedded_kafka.bootstrap_servers, "t.exec", 500)
    assert len(records) == 500
    assert {timestamp for _, _, timestamp in records} == {1_700_000_000_000 + n for n in range(500)}


def test_a_failed_delivery_freezes_the_watermark_and_is_counted(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("t.fail", partitions=1, replication_factor=1)
    watermark = Watermark()
    producer = build_producer(
        embedded_kafka.bootstrap_servers, {**FAST_RECONNECT, "message.timeout.ms": 1500}
    )
    publisher = Publisher(producer, watermark)
    first = watermark.arrive(10, execution_id="E1")
    publisher.publish("t.fail", b"O1", b"ok", sequence=first)
    assert publisher.flush(20) == 0
    embedded_kafka.set_all_brokers_down()
    try:
        second = watermark.arrive(20, execution_id="E2")
        publisher.publish("t.fail", b"O1", b"lost", sequence=second)
        deadline = time.monotonic() + 20
        while watermark.failure is None and time.monotonic() < deadline:
            publisher.poll(0.2)
    finally:
        embedded_kafka.set_all_brokers_up()
    assert watermark.failure is not None and watermark.failure.sequence == second
    assert watermark.failure.reason == "_MSG_TIMED_OUT"
    assert watermark.position is not None and watermark.position.venue_time_ns == 10
    assert publisher.counts.errors[("t.fail", "_MSG_TIMED_OUT")] == 1


def test_a_full_queue_blocks_the_caller_instead_of_dropping(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("t.full", partitions=1, replication_factor=1)
    watermark = Watermark()
    producer = build_producer(
        embedded_kafka.bootstrap_servers,
        {**FAST_RECONNECT, "queue.buffering.max.messages": 5, "linger.ms": 0},
    )
    publisher = Publisher(producer, watermark)
    embedded_kafka.set_all_brokers_down()
    started = time.monotonic()
    blocked_for = 0.0

    def restore_soon() -> None:
        time.sleep(1.5)
        embedded_kafka.set_all_brokers_up()

    restorer = threading.Thread(target=restore_soon)
    restorer.start()
    try:
        for number in range(50):
            publisher.publish("t.full", b"k", str(number).encode(), sequence=watermark.arrive(number))
        blocked_for = time.monotonic() - started
    finally:
        restorer.join()
    assert publisher.flush(30) == 0
    assert blocked_for >= 1.0, "publish must wait for room while the brokers are down"
    assert publisher.counts.acknowledged["t.full"] == 50
    assert sorted(int(v) for _, v, _ in consume_all(embedded_kafka.bootstrap_servers, "t.full", 50)) == list(
        range(50)
    )
