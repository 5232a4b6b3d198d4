"""``make bench``: the native transcoder against today's mapping + encoder, µs per execution, one run.

In one process, on the benchmark stream's own frames (:class:`connector.simulator.bench_stream.FrameBuilder`:
realistic executions, 5 per update; a 100,000-order snapshot), CPU time (``time.process_time``,
best of several repeats) of:

- ``python_single_object``: today's path: ``FromString`` (gRPC's deserializer), the compiled
  ``RecordMapper`` and the generated single-object writer per execution, the key encoded;
- ``python_registry``: the same with ``ConfluentEncoder`` (fastavro), today's registry path;
- ``native_raw_bytes`` (both framings): ``Transcoder.response`` on the raw frame, as a gRPC stub
  with an identity response deserializer hands it over;
- ``native_reserialized``: ``FromString`` then ``SerializeToString`` then ``Transcoder.response``
  (what taking parsed messages would cost), and ``native_per_execution``: parsed, each execution
  re-serialized and given to ``Transcoder.execution``;
- ``rust_core_only``: the same frames through the Rust core with no Python objects
  (``native/core/examples/bench.rs``, wall time: the difference to ``native_raw_bytes`` is the
  cost of the Python objects the engine receives).

Ratios are against ``python_single_object`` of the same run. Run: ``python -m tests.perf.transcoder_bench``
(``BENCH_QUICK=1`` for a short run); figures on stdout and in ``bench-transcoder.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from connector._pb.polymarket.v1 import trading_pb2
from connector.core.mapping import EventContext, RecordMapper, Source
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import Transcoder
from connector.kafka.encoding import ConfluentEncoder, SingleObjectEncoder
from connector.simulator.bench_stream import FrameBuilder

REPO = Path(__file__).resolve().parents[2]
EXECUTIONS_PER_UPDATE = 5
UPDATES = 400
SNAPSHOT_ORDERS = 100_000
CONNECTOR = "bench"
Response = trading_pb2.CreateOrderSubscriptionResponse


def best_cpu_s(work: Callable[[], object], repeats: int) -> float:
    """The least CPU time of ``repeats`` runs of ``work``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        work()
        best = min(best, time.process_time() - started)
    return best


def rust_core_ns(transcoder: Transcoder, frames: list[bytes], repeats: int) -> float:
    """ns per execution of the Rust core with no Python objects (native/core/examples/bench.rs)."""
    with tempfile.TemporaryDirectory() as folder:
        plan, data = Path(folder) / "plan.json", Path(folder) / "frames"
        plan.write_text(transcoder.plan_json)
        data.write_bytes(b"".join(len(frame).to_bytes(4, "little") + frame for frame in frames))
        manifest = REPO / "native" / "Cargo.toml"
        command = [
            "cargo",
            "run",
            "--quiet",
            "--release",
            "--manifest-path",
            str(manifest),
            "-p",
            "pmx-transcoder",
        ]
        arguments = [str(plan), str(data), str(EXECUTIONS_PER_UPDATE), str(repeats)]
        output = subprocess.run(
            [*command, "--example", "bench", "--", *arguments], check=True, capture_output=True, text=True
        )
    return float(output.stdout.strip())


