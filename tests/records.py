"""Test helpers that read what the connector wrote: whole topics, decoded with fastavro and the .avsc."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro
from confluent_kafka import Consumer, Message, TopicPartition

from connector.core.record_schemas import RecordType, schema_dict


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Message]:
    """Every record of a topic, partition by partition in offset order (no consumer group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignments = []
        expected = 0
        for partition in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > 0:
                assignments.append(TopicPartition(topic, partition, 0))
                expected += high
        consumer.assign(assignments)
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and not message.error():
                messages.append(message)
        return messages
    finally:
        consumer.close()


def decode(value: bytes, record_type: RecordType) -> dict[str, Any]:
    """Decode an Avro single-object value with the committed schema (fastavro, not our decoder)."""
    schema = fastavro.parse_schema(schema_dict(record_type))
    assert value[:2] == b"\xc3\x01", "not single-object encoded"
    decoded: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
    return decoded
