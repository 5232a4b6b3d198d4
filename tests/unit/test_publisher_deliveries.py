"""The publisher's delivery callbacks: each acknowledgement reaches the watermark as its own record's
sequence, whatever order Kafka acknowledges partitions in; failures stay fatal.

A stand-in producer keeps each record's ``on_delivery`` and serves the ones a test chooses, in the
order it chooses, on the next ``poll``: Kafka acknowledges one partition's records in produce order,
but partitions relative to each other in any order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from connector.core.records import OutRecord
from connector.core.watermark import Position, Watermark
from connector.errors import FatalProducerError, RecordRefused
from connector.kafka.publisher import KafkaPublisher, producer_config


@dataclass
class Produced:
    topic: str
    key: bytes
    timestamp: int
    on_delivery: Any


class StandInProducer:
    """Takes records; serves the delivery callbacks a test releases, on the next ``poll``."""

    def __init__(self) -> None:
        self.produced: list[Produced] = []
        self._released: list[tuple[Produced, KafkaError | None]] = []
        self._pending = 0
        self.refuse: KafkaError | None = None

    def produce(  # noqa: PLR0917 - confluent-kafka's signature, called positionally
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        del value, headers
        assert partition == -1, "the configured partitioner chooses"
        assert (callback is None) != (on_delivery is None), "one delivery callback per record"
        if self.refuse is not None:
            raise KafkaException(self.refuse)
        self.produced.append(Produced(topic, key or b"", timestamp, callback or on_delivery))
        self._pending += 1

    def release(self, produced: Produced, error: KafkaError | None = None) -> None:
        self._released.append((produced, error))

    def poll(self, _timeout: float) -> int:
        released, self._released = self._released, []
        for produced, error in released:
            self._pending -= 1
            produced.on_delivery(error, None)
        return len(released)

    def flush(self, _timeout: float) -> int:
        self.poll(0)
        return self._pending

    def __len__(self) -> int:
        return self._pending


def execution(topic: str, number: int, time_ns: int | None) -> OutRecord:
    return OutRecord(topic, b"O%d" % number, b"v", "execution", "stream", "s", time_ns, time_ns, f"E{number}")


def test_acknowledgements_across_partitions_in_any_order_acknowledge_their_own_sequences() -> None:
    rng = random.Random(7)
    producer = StandInProducer()
    watermark = Watermark()
    acknowledged: list[int] = []

    def acknowledge(sequence: int) -> None:
        acknowledged.append(sequence)
        watermark.acknowledge(sequence)

    publisher = KafkaPublisher(producer, acknowledge)  # type: ignore[arg-type]
    partitions: dict[int, list[tuple[Produced, int]]] = {0: [], 1: [], 2: []}
    for number in range(60):
        sequence = watermark.arrive(1_000 + number, f"E{number}", "s")
        assert publisher.try_publish(execution("t.exec", number, 1_000 + number), [], sequence)
        partitions[rng.randrange(3)].append((producer.produced[-1], sequence))
    # Partition 2 is acknowledged first, then 0 and 1 interleaved at random, each in produce order.
    expected: list[int] = []
    for produced, sequence in partitions[2]:
        producer.release(produced)
        expected.append(sequence)
    publisher.poll()
    assert acknowledged == expected
    prefix = next(sequence for sequence in range(60) if sequence not in expected)
    assert not watermark.acknowledged_through(prefix)
    expected_position = None if prefix == 0 else Position(1_000 + prefix - 1, f"E{prefix - 1}", "s")
    assert watermark.position == expected_position, "F-side: only the acknowledged prefix counts"
    queues = [list(partitions[0]), list(partitions[1])]
    while any(queues):
        queue = rng.choice([queue for queue in queues if queue])
        produced, sequence = queue.pop(0)
        producer.release(produced)
        expected.append(sequence)
        if rng.random() < 0.3:
            publisher.poll()
    publisher.poll()
    assert acknowledged == expected
    assert sorted(acknowledged) == list(range(60))
    assert watermark.in_flight == 0
    assert watermark.position == Position(1_059, "E59", "s")
    assert publisher.in_flight == 0
    assert publisher.acknowledged["t.exec"] == 60


def test_records_without_a_sequence_are_delivered_but_acknowledge_nothing() -> None:
    producer = StandInProducer()
    acknowledged: list[int] = []
    publisher = KafkaPublisher(producer, acknowledged.append)  # type: ignore[arg-type]
    heartbeat = OutRecord("t.hb", b"c", b"v", "ConnectorHeartbeat", "connector", "", None, None, "")
    assert publisher.try_publish(heartbeat, [], None)
    assert publisher.try_publish(execution("t.exec", 1, 5_000_000), [], 0)
    for produced in reversed(producer.produced):
        producer.release(produced)
    publisher.poll()
    assert acknowledged == [0]
    assert publisher.acknowledged == {"t.hb": 1, "t.exec": 1}


def test_the_delivered_report_comes_once_per_poll_per_topic_with_each_records_venue_time() -> None:
    producer = StandInProducer()
    reports: list[tuple[str, list[int | None]]] = []
    publisher = KafkaPublisher(
        producer,  # type: ignore[arg-type]
        lambda _sequence: None,
        lambda topic, times: reports.append((topic, list(times))),
    )
    for number, topic in enumerate(["a", "b", "a", "a"]):
        publisher.try_publish(execution(topic, number, 1_000_000 * (number + 1)), [], number)
    publisher.try_publish(OutRecord("b", b"k", b"v", "GapDetected", "connector", "", None, None, ""), [], 4)
    assert [produced.timestamp for produced in producer.produced] == [1, 2, 3, 4, 0]
    for produced in producer.produced:
        producer.release(produced)
    publisher.poll()
    assert reports == [("a", [1_000_000, 3_000_000, 4_000_000]), ("b", [2_000_000, None])]
    publisher.poll()
    assert len(reports) == 2, "nothing new acknowledged: nothing reported"


def test_a_failed_delivery_is_fatal_and_the_ones_before_it_still_count() -> None:
    producer = StandInProducer()
    acknowledged: list[int] = []
    failed: list[tuple[str, str]] = []
    publisher = KafkaPublisher(
        producer,  # type: ignore[arg-type]
        acknowledged.append,
        on_failed=lambda topic, error: failed.append((topic, error)),
    )
    for number in range(3):
        publisher.try_publish(execution("t.exec", number, 1), [], number)
    first, second, third = producer.produced
    producer.release(second)
    producer.release(first, KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    producer.release(third)
    with pytest.raises(FatalProducerError, match=r"delivery to t\.exec failed: TOPIC_AUTHORIZATION_FAILED"):
        publisher.poll()
    assert acknowledged == [1, 2], "a failure acknowledges nothing; the others are Kafka's"
    assert publisher.acknowledged["t.exec"] == 2
    assert failed == [("t.exec", "TOPIC_AUTHORIZATION_FAILED")], "counted (produce_errors_total)"
    with pytest.raises(FatalProducerError):
        publisher.try_publish(execution("t.exec", 4, 1), [], 3)


def test_a_record_larger_than_the_producer_takes_is_refused_and_other_produce_errors_are_fatal() -> None:
    producer = StandInProducer()
    publisher = KafkaPublisher(producer, lambda _sequence: None)  # type: ignore[arg-type]
    producer.refuse = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    with pytest.raises(RecordRefused, match="larger than the producer takes"):
        publisher.try_publish(execution("t.exec", 1, 1), [], 0)
    producer.refuse = KafkaError(KafkaError._FATAL)
    with pytest.raises(FatalProducerError, match=r"cannot produce to t\.exec"):
        publisher.try_publish(execution("t.exec", 1, 1), [], 0)


def test_a_property_that_would_weaken_the_guarantee_is_ignored_with_a_warning_naming_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = producer_config("b:9092", {"message.timeout.ms": 3000, "acks": "all", "linger.ms": 1})
    assert config["message.timeout.ms"] == 0 and config["acks"] == "all" and config["linger.ms"] == 1
    warnings = [record.getMessage() for record in caplog.records]
    assert warnings == ["kafka.properties.message.timeout.ms: ignored; the connector's delivery "
                        "guarantee needs message.timeout.ms=0"]  # fmt: skip


class FencedAfterPolling(StandInProducer):
    """Serves the released callbacks, then raises the fatal error behind them (as librdkafka does)."""

    def __init__(self, fatal: KafkaError) -> None:
        super().__init__()
        self.fatal = fatal

    def poll(self, _timeout: float) -> int:
        served = super().poll(_timeout)
        raise KafkaException(self.fatal)
        return served  # pragma: no cover


def test_a_purged_record_does_not_hide_why_the_producer_stopped() -> None:
    producer = FencedAfterPolling(KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True))
    publisher = KafkaPublisher(
        producer, Watermark().acknowledge, transactional_id="pmx-connector.0123456789ab"
    )  # type: ignore[arg-type]
    assert publisher.try_publish(execution("pmx.orders.executions", 1, 10), [], None)
    producer.release(producer.produced[0], KafkaError(KafkaError._PURGE_QUEUE, "Purged in queue"))
    with pytest.raises(
        FatalProducerError, match=r"another instance .* took over .*pmx-connector\.0123456789ab"
    ):
        publisher.poll()
