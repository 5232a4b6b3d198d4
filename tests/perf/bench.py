"""Benchmarks run by ``make bench`` (never by ``make test``): CPU cost per record, as ratios.

This machine is shared and noisy, so every figure that matters is a ratio of two measurements
taken in the same run. The broker runs in its own process (``pmx-connector dev-kafka``) so that
only the producing side's CPU is counted (user + sys of this process, from ``getrusage``).

Measured so far:
1. **the limit**: the connector's producer configuration producing pre-encoded values of the size
   of a typical ExecutionEvent; CPU µs per record.
2. **map + encode + produce**: the in-process part of the connector's hot path for one execution
   (protobuf -> record -> Avro single-object -> produce, delivery callbacks served); CPU µs per
   execution, and its ratio to (1).

Figures go to ``bench-results.json`` at the repository root and to a table on stdout.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.kafka.encoding import SingleObjectEncoder
from connector.mapping import EventContext, RecordMapper, Source
from connector.record_schemas import RecordType, schema_dict

REPO = Path(__file__).resolve().parents[2]
RECORDS = int(os.environ.get("BENCH_RECORDS", "100000"))
TOPIC = "bench.executions"
PRODUCER_CONFIG = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "none",
    "queue.buffering.max.messages": 200_000,
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def dev_kafka() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as folder:
        ready = Path(folder) / "ready.json"
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "dev-kafka", "--brokers", "3", "--ready-file", str(ready),
             "--topic", f"{TOPIC}:6"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    msg = "dev-kafka did not become ready"
                    raise RuntimeError(msg)
                time.sleep(0.1)
            yield json.loads(ready.read_text())["bootstrap_servers"]
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def sample_execution(number: int) -> trading_pb2.Execution:
    execution = trading_pb2.Execution(
        id=f"EX-{number:012d}",
        last_shares=300,
        last_px=9700,
        type=enums_pb2.EXECUTION_TYPE_PARTIAL_FILL,
        trade_id=f"TR-{number:012d}",
        aggressor=True,
        commission_notional_collected=2910,
        trace_id="trace-0001",
    )
    execution.transact_time.FromNanoseconds(1_763_800_000_000_000_000 + number * 1000)
    order = execution.order
    order.id = f"OR-{number // 3:012d}"
    order.clord_id = f"CL-{number // 3:012d}"
    order.symbol = "tec-nfl-sbw-2026-02-08-kc"
    order.account = "firms/ACME/accounts/A1"
    order.side = enums_pb2.SIDE_BUY
    order.type = enums_pb2.ORDER_TYPE_LIMIT
    order.time_in_force = enums_pb2.TIME_IN_FORCE_GOOD_TILL_CANCEL
    order.state = enums_pb2.ORDER_STATE_PARTIALLY_FILLED
    order.order_qty, order.cum_qty, order.leaves_qty = 1000, 300, 700
    order.price, order.avg_px, order.price_scale, order.fractional_quantity_scale = 9700, 9700, 10000, 100
    order.price_to_quantity_filled[9700] = 300
    order.participant = "firms/ACME/users/trader"
    order.insert_time.FromNanoseconds(1_763_800_000_000_000_000)
    order.create_time.FromNanoseconds(1_763_800_000_000_000_000)
    order.last_transact_time.CopyFrom(execution.transact_time)
    return execution


def produce_all(bootstrap: str, make_value: Callable[[int], tuple[bytes, bytes]]) -> float:
    """Produce RECORDS values and wait for every acknowledgement; return CPU seconds used."""
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER_CONFIG})
    acknowledged = 0

    def on_delivery(error: Any, _message: Any) -> None:
        nonlocal acknowledged
        if error is None:
            acknowledged += 1

    producer.produce(TOPIC, b"warm-up", b"k")
    producer.flush(30)
    start = cpu_seconds()
    for number in range(RECORDS):
        key, value = make_value(number)
        while True:
            try:
                producer.produce(TOPIC, value, key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(120)
    used = cpu_seconds() - start
    if acknowledged != RECORDS:
        msg = f"only {acknowledged} of {RECORDS} records were acknowledged"
        raise RuntimeError(msg)
    return used


def main() -> int:
    mapper = RecordMapper.for_venue()
    encode = SingleObjectEncoder(schema_dict(RecordType.EXECUTION))
    context = EventContext(Source.STREAM, "bench-session", 1_763_800_000_000_000_000, 0, "bench")
    executions = [sample_execution(n) for n in range(1000)]
    typical = encode(mapper.execution(executions[0], context))
    print(f"typical ExecutionEvent: {len(typical)} bytes; {RECORDS} records per run", flush=True)

    def pre_encoded(number: int) -> tuple[bytes, bytes]:
        return b"OR-000000000000", typical

    def connector_path(number: int) -> tuple[bytes, bytes]:
        execution = executions[number % 1000]
        record = mapper.execution(execution, context)
        return record["order_id"].encode(), encode(record)

    with dev_kafka() as bootstrap:
        raw = produce_all(bootstrap, pre_encoded)
        ours = produce_all(bootstrap, connector_path)
    raw_us = raw / RECORDS * 1e6
    ours_us = ours / RECORDS * 1e6
    results = {
        "records_per_run": RECORDS,
        "execution_event_bytes": len(typical),
        "raw_producer_cpu_us_per_record": round(raw_us, 2),
        "map_encode_produce_cpu_us_per_execution": round(ours_us, 2),
        "cpu_ratio_map_encode_produce_vs_raw_producer": round(ours_us / raw_us, 2),
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "command": "make bench",
    }
    (REPO / "bench-results.json").write_text(json.dumps(results, indent=2) + "\n")
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
