"""Read the end of a topic once, up to the offsets it had when reading began (no consumer group).

Start-up needs two bounded reads (DESIGN.md §4): the whole (compacted) checkpoint topic, to take
the last checkpoint per key, and the tail of the executions topic, to seed the recent-ID set. Both
go by offsets (end offset - N): ``offsets_for_times`` is not available on every broker (the embedded
one answers -1), and compaction may be lazy or ignored, so the reader, not the broker, keeps the
last record per key. Kafka errors are translated here into :class:`RuntimeFailure`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connector.errors import RuntimeFailure
from connector.kafka.publisher import client_config

POLL_S: Final = 0.5
RETRY_S: Final = 0.5


def read_tail(
    bootstrap_servers: str,
    properties: Mapping[str, object],
    topic: str,
    *,
    last: int | None,
    timeout_s: float,
) -> Iterator[Message]:
    """Yield about the last ``last`` records of the topic, spread evenly over its partitions.

    ``None`` reads every record. Records come in offset order within a partition.

    Raises:
        RuntimeFailure: Kafka cannot be reached, the topic is missing, or the read outlasts
            ``timeout_s``.
    """
    consumer = Consumer(
        {
            **client_config(bootstrap_servers, properties),
            "group.id": f"pmx-connector-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    deadline = time.monotonic() + timeout_s
    try:
        ends = _assign_tail(consumer, topic, last, timeout_s)
        while ends:
            if time.monotonic() > deadline:
                msg = f"reading the tail of {topic} took longer than {timeout_s:.0f} s"
                raise RuntimeFailure(msg)
            message = consumer.poll(POLL_S)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    msg = f"cannot read {topic}: {error.name()}"
                    raise RuntimeFailure(msg)
                continue
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in ends:
                continue
            yield message
            if offset >= ends[partition] - 1:
                del ends[partition]
    finally:
        consumer.close()


def _offsets(consumer: Consumer, partition: TopicPartition, timeout_s: float) -> tuple[int, int]:
    """A partition's low and high offsets, retried while its leader is unavailable (a broker restart)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(
                partition, timeout=max(1.0, deadline - time.monotonic())
            )
            return int(low), int(high)
        except KafkaException as exc:
            if time.monotonic() >= deadline:
                msg = (
                    f"cannot read the offsets of {partition.topic}: {exc.args[0].str() if exc.args else exc}"
                )
                raise RuntimeFailure(msg) from None
            time.sleep(RETRY_S)


def _assign_tail(consumer: Consumer, topic: str, last: int | None, timeout_s: float) -> dict[int, int]:
    """Assign each non-empty partition from its tail start; return the end offset per partition."""
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
    except KafkaException as exc:
        msg = f"cannot reach Kafka to read {topic}: {exc.args[0].str() if exc.args else exc}"
        raise RuntimeFailure(msg) from None
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        msg = f"topic {topic} does not exist"
        raise RuntimeFailure(msg)
    per_partition = None if last is None else -(-last // len(described.partitions))
    ends: dict[int, int] = {}
    assignments = []
    for partition in described.partitions:
        low, high = _offsets(consumer, TopicPartition(topic, partition), timeout_s)
        if high <= low:
            continue
        start = low if per_partition is None else max(low, high - per_partition)
        assignments.append(TopicPartition(topic, partition, start))
        ends[partition] = high
    if assignments:
        consumer.assign(assignments)
    return ends
