"""Test helpers that read what the connector wrote: whole topics, decoded with fastavro and the .avsc."""

from __future__ import annotations

import io
import time
from typing import Any

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from connector.core.record_schemas import RecordType, schema_dict


def read_topic(
    bootstrap: str,
    topic: str,
    timeout_s: float = 120.0,
    isolation: str = "read_committed",
    *,
    open_transactions: bool = False,
) -> list[Message]:
    """Every record of a topic, partition by partition in offset order (no consumer group).

    Reads until every partition's position reaches its end offset, so a compacted topic (whose
    offsets have holes) or one with transaction markers is read to its end without waiting.
    ``isolation``: ``read_committed`` (librdkafka's default) skips aborted and open transactions.
    A ``read_committed`` read first waits for every transaction to end (see
    :func:`wait_for_transaction_markers`): ``commit_transaction`` returns before the coordinator has
    written its markers, and until then a reader's end stops short of the committed records. A test
    that holds a transaction open on purpose says ``open_transactions=True`` and reads up to it.
    A topic not read to its end within ``timeout_s`` fails the test (a short read would look like
    missing records).
    """
    deadline = time.monotonic() + timeout_s
    if isolation == "read_committed" and not open_transactions:
        wait_for_transaction_markers(bootstrap, topic, timeout_s)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "isolation.level": isolation,
        }
    )
    try:
        ends = {partition: end for partition, end in _end_offsets(consumer, topic).items() if end > 0}
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in ends])
        messages: list[Message] = []
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


def wait_for_transaction_markers(bootstrap: str, topic: str, timeout_s: float = 60.0) -> None:
    """Wait until no transaction is open in any partition of ``topic`` (its last stable offset, a
    ``read_committed`` reader's end, is the log's end); fail the test naming the partitions if one
    stays open for ``timeout_s`` (a producer that died mid-transaction holds it for
    ``transaction.timeout.ms``)."""
    readers = {
        isolation: Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "markers", "isolation.level": isolation}
        )
        for isolation in ("read_committed", "read_uncommitted")
    }
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            stable = _end_offsets(readers["read_committed"], topic)
            ends = _end_offsets(readers["read_uncommitted"], topic)
            open_partitions = sorted(p for p in ends if stable.get(p) != ends[p])
            if not open_partitions:
                return
            if time.monotonic() >= deadline:
                msg = f"a transaction stayed open in {topic} {open_partitions} for {timeout_s:.0f} s"
                raise AssertionError(msg)
            time.sleep(0.1)
    finally:
        for reader in readers.values():
            reader.close()


def _end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """Each partition's end as ``consumer``'s isolation level sees it."""
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    return {
        partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        for partition in partitions
    }


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
