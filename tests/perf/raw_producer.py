"""The limit: the connector's producer configuration producing pre-encoded records, in its own process.

``python -m tests.perf.raw_producer BOOTSTRAP TOPIC RECORDS VALUE_FILE`` produces RECORDS copies of
the value in VALUE_FILE (a real ExecutionEvent, so the size and the compressibility match) with
distinct keys, serves delivery callbacks as the connector does (``poll(0)`` after each produce), waits
for every acknowledgement, and prints ``{"records": N, "cpu_s": S, "wall_s": W}``: CPU is user + sys
of this whole process (librdkafka's threads included), as for the connector.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from connector.kafka.publisher import producer_config

KEYS = 1000


def cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(bootstrap: str, topic: str, records: int, value: bytes) -> dict[str, float]:
    """Produce, wait for every acknowledgement, return the counts and the CPU used."""
    producer = Producer(producer_config(bootstrap, {}))
    keys = [b"OR-%012d" % number for number in range(KEYS)]
    acknowledged = 0

    def on_delivery(error: Any, _message: Any) -> None:
        nonlocal acknowledged
        if error is None:
            acknowledged += 1

    producer.produce(topic, b"warm-up", b"warm-up")
    producer.flush(60)
    start_cpu, start_wall = cpu_seconds(), time.monotonic()
    for number in range(records):
        while True:
            try:
                producer.produce(topic, value, keys[number % KEYS], on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(300)
    result = {"records": records, "cpu_s": cpu_seconds() - start_cpu, "wall_s": time.monotonic() - start_wall}
    if acknowledged != records:
        msg = f"only {acknowledged} of {records} records were acknowledged"
        raise RuntimeError(msg)
    return result


if __name__ == "__main__":
    bootstrap_servers, topic_name, count, value_file = sys.argv[1:5]
    print(json.dumps(main(bootstrap_servers, topic_name, int(count), Path(value_file).read_bytes())))
