"""``make bench``: the native transcoder's cost per execution, its variants, one run.

In one process, on the benchmark stream's own frames (:class:`connector.simulator.bench_stream.FrameBuilder`:
realistic executions, 5 per update; a 100,000-order snapshot), CPU time (``time.process_time``,
best of several repeats) of:

- ``python_reference``: the pure-Python reference of the same mapping (:mod:`tests.reference_mapping`:
  ``FromString``, a walk of the Avro schema, fastavro), the transcoder's test oracle. It stands in
  for the interpreted path the transcoder replaced (that path measured 38.2 µs per execution with
  single-object encoding and 106 µs with the registry's serializer before it was removed);
- ``native_raw_bytes`` (both framings): ``Transcoder.response`` on the raw frame, as the stream
  stub (identity response deserializer) hands it over: what the connector runs;
- ``native_reserialized``: ``FromString`` then ``SerializeToString`` then ``Transcoder.response``
  (what taking parsed messages would cost), and ``native_per_execution``: parsed, each execution
  re-serialized and given to ``Transcoder.execution`` (the REST backfill's path);
- ``rust_core_only``: the same frames through the Rust core with no Python objects
  (``native/core/examples/bench.rs``, wall time: the difference to ``native_raw_bytes`` is the
  cost of the Python objects the engine receives).

Ratios are against ``native_raw_bytes_single_object`` of the same run. Run:
``python -m tests.perf.transcoder_bench`` (``BENCH_QUICK=1`` for a short run); figures on stdout and
in ``bench-transcoder.json``.
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
from connector.core.mapping import Source
from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import Transcoder
from connector.kafka.encoding import ConfluentEncoder, SingleObjectEncoder
from connector.simulator.bench_stream import FrameBuilder
from tests.reference_mapping import reference_response

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

    single = {rt: SingleObjectEncoder(schema_dict(rt)).header for rt in RecordType}
    registry = {
        rt: ConfluentEncoder(schema_dict(rt), 100 + index).header for index, rt in enumerate(RecordType)
    }
    native = {
        "single_object": Transcoder(single, CONNECTOR),
        "registry": Transcoder(registry, CONNECTOR),
    }

    def python_reference() -> None:
        for frame in frames:
            reference_response(frame, now, single, CONNECTOR)

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
    for framing, prefixes in (("single_object", single), ("registry", registry)):
        expected = reference_response(frames[0], now, prefixes, CONNECTOR)
        if native[framing].response(frames[0], now) != expected:
            print(f"the transcoder and the reference disagree ({framing})", file=sys.stderr)
            return 1

    variants: dict[str, Callable[[], object]] = {
        "python_reference": python_reference,
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

    snapshot_repeats = max(1, repeats // 3)
    snapshot_s = {
        "python_reference": best_cpu_s(
            lambda: reference_response(snapshot, now, single, CONNECTOR), snapshot_repeats
        ),
        "native": best_cpu_s(lambda: native["single_object"].response(snapshot, now), snapshot_repeats),
    }
    baseline = us_per_execution["native_raw_bytes_single_object"]
    results = {
        "executions_per_update": EXECUTIONS_PER_UPDATE,
        "executions_timed": executions,
        "us_per_execution": {name: round(value, 3) for name, value in us_per_execution.items()},
        "ratio_vs_native_raw_bytes_single_object": {
            name: round(value / baseline, 3) for name, value in us_per_execution.items()
        },
        "reserializing_costs_x_raw": round(us_per_execution["native_reserialized"] / baseline, 2),
        "snapshot_orders": snapshot_orders,
        "snapshot_cpu_s": {name: round(value, 3) for name, value in snapshot_s.items()},
    }
    text = json.dumps(results, indent=2)
    print(text)
    (REPO / "bench-transcoder.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
