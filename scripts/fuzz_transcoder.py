"""Fuzz the native transcoder with libFuzzer (coverage-guided, on the Rust code itself).

Builds ``native/fuzz`` (the target ``transcode``: libfuzzer-sys, the sanitizer-coverage flags
cargo-fuzz uses, overflow checks and debug assertions on; stable Rust, no nightly needed), writes
the connector's own plan and a seed corpus of valid responses, and runs it:

    python scripts/fuzz_transcoder.py --seconds 20        (make test runs it briefly)
    python scripts/fuzz_transcoder.py --seconds 600       (make soak: FUZZ_SECONDS)

Exit status 0 when libFuzzer found nothing; otherwise libFuzzer's status, with the crashing input
under native/fuzz/artifacts/. The last line is a summary: ``fuzz: N runs in S s, coverage C``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "native" / "fuzz"
RUSTFLAGS = " ".join(
    [
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
        "--cfg=fuzzing",
        "-Cdebug-assertions",
        "-Coverflow-checks",
    ]
)


def host_triple() -> str:
    """The Rust host target (RUSTFLAGS then apply to the target only, not to build scripts)."""
    output = subprocess.run(["rustc", "-vV"], check=True, capture_output=True, text=True).stdout
    return next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("host: "))


def build() -> Path:
    """Build the fuzz target; return the binary."""
    triple = host_triple()
    env = {**os.environ, "RUSTFLAGS": RUSTFLAGS}
    subprocess.run(
        [
            "cargo",
            "build",
            "--quiet",
            "--release",
            "--manifest-path",
            str(FUZZ / "Cargo.toml"),
            "--target",
            triple,
            "--bin",
            "transcode",
        ],
        check=True,
        env=env,
    )
    return FUZZ / "target" / triple / "release" / "transcode"


def seeds() -> dict[str, bytes]:
    """A few valid responses: every kind, merged fields, unknown fields, edge times."""
    from connector._pb.polymarket.v1 import trading_pb2  # noqa: PLC0415 - after sys.path is set

    response = trading_pb2.CreateOrderSubscriptionResponse
    update = response(session_id="sess-1")
    update.processed_sent_time.seconds = 1_700_000_000
    execution = update.update.executions.add(id="EX-1", last_shares=300, last_px=9700, text="é")
    execution.transact_time.seconds, execution.transact_time.nanos = 1_700_000_000, 5
    execution.order.id, execution.order.side, execution.order.state = "OR-1", 1, 2
    execution.order.price_to_quantity_filled.update({9700: 300, 9600: 1})
    execution.order.good_till_time.seconds = 253_402_300_799
    execution.leg_prices.add(symbol="A", px=1, qty=2)
    execution.transact_trade_date.year = 2026
    update.update.cancel_reject.order_id = "OR-2"
    update.update.cancel_reject.transact_time.seconds = 3
    snapshot = response(session_id="sess-1")
    for index in range(3):
        order = snapshot.snapshot.orders.add(id=f"OR-{index}", symbol="S")
        order.insert_time.seconds = index
    heartbeat = response(session_id="s")
    heartbeat.heartbeat.SetInParent()
    unknown = b"\xc2\x3e\x03abc\xf8\x3e\x01"  # fields 1000 (bytes) and 1007 (varint)
    return {
        "update": update.SerializeToString(),
        "update-merged": update.SerializeToString() * 2 + unknown,
        "snapshot": snapshot.SerializeToString(),
        "heartbeat": heartbeat.SerializeToString(),
        "execution": execution.SerializeToString(),
    }


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=20, help="how long libFuzzer runs (default 20)")
    parser.add_argument(
        "--corpus",
        type=Path,
        default=FUZZ / "corpus" / "transcode",
        help="the corpus folder, kept and grown from run to run (default native/fuzz/corpus/transcode)",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from connector.core.record_schemas import RecordType  # noqa: PLC0415
    from connector.core.transcoder import Transcoder  # noqa: PLC0415

    binary = build()
    work = FUZZ / "target"
    plan = work / "plan.json"
    plan.write_text(Transcoder(dict.fromkeys(RecordType, b""), "fuzz").plan_json)
    corpus: Path = args.corpus
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (corpus / f"seed-{name}").write_bytes(data)
    artifacts = FUZZ / "artifacts"
    artifacts.mkdir(exist_ok=True)
    started = time.monotonic()
    result = subprocess.run(
        [
            str(binary),
            str(corpus),
            f"-max_total_time={args.seconds}",
            "-max_len=65536",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
            f"-artifact_prefix={artifacts}/",
        ],
        env={**os.environ, "PMX_TRANSCODER_PLAN": str(plan)},
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", output)
    coverage = re.findall(r"cov: (\d+)", output)
    if result.returncode != 0:
        print(output[-6000:], file=sys.stderr)
    print(
        f"fuzz: {runs.group(1) if runs else '?'} runs in {elapsed:.1f} s, coverage "
        f"{coverage[-1] if coverage else '?'}, exit {result.returncode}"
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
