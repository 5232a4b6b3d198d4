"""Test helpers that read what the connector wrote: whole topics, decoded with fastavro and the .avsc."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from connector.core.record_schemas import RecordType, schema_dict


def read_topic(
    bootstrap: str, topic: str, timeout_s: float = 120.0, isolation: str = "read_committed"
) -> list[Message]:
    """Every record of a topic, partition by partition in offset order (no consumer group).

    Reads until every partition's position reaches its end offset, so a compacted topic (whose
    offsets have holes) or one with transaction markers is read to its end without waiting.
    ``isolation``: ``read_committed`` (librdkafka's default) skips aborted and open transactions.
    A topic not read to its end within ``timeout_s`` fails the test (a short read would look like
    missing records).
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "isolation.level": isolation,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends: dict[int, int] = {}
        for partition in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > 0:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in ends])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while ends:
            if time.monotonic() >= deadline:
                msg = (
                    f"{topic} was not read to its end within {timeout_s:.0f} s ({len(messages)} records read)"
                )
                raise AssertionError(msg)
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
            positions = consumer.position([TopicPartition(topic, partition) for partition in ends])
            if all(position.offset >= ends[position.partition] for position in positions):
                break
        return messages
    finally:
        consumer.close()


def decode(value: bytes, record_type: RecordType) -> dict[str, Any]:
    """Decode an Avro value with the committed schema (fastavro, not our decoder).

    Single-object encoding (``C3 01`` + fingerprint) or Confluent framing (``00`` + schema ID; see
    :func:`schema_id` for the ID).
    """
    schema = fastavro.parse_schema(schema_dict(record_type))
    if value[:1] == b"\x00":
        body = value[5:]
    else:
        assert value[:2] == b"\xc3\x01", "neither single-object encoded nor Confluent-framed"
        body = value[10:]
    decoded: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(body), schema, None)
    return decoded


def schema_id(value: bytes) -> int:
    """The schema ID of a Confluent-framed value."""
    assert value[:1] == b"\x00", "not Confluent-framed"
    return int.from_bytes(value[1:5], "big")