def main() -> int:
    """Run every variant and print the table."""
    quick = os.environ.get("BENCH_QUICK") == "1"
    repeats = 3 if quick else 7
    updates = UPDATES // 4 if quick else UPDATES
    snapshot_orders = SNAPSHOT_ORDERS // 10 if quick else SNAPSHOT_ORDERS
    builder = FrameBuilder("bench-session", EXECUTIONS_PER_UPDATE)
    now = time.time_ns()
    frames = [builder.update(index * EXECUTIONS_PER_UPDATE, now + index) for index in range(updates)]
    snapshot = builder.snapshot(snapshot_orders, now)
    executions = updates * EXECUTIONS_PER_UPDATE

    single = {rt: SingleObjectEncoder(schema_dict(rt)) for rt in RecordType}
    registry = {rt: ConfluentEncoder(schema_dict(rt), 100 + index) for index, rt in enumerate(RecordType)}
    mapper = RecordMapper.for_venue()
    native = {
        "single_object": Transcoder({rt: single[rt].header for rt in RecordType}, CONNECTOR),
        "registry": Transcoder({rt: registry[rt].header for rt in RecordType}, CONNECTOR),
    }

    def python_path(encoders: dict[RecordType, Callable[..., bytes]]) -> Callable[[], object]:
        encode = encoders[RecordType.EXECUTION]

        def run() -> None:
            for frame in frames:
                response = Response.FromString(frame)
                sent = response.processed_sent_time.ToNanoseconds()
                context = EventContext(Source.STREAM, response.session_id, sent, now, CONNECTOR)
                for execution in response.update.executions:
                    record = mapper.execution(execution, context)
                    encode(record, "executions")
                    record["order_id"].encode()

        return run

    def native_raw(transcoder: Transcoder) -> Callable[[], object]:
        def run() -> None:
            response = transcoder.response
            for frame in frames:
                response(frame, now)

        return run

    def native_reserialized() -> None:
        response = native["single_object"].response
        for frame in frames:
            response(Response.FromString(frame).SerializeToString(), now)

    def native_per_execution() -> None:
        execution = native["single_object"].execution
        for frame in frames:
            parsed = Response.FromString(frame)
            sent = parsed.processed_sent_time.ToNanoseconds()
            for item in parsed.update.executions:
                execution(
                    item.SerializeToString(),
                    source=Source.STREAM,
                    session_id=parsed.session_id,
                    processed_sent_time_ns=sent,
                    received_time_ns=now,
                )

    # The two paths agree on these frames before anything is timed.
    check = Response.FromString(frames[0])
    context = EventContext(
        Source.STREAM, check.session_id, check.processed_sent_time.ToNanoseconds(), now, CONNECTOR
    )
    expected = single[RecordType.EXECUTION](mapper.execution(check.update.executions[0], context))
    assert native["single_object"].response(frames[0], now).executions[0][3] == expected

    variants: dict[str, Callable[[], object]] = {
        "python_single_object": python_path(dict(single)),
        "python_registry": python_path(dict(registry)),
        "native_raw_bytes_single_object": native_raw(native["single_object"]),
        "native_raw_bytes_registry": native_raw(native["registry"]),
        "native_reserialized": native_reserialized,
        "native_per_execution": native_per_execution,
    }
    us_per_execution = {}
    for name, work in variants.items():
        seconds = best_cpu_s(work, repeats)
        us_per_execution[name] = seconds / executions * 1e6
        print(f"  {name}: {us_per_execution[name]:.3f} µs/execution", file=sys.stderr)

    us_per_execution["rust_core_only"] = rust_core_ns(native["single_object"], frames, repeats) / 1000
    print(f"  rust_core_only: {us_per_execution['rust_core_only']:.3f} µs/execution", file=sys.stderr)

    def python_snapshot() -> None:
        encode = single[RecordType.ORDER_SNAPSHOT]
        response = Response.FromString(snapshot)
        context = EventContext(Source.SNAPSHOT, response.session_id, None, now, CONNECTOR)
        orders = response.snapshot.orders
        for position, order in enumerate(orders):
            encode(mapper.snapshot_order(order, "s@1", position, len(orders), context), "snapshots")

    snapshot_s = {
        "python": best_cpu_s(python_snapshot, max(1, repeats // 3)),
        "native": best_cpu_s(lambda: native["single_object"].response(snapshot, now), max(1, repeats // 3)),
    }
    baseline = us_per_execution["python_single_object"]
    results = {
        "executions_per_update": EXECUTIONS_PER_UPDATE,
        "executions_timed": executions,
        "us_per_execution": {name: round(value, 3) for name, value in us_per_execution.items()},
        "ratio_vs_python_single_object": {
            name: round(value / baseline, 4) for name, value in us_per_execution.items()
        },
        "speedup_native_raw_vs_python": {
            "single_object": round(baseline / us_per_execution["native_raw_bytes_single_object"], 1),
            "registry": round(
                us_per_execution["python_registry"] / us_per_execution["native_raw_bytes_registry"], 1
            ),
        },
        "reserializing_costs_x_raw": round(
            us_per_execution["native_reserialized"] / us_per_execution["native_raw_bytes_single_object"], 2
        ),
        "snapshot_orders": snapshot_orders,
        "snapshot_cpu_s": {name: round(value, 3) for name, value in snapshot_s.items()},
    }
    text = json.dumps(results, indent=2)
    print(text)
    (REPO / "bench-transcoder.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
