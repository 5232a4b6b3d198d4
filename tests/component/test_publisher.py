"""The publisher against a real Kafka-protocol broker: acks feed the watermark, failures freeze it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer
from pydantic import SecretStr

from connector.core.records import OutRecord
from connector.core.watermark import Watermark
from connector.embedded import EmbeddedKafka
from connector.errors import FatalProducerError, RecordRefused
from connector.kafka.publisher import KafkaPublisher, build_producer, client_config, producer_config

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


def record(topic: str, key: bytes, value: bytes, timestamp_ns: int | None = None) -> OutRecord:
    return OutRecord(topic, key, value, "execution", "stream", "s", timestamp_ns, timestamp_ns, "")


def test_enforced_guarantees_cannot_be_weakened() -> None:
    config = producer_config(
        "b:9092",
        {
            "acks": "1",
            "enable.idempotence": False,
            "linger.ms": 20,
            "message.timeout.ms": 1500,
            "enable.gapless.guarantee": False,
        },
    )
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["message.timeout.ms"] == 0, "a record is retried until delivered: no timeout gaps"
    assert config["enable.gapless.guarantee"] is True
    assert config["linger.ms"] == 20


def test_client_config_keeps_connection_settings_and_reveals_secrets_only_here() -> None:
    properties = {
        "security.protocol": "SASL_SSL",
        "sasl.password": SecretStr("hunter2"),
        "linger.ms": 20,
        "queue.buffering.max.messages": 10,
        "acks": "1",
        "enable.gapless.guarantee": True,
    }
    assert client_config("b:9092", properties) == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.password": "hunter2",
    }
    assert producer_config("b:9092", properties)["sasl.password"] == "hunter2"


def wait_for(condition: Callable[[], bool], publisher: KafkaPublisher, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        publisher.poll()
        time.sleep(0.01)


def test_acknowledged_records_advance_the_watermark(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("t.exec", partitions=3, replication_factor=3)
    watermark = Watermark()
    publisher = KafkaPublisher(
        build_producer(embedded_kafka.bootstrap_servers, FAST_RECONNECT), watermark.acknowledge
    )
    for number in range(500):
        sequence = watermark.arrive(1_000_000 + number, execution_id=f"E{number}")
        out = record(
            "t.exec", f"O{number % 7}".encode(), f"v{number}".encode(), (1_700_000_000_000 + number) * 10**6
        )
        assert publisher.try_publish(out, [("event_type", b"execution")], sequence)
        publisher.poll()
    wait_for(lambda: publisher.in_flight == 0, publisher)
    assert publisher.acknowledged["t.exec"] == 500
    assert watermark.in_flight == 0
    assert watermark.position is not None
    assert (watermark.position.venue_time_ns, watermark.position.last_execution_id) == (1_000_499, "E499")
    records = consume_all(embedded_kafka.bootstrap_servers, "t.exec", 500)
    assert len(records) == 500
    assert {timestamp for _, _, timestamp in records} == {1_700_000_000_000 + n for n in range(500)}


def test_a_record_waits_out_an_outage_longer_than_any_operator_timeout(embedded_kafka: EmbeddedKafka) -> None:
    """message.timeout.ms is enforced infinite: an outage never fails a record (no gap, no reorder)."""
    embedded_kafka.create_topic("t.wait", partitions=1, replication_factor=1)
    watermark = Watermark()
    producer = build_producer(embedded_kafka.bootstrap_servers, {**FAST_RECONNECT, "message.timeout.ms": 500})
    publisher = KafkaPublisher(producer, watermark.acknowledge)
    embedded_kafka.set_all_brokers_down()
    try:
        for number in range(3):
            assert publisher.try_publish(
                record("t.wait", b"O1", str(number).encode()), [], watermark.arrive(number)
            )
        deadline = time.monotonic() + 3  # six times the operator's timeout
        while time.monotonic() < deadline:
            publisher.poll()  # a delivery failure would raise here
            time.sleep(0.05)
        assert watermark.in_flight == 3
    finally:
        embedded_kafka.set_all_brokers_up()
    wait_for(lambda: watermark.in_flight == 0, publisher)
    assert [v for _, v, _ in consume_all(embedded_kafka.bootstrap_servers, "t.wait", 3)] == [b"0", b"1", b"2"]


def test_a_failed_delivery_is_fatal_and_never_acknowledged(embedded_kafka: EmbeddedKafka) -> None:
    """With the gapless guarantee a permanent error stops the producer: nothing after it can land first."""
    embedded_kafka.create_topic("t.fail", partitions=1, replication_factor=1)
    watermark = Watermark()
    publisher = KafkaPublisher(
        build_producer(embedded_kafka.bootstrap_servers, FAST_RECONNECT), watermark.acknowledge
    )
    first = watermark.arrive(10, execution_id="E1")
    assert publisher.try_publish(record("t.fail", b"O1", b"ok"), [], first)
    wait_for(lambda: watermark.in_flight == 0, publisher)
    embedded_kafka.push_request_errors(0, [87])  # the next Produce: INVALID_RECORD (permanent)
    second = watermark.arrive(20, execution_id="E2")
    third = watermark.arrive(30, execution_id="E3")
    assert publisher.try_publish(record("t.fail", b"O1", b"refused"), [], second)
    assert publisher.try_publish(record("t.fail", b"O1", b"behind it"), [], third)
    with pytest.raises(FatalProducerError, match=r"INVALID_RECORD|gap-less"):
        wait_for(lambda: False, publisher, timeout_s=20)
    assert watermark.position is not None and watermark.position.venue_time_ns == 10
    assert watermark.in_flight == 2
    with pytest.raises(FatalProducerError):
        publisher.try_publish(record("t.fail", b"O1", b"after"), [], None)


def test_a_record_larger_than_the_producer_takes_is_refused_for_the_dlq(
    embedded_kafka: EmbeddedKafka,
) -> None:
    embedded_kafka.create_topic("t.big", partitions=1, replication_factor=1)
    publisher = KafkaPublisher(
        build_producer(embedded_kafka.bootstrap_servers, {**FAST_RECONNECT, "message.max.bytes": 10_000}),
        lambda _sequence: None,
    )
    with pytest.raises(RecordRefused, match="larger than the producer takes"):
        publisher.try_publish(record("t.big", b"O1", b"x" * 20_000), [], None)
    assert publisher.try_publish(record("t.big", b"O1", b"small"), [], None)


def test_a_full_queue_says_so_instead_of_blocking_or_dropping(embedded_kafka: EmbeddedKafka) -> None:
    embedded_kafka.create_topic("t.full", partitions=1, replication_factor=1)
    watermark = Watermark()
    producer = build_producer(
        embedded_kafka.bootstrap_servers,
        {**FAST_RECONNECT, "queue.buffering.max.messages": 5, "linger.ms": 0},
    )
    publisher = KafkaPublisher(producer, watermark.acknowledge)
    embedded_kafka.set_all_brokers_down()
    pending = [
        (record("t.full", b"k", str(number).encode()), watermark.arrive(number)) for number in range(50)
    ]
    try:
        started = time.monotonic()
        taken = 0
        while taken < len(pending) and publisher.try_publish(pending[taken][0], [], pending[taken][1]):
            taken += 1
        assert time.monotonic() - started < 1.0, "try_publish never waits"
        assert 0 < taken < 50
    finally:
        embedded_kafka.set_all_brokers_up()
    while taken < len(pending):
        if publisher.try_publish(pending[taken][0], [], pending[taken][1]):
            taken += 1
        else:
            publisher.poll()
            time.sleep(0.01)
    wait_for(lambda: watermark.in_flight == 0, publisher)
    assert publisher.acknowledged["t.full"] == 50
    values = [int(v) for _, v, _ in consume_all(embedded_kafka.bootstrap_servers, "t.full", 50)]
    assert values == list(range(50)), "in order, none dropped"
