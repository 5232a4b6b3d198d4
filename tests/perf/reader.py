"""The benchmark's reader of the executions topic, in its own process, answering on stdin/stdout.

``python -m tests.perf.reader BOOTSTRAP TOPIC PARTITIONS [ISOLATION [START]]`` reads every partition
in a thread, from the beginning (START ``beginning``, the default) or from the end (``end``: only
what is written after it started). ISOLATION is the consumer's ``isolation.level``: ``read_committed``
(the default, set explicitly: librdkafka's default too) sees a transaction's records once it
committed, ``read_uncommitted`` as soon as the brokers acknowledged them. For each ExecutionEvent
(Avro single-object encoded, or Confluent-framed when the connector uses a Schema Registry: told
apart by the first byte) it notes the execution number (``EX-<12 digits>``), the latency
``time.time_ns()`` now minus the record's ``processed_sent_time``, and the framing. It answers one
JSON line per command line: ``count``, ``mark`` (the number of latency samples so far),
``latencies START END`` ([p50, p99, p99.9, samples] in ms between two marks; END -1: up to now),
``missing FIRST LAST``, ``newest`` (the highest execution number read), ``duplicates``,
``framings`` (records read per framing).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from array import array
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

SINGLE_OBJECT_HEADER_BYTES: Final = 10  # C3 01 + 8-byte fingerprint
CONFLUENT_MAGIC: Final = 0
CONFLUENT_HEADER_BYTES: Final = 5  # 00 + 4-byte schema ID
NUMBER_DIGITS: Final = 12  # EX-<12 digits>


def _varint(value: bytes, position: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = value[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7


def execution_and_sent_time(value: bytes) -> tuple[int, int]:
    """The execution number and ``processed_sent_time`` of an ExecutionEvent (either framing).

    Only the leading fields are decoded: execution_id, order_id, transact_time, source, session_id,
    processed_sent_time (in the order of ExecutionEvent.avsc).
    """
    header = CONFLUENT_HEADER_BYTES if value[0] == CONFLUENT_MAGIC else SINGLE_OBJECT_HEADER_BYTES
    length, position = _varint(value, header)
    number = int(value[position + length - NUMBER_DIGITS : position + length])
    position += length
    length, position = _varint(value, position)  # order_id
    position += length
    branch, position = _varint(value, position)  # transact_time
    if branch:
        _, position = _varint(value, position)
    _, position = _varint(value, position)  # source
    length, position = _varint(value, position)  # session_id
    position += length
    branch, position = _varint(value, position)  # processed_sent_time
    if not branch:
        return number, 0
    sent, _ = _varint(value, position)
    return number, sent


def transact_time_and_source(value: bytes) -> tuple[int | None, int]:
    """The ``transact_time`` (ns, None when absent) and the ``source`` symbol's index of an ExecutionEvent.

    ``source``: 0 stream, 1 snapshot, 2 backfill, 3 drop_copy, 4 unknown (ExecutionEvent.avsc's enum).
    """
    header = CONFLUENT_HEADER_BYTES if value[0] == CONFLUENT_MAGIC else SINGLE_OBJECT_HEADER_BYTES
    position = header
    for _ in range(2):  # execution_id, order_id
        length, position = _varint(value, position)
        position += length
    branch, position = _varint(value, position)
    transact_time = None
    if branch:
        transact_time, position = _varint(value, position)
    source, _ = _varint(value, position)
    return transact_time, source


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values (NaN when empty)."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, int(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class Reader:
    """The consuming thread and what it recorded."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        isolation: str = "read_committed",
        start: str = "beginning",
    ) -> None:
        """Assign every partition from ``start`` (``beginning`` or ``end``) and start consuming."""
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "fetch.wait.max.ms": 5,
                "log_level": 0,  # quiet while the brokers are down on purpose
            }
        )
        offset = OFFSET_END if start == "end" else OFFSET_BEGINNING
        self._consumer.assign([TopicPartition(topic, p, offset) for p in range(partitions)])
        self.seen = bytearray(1 << 20)  # seen[n]: how many times execution n arrived (at most 255)
        self.count = 0
        self.confluent = 0
        self.latency_ms = array("d")
        threading.Thread(target=self._run, name="reader", daemon=True).start()

    def _run(self) -> None:
        consume, poll, seen, latencies = (
            self._consumer.consume,
            self._consumer.poll,
            self.seen,
            self.latency_ms,
        )
        while True:
            # Whatever is there now; else wait for the next record (consume(n, timeout) would wait for n).
            messages = consume(num_messages=1000, timeout=0)
            if not messages:
                first = poll(0.05)
                messages = [] if first is None else [first]
            now = time.time_ns()
            for message in messages:
                if message.error() is not None:
                    continue
                value = message.value()
                number, sent = execution_and_sent_time(value)
                self.confluent += value[0] == CONFLUENT_MAGIC
                if number >= len(seen):
                    seen.extend(bytes(max(number + 1 - len(seen), len(seen))))
                seen[number] = min(seen[number] + 1, 255)
                latencies.append((now - sent) / 1e6 if sent else float("nan"))
                self.count += 1

    def answer(self, command: str, *arguments: int) -> Any:  # noqa: PLR0911 - one answer per command
        """Answer one command (see the module docstring)."""
        if command == "count":
            return self.count
        if command == "mark":
            return len(self.latency_ms)
        if command == "latencies":
            start, end = arguments
            window = sorted(x for x in self.latency_ms[start : None if end < 0 else end] if x == x)  # noqa: PLR0124 - drops NaN
            return [percentile(window, 0.5), percentile(window, 0.99), percentile(window, 0.999), len(window)]
        if command == "missing":
            first, last = arguments
            held = self.seen[first : last + 1]
            return max(0, last + 1 - first) - (len(held) - held.count(0))
        if command == "newest":
            return max(0, len(self.seen.rstrip(b"\0")) - 1)
        if command == "duplicates":
            return sum(max(0, copies - 1) for copies in self.seen)
        if command == "framings":
            confluent = self.confluent
            return {"single_object": self.count - confluent, "confluent": confluent}
        msg = f"unknown command {command!r}"
        raise ValueError(msg)


def main() -> None:
    """Serve commands until stdin closes."""
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    isolation = sys.argv[4] if len(sys.argv) > 4 else "read_committed"
    start = sys.argv[5] if len(sys.argv) > 5 else "beginning"
    reader = Reader(bootstrap, topic, partitions, isolation, start)
    for line in sys.stdin:
        command, *arguments = line.split()
        print(json.dumps(reader.answer(command, *map(int, arguments))), flush=True)


if __name__ == "__main__":
    main()
