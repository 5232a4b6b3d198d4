"""``make bench``: the connector end to end against DESIGN.md §10's budgets (never run by ``make test``).

One run, in this order, on one embedded Kafka (``dev-kafka``, its own process, 3 brokers; or see
``BENCH_KAFKA`` below):

1. **the limit**: :mod:`tests.perf.raw_producer` (its own process) produces a pre-encoded
   ExecutionEvent with the connector's producer configuration; CPU µs per record.
2. **snapshot**: the venue (in this process, pre-serialized frames: :mod:`connector.simulator.bench_stream`)
   opens the stream with a 100,000-order snapshot; time from its send to the connector's last
   acknowledged snapshot record (the connector's own counter, polled every 0.1 s).
3. **throughput**: the venue sends as fast as the stream takes (several executions per update);
   executions acknowledged per second (the connector's counter) and the connector process's CPU
   (user + sys, ``/proc``) per execution over a window after a warm-up; the CPU ratio against (1).
4. **latency** at 2,000 executions/s: p50/p99/p99.9 of venue ``processed_sent_time`` -> the record read
   back from Kafka (see :class:`tests.perf.stack.ExecutionsReader`) by two readers: the run's reader,
   ``read_committed`` (send -> visible to a read_committed consumer: the connector writes every record
   in a transaction, in both delivery modes), and one started for the window, ``read_uncommitted``
   (send -> Kafka ack, what DESIGN.md §10's ``p99_ms_at_2k`` budget bounds). As a cross-check, the
   share of executions the connector's own histogram saw delivered within 10 ms of the venue's send
   (at its ack in at_least_once, at its commit in exactly_once). The steady RSS is the connector's
   peak in this phase (at full speed, in phase 3, the producer's queue is full by design; that
   figure is reported beside it).

   Phases 3 and 4 run in **both delivery modes** (``connector.delivery``), alternating:
   ``BENCH_MODE_ROUNDS`` rounds (3; quick 1) of an at_least_once visit then an exactly_once one. A
   visit is one connector process (the first is phase 2's; each later one fresh, under a name of its
   own so it has no checkpoint and searches nothing, ready and its snapshot acknowledged before its
   windows) running a phase 3 window, then a phase 4 window. Each mode's figure is the median over
   its windows, and the exactly_once figures are also given as ratios to the at_least_once ones of the
   same run (``*_eos``, ``*_ratio_eos_to_alo``; DESIGN.md states no budget for them). The budgeted
   figures (throughput, CPU ratio, p99 at 2,000/s, steady RSS) stay at_least_once's. A fresh
   at_least_once connector then runs the phases after these. The first visit's process started on
   an empty topic (a nearly empty dedup set), every later one is seeded from a fuller topic (up to
   ``recent_execution_ids``): with one round (``BENCH_QUICK``) that difference, not the mode, can
   dominate the latency ratio; the medians of three rounds dilute it.
5. **outage** at 5,000 executions/s: every broker down for 60 s, then up; the connector's peak RSS;
   two catch-up times after the brokers return: until everything the venue had sent is in Kafka
   (the backlog the connector held), and until Kafka holds everything the venue's schedule called
   for (the venue sends the executions that backpressure held back as fast as the stream takes
   them); then every execution the venue sent is checked in Kafka (missing, duplicates).
6. **recovery** at 1,000 executions/s: the connector is SIGKILLed (after longer than its 5 s checkpoint
   interval at that rate); the venue keeps trading with no stream open for a fixed outage (those
   executions only its REST search returns), then a connector with the same config starts: it
   resumes from its checkpoint, its new stream sends the venue's book again (the snapshot of phase 2),
   and it searches the missed window. ``recovery_live_again_s_at_1k`` is measured from the restarted
   process's start (what an operator sees; ``recovery_stream_open_s`` is the part before the venue saw
   its stream) until the reader holds the first execution sent on its new stream (numbered above what
   the venue had made when that stream opened; polled every 0.05 s). ``recovery_rest_requests`` is
   what it asked the search, every result counted (``pmx_connector_backfill_requests_total``), read
   once its recovery completed. ``recovery_rest_requests_minimum`` is DESIGN.md's ⌈missed executions ÷
   page size⌉, where missed = the executions made before the new stream opened that Kafka did not
   hold once the killed process was gone (read 1 s after the kill, when what it had in flight has
   landed). An approximation from below of what any connector must search: it knows only its last
   checkpoint (up to ``checkpoint_interval_s`` older than what Kafka holds) and searches from there
   less ``margin_before_s`` to ``margin_after_s`` past its stream's start, so the allowance of 2 has to
   cover those. ``recovery_checkpoint_age_s`` says how much older than the kill that checkpoint was
   (its F in ``/status`` when its stream opened; null or negative: it found none written before the
   kill, so it had nothing to search from). Then every execution of the phase is checked in Kafka
   (``recovery_missing``).
7. **registry**: a fresh connector (its own name, so no checkpoint and no backfill) with
   ``schema_registry.url`` set to a fake Schema Registry in this process (auto-register), Confluent
   framing; once its stream's snapshot is acknowledged, measured as in (3), its CPU ratio against
   (1). The reader checks the framing of every value it reads back and the registry the subject
   registered: a figure from the wrong mode fails.

Figures go to ``bench-results.json`` (repository root) and to a table on stdout; progress to stderr.
Durations come from the environment (``BENCH_QUICK=1`` shortens everything): see :class:`Plan`.

``BENCH_PHASES`` runs only some phases: comma-separated names of ``limit`` (1), ``modes`` (3 and 4,
both delivery modes), ``outage`` (5), ``recovery`` (6), ``registry`` (7); phase 2 always runs (it
starts the connector). Budgets are judged for the figures of the phases that ran, and a run of
only some phases writes ``bench-results-partial.json`` instead, so ``bench-results.json`` is
always one whole run.

``BENCH_KAFKA=real`` runs on a three-node Apache Kafka (:mod:`tests.kafka_cluster`; needs
``make tools`` and ``.tools/bin`` on ``PATH``) instead of dev-kafka, by default the phases
``limit,modes`` (the outage phase needs dev-kafka's broker control), into
``bench-results-real-kafka.json``. That run is where the read_committed figures mean what they
say: dev-kafka is librdkafka's mock cluster, whose consumers see a transaction's records before it
commits (``isolation.level`` is ignored there), so on it both readers measure send -> ack; and a
real broker's commits (the coordinator, the markers on every partition) cost what the mock's do not.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from connector.core.record_schemas import RecordType, schema_dict
from connector.core.transcoder import Transcoder
from connector.core.venue_time import ns_from_iso
from connector.kafka.encoding import SingleObjectEncoder
from connector.simulator.bench_stream import BenchFlow, FrameBuilder
from tests.perf.stack import (
    PARTITIONS,
    BenchKafka,
    ConnectorProcess,
    ExecutionsReader,
    bench_venue,
    connector_settings,
    dev_kafka,
    log,
    real_kafka,
)
from tests.registry_fixtures import FakeSchemaRegistry

REPO = Path(__file__).resolve().parents[2]
RAW_TOPIC = "bench.raw"
SAMPLE_S = 0.5
POLL_S: Final = 0.05
KILL_SETTLE_S: Final = 1.0
RESTART_TIMEOUT_S: Final = 120.0
RECOVERED_TIMEOUT_S: Final = 600.0  # the backfill is paced to the venue's 12 requests a minute


def _env(name: str, full: float, quick: float) -> float:
    default = quick if os.environ.get("BENCH_QUICK") else full
    return float(os.environ.get(name, default))


@dataclass(frozen=True, slots=True)
class Plan:
    """How long each phase runs (environment variables in brackets; BENCH_QUICK=1 for the short set)."""

    raw_records: int = int(_env("BENCH_RAW_RECORDS", 300_000, 50_000))
    snapshot_orders: int = int(_env("BENCH_SNAPSHOT_ORDERS", 100_000, 100_000))
    executions_per_update: int = int(_env("BENCH_EXECUTIONS_PER_UPDATE", 5, 5))
    warmup_s: float = _env("BENCH_WARMUP_S", 5, 3)
    throughput_s: float = _env("BENCH_THROUGHPUT_S", 12, 8)
    latency_rate: float = _env("BENCH_LATENCY_RATE", 2000, 2000)
    latency_s: float = _env("BENCH_LATENCY_S", 12, 8)
    mode_rounds: int = int(_env("BENCH_MODE_ROUNDS", 3, 1))
    mode_warmup_s: float = _env("BENCH_MODE_WARMUP_S", 3, 2)
    outage_rate: float = _env("BENCH_OUTAGE_RATE", 5000, 5000)
    outage_s: float = _env("BENCH_OUTAGE_S", 60, 15)
    recovery_rate: float = _env("BENCH_RECOVERY_RATE", 1000, 1000)
    recovery_run_s: float = _env("BENCH_RECOVERY_RUN_S", 10, 8)
    recovery_outage_s: float = _env("BENCH_RECOVERY_OUTAGE_S", 10, 5)


@dataclass(slots=True)
class Run:
    """The running stack and what the phases measured."""

    plan: Plan
    kafka: BenchKafka
    flow: BenchFlow
    connector: ConnectorProcess
    reader: ExecutionsReader
    config: dict[str, Any]  # the running connector's settings (the recovery phase restarts it)
    folder: Path
    figures: dict[str, Any] = field(default_factory=dict)
    rss_samples_mb: list[float] = field(default_factory=list)
    drained: int = 0  # executions 1..drained were waited for by an earlier drain (lost ones stay lost)

    def executions_acked(self) -> float:
        return self.connector.produced("executions")

    def sample_rss(self) -> float:
        rss, _ = self.connector.memory_mb()
        self.rss_samples_mb.append(rss)
        return rss

    def drain(self, timeout_s: float = 300) -> None:
        """Stop the flow and wait until Kafka holds every execution the venue made since the last drain."""
        self.flow.rate = 0
        time.sleep(0.5)
        first, made = self.drained + 1, self.flow.produced_executions
        if not self.reader.wait_for(first, made, timeout_s):
            log(f"drain: {self.reader.missing(first, made)} of executions {first}..{made} not read back")
        self.drained = made


def load_average() -> float:
    """The machine's 1-minute load average (other work shares these 2 cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def typical_execution_value(executions_per_update: int) -> bytes:
    """The ExecutionEvent value the connector writes for one of the venue's executions."""
    frame = FrameBuilder("bench-session", executions_per_update).update(1, time.time_ns())
    prefixes = {
        record_type: SingleObjectEncoder(schema_dict(record_type)).header for record_type in RecordType
    }
    value: bytes = Transcoder(prefixes, "bench").response(frame, time.time_ns()).executions[0][3]
    return value


def raw_producer_phase(kafka: BenchKafka, plan: Plan, folder: Path) -> dict[str, Any]:
    value = typical_execution_value(plan.executions_per_update)
    value_file = folder / "value.bin"
    value_file.write_bytes(value)
    kafka.create_topic(RAW_TOPIC, PARTITIONS)
    log(f"1/7 the limit: {plan.raw_records} pre-encoded records of {len(value)} bytes")
    done = subprocess.run(
        [sys.executable, "-m", "tests.perf.raw_producer", kafka.bootstrap_servers, RAW_TOPIC,
         str(plan.raw_records), str(value_file)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "execution_event_bytes": len(value),
        "raw_records": result["records"],
        "raw_producer_cpu_us_per_record": result["cpu_s"] / result["records"] * 1e6,
        "raw_producer_records_per_s": result["records"] / result["wall_s"],
    }


def wait_for_snapshot(connector: ConnectorProcess, orders: int, timeout_s: float = 300) -> float:
    """Wait until Kafka acknowledged ``orders`` snapshot records (the connector's counter, every 0.1 s).

    Returns how many it acknowledged (fewer on timeout).
    """
    deadline = time.monotonic() + timeout_s
    while (acked := connector.produced("snapshots")) < orders and time.monotonic() < deadline:
        time.sleep(0.1)
    return acked


def snapshot_phase(run: Run) -> None:
    orders = run.plan.snapshot_orders
    log(f"2/7 snapshot: {orders} orders")
    acked = wait_for_snapshot(run.connector, orders)
    done_ns = time.time_ns()
    run.figures["snapshot_orders"] = orders
    run.figures["snapshot_100k_s"] = (
        (done_ns - run.flow.snapshot_sent_ns) / 1e9 if acked >= orders else math.inf
    )
    seconds = run.figures["snapshot_100k_s"]
    log(f"    {int(acked)} snapshot records acknowledged {seconds:.2f} s after the send")


def measured_window(
    run: Run, seconds: float, label: str, ack_reader: ExecutionsReader | None = None
) -> dict[str, float]:
    """Acknowledged executions, connector CPU and read-back latency over ``seconds`` (progress each 10 s).

    ``p50_ms`` ... come from the run's reader (read_committed: send -> visible); with ``ack_reader``
    (read_uncommitted) also ``ack_p50_ms`` ... (send -> Kafka ack).
    """
    connector = run.connector
    start_acked, start_cpu, start_mark = run.executions_acked(), connector.cpu_seconds(), run.reader.mark()
    start_commits = connector.metric_sum("pmx_connector_transactions_committed_total")
    ack_mark = ack_reader.mark() if ack_reader is not None else 0
    start, next_report = time.monotonic(), time.monotonic() + 10
    rss_peak = 0.0
    while (now := time.monotonic()) < start + seconds:
        time.sleep(SAMPLE_S)
        rss = run.sample_rss()
        rss_peak = max(rss_peak, rss)
        if now >= next_report:
            next_report = now + 10
            rate = (run.executions_acked() - start_acked) / (now - start)
            log(f"    {label}: {now - start:.0f}/{seconds:.0f} s, {rate:,.0f} executions/s, RSS {rss:.0f} MB")
    acked = run.executions_acked() - start_acked
    cpu = connector.cpu_seconds() - start_cpu
    commits = connector.metric_sum("pmx_connector_transactions_committed_total") - start_commits
    elapsed = time.monotonic() - start
    p50, p99, p999, samples = run.reader.latencies_ms(start_mark)
    window = {
        "executions": acked,
        "executions_per_s": acked / elapsed,
        "cpu_us_per_execution": cpu / acked * 1e6 if acked else math.nan,
        "cpu_cores": cpu / elapsed,
        "transactions_per_s": commits / elapsed,
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "latency_samples": samples,
        "rss_mb_peak_window": rss_peak,
    }
    if ack_reader is not None:
        ack_p50, ack_p99, ack_p999, ack_samples = ack_reader.latencies_ms(ack_mark)
        window |= {"ack_p50_ms": ack_p50, "ack_p99_ms": ack_p99, "ack_p999_ms": ack_p999}
        window["ack_latency_samples"] = ack_samples
    return window


MODES: Final = ("at_least_once", "exactly_once")


def throughput_window(run: Run, warmup_s: float) -> dict[str, float]:
    """Phase 3's window: as fast as the stream goes, after ``warmup_s``; then a drain."""
    run.flow.rate = math.inf
    time.sleep(warmup_s)
    window = measured_window(run, run.plan.throughput_s, "throughput")
    window["load_average_1min"] = load_average()
    run.drain()
    return window


def event_to_ack_within_10ms(run: Run) -> tuple[float, float]:
    metrics = run.connector.metrics()
    within = metrics.get('pmx_connector_event_to_ack_seconds_bucket{le="0.01"}', 0.0)
    return within, metrics.get("pmx_connector_event_to_ack_seconds_count", 0.0)


def latency_window(run: Run, warmup_s: float) -> dict[str, float]:
    """Phase 4's window at ``latency_rate``, read back read_committed (the run's reader) and, by a
    second reader from the topic's end, read_uncommitted; then a drain."""
    plan = run.plan
    run.flow.rate = plan.latency_rate
    ack_reader = ExecutionsReader(
        run.kafka.bootstrap_servers,
        run.connector.topics["executions"],
        isolation="read_uncommitted",
        from_end=True,
    )
    try:
        time.sleep(warmup_s)
        within_before, count_before = event_to_ack_within_10ms(run)
        window = measured_window(run, plan.latency_s, "latency", ack_reader)
        within_after, count_after = event_to_ack_within_10ms(run)
    finally:
        ack_reader.close()
    observed = count_after - count_before
    window["connector_histogram_share_within_10ms"] = (
        (within_after - within_before) / observed if observed else math.nan
    )
    window["rss_mb_end"] = run.sample_rss()
    window["load_average_1min"] = load_average()
    run.drain()
    return window


def mode_settings(config: dict[str, Any], mode: str, visit: int) -> dict[str, Any]:
    """The bench connector's settings in ``mode``, under a name of its own (no checkpoint: no backfill)."""
    return {
        **config,
        "connector": {**config["connector"], "name": f"bench-{visit}-{mode}", "delivery": mode},
        "http": {"listen": f"127.0.0.1:{_free_port()}"},
    }


def start_connector(run: Run, settings: dict[str, Any], name: str) -> None:
    """Start a connector process, wait until it is ready and its stream's snapshot is acknowledged."""
    run.config = settings
    run.connector = ConnectorProcess(settings, run.folder, name)
    run.connector.wait_ready()
    if wait_for_snapshot(run.connector, run.plan.snapshot_orders) < run.plan.snapshot_orders:
        log("    the snapshot was not acknowledged in time: its records may be in the window")


def modes_phase(run: Run, base: dict[str, Any], *, then_more: bool) -> None:
    """Phases 3 and 4 in both delivery modes, alternating: at_least_once, exactly_once, ... per round.

    Each visit is one connector process in one mode (the first is phase 2's, at_least_once; each
    later one a fresh process under a name of its own, ready and its snapshot acknowledged before its
    windows): a throughput window, then a latency window. Afterwards (``then_more``) a fresh
    at_least_once connector runs on for the phases after this one.
    """
    plan = run.plan
    order = [mode for _ in range(plan.mode_rounds) for mode in MODES]
    log(
        f"3-4/7 delivery modes: {plan.mode_rounds} round(s) of {', '.join(MODES)}; each a throughput "
        f"window ({plan.throughput_s:.0f} s, as fast as the stream goes) and a latency window "
        f"({plan.latency_s:.0f} s at {plan.latency_rate:,.0f} executions/s)"
    )
    modes: dict[str, dict[str, list[dict[str, float]]]] = {
        mode: {"throughput": [], "latency": []} for mode in MODES
    }
    exits: list[int | None] = []
    for visit, mode in enumerate(order, 1):
        if visit > 1:
            start_connector(run, mode_settings(base, mode, visit), f"connector-{visit}-{mode}")
        throughput = throughput_window(run, plan.mode_warmup_s)
        latency = latency_window(run, plan.mode_warmup_s)
        modes[mode]["throughput"].append(throughput)
        modes[mode]["latency"].append(latency)
        log(
            f"    visit {visit}/{len(order)} {mode}: {throughput['executions_per_s']:,.0f} executions/s, "
            f"{throughput['cpu_us_per_execution']:.1f} CPU µs per execution; at "
            f"{plan.latency_rate:,.0f}/s visible p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} "
            f"ms, acknowledged p99 {latency['ack_p99_ms']:.1f} ms (load {latency['load_average_1min']:.1f})"
        )
        exits.append(run.connector.stop())
    run.figures["modes"] = modes
    run.figures["modes_connector_exit_codes"] = exits
    alo = modes["at_least_once"]
    run.figures["throughput"] = {
        **median_window(alo["throughput"]),
        "rss_mb_peak_sampled": max(w["rss_mb_peak_window"] for w in alo["throughput"]),
    }
    run.figures["latency"] = {
        **median_window(alo["latency"]),
        "rss_mb_peak_sampled": max(w["rss_mb_peak_window"] for w in alo["latency"]),
    }
    if then_more:
        main_settings = {**base, "connector": {**base["connector"], "name": "bench-main"}}
        start_connector(run, main_settings, "connector-main")


def median_window(windows: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the windows (NaN where a window has none)."""
    return {key: _median([w.get(key, math.nan) for w in windows]) for key in windows[0]}


def _median(values: list[float]) -> float:
    finite = sorted(v for v in values if isinstance(v, int | float) and math.isfinite(v))
    if not finite:
        return math.nan
    middle = len(finite) // 2
    return finite[middle] if len(finite) % 2 else (finite[middle - 1] + finite[middle]) / 2


def outage_phase(run: Run) -> None:
    plan = run.plan
    log(f"5/7 outage: {plan.outage_rate:,.0f} executions/s, every broker down for {plan.outage_s:.0f} s")
    sent_before = run.flow.produced_executions
    run.flow.rate = plan.outage_rate
    rate_start = time.monotonic()
    time.sleep(plan.warmup_s)
    steady_rss = max(run.sample_rss() for _ in range(3))
    run.kafka.brokers("down")
    down_at = time.monotonic()
    peak = 0.0
    while (now := time.monotonic()) < down_at + plan.outage_s:
        time.sleep(SAMPLE_S)
        peak = max(peak, run.sample_rss())
        if int(now - down_at) % 10 == 0:
            log(f"    brokers down {now - down_at:.0f}/{plan.outage_s:.0f} s, RSS {peak:.0f} MB peak")
    run.kafka.brokers("up")
    up_at = time.monotonic()
    sent_by_up = run.flow.produced_executions  # what the connector holds or the stream carries
    due_by_up = sent_before + plan.outage_rate * (up_at - rate_start)  # what the venue had to send
    backlog_drained = schedule_caught_up = math.inf
    deadline = up_at + plan.outage_s * 5
    while time.monotonic() < deadline and math.isinf(schedule_caught_up):
        peak = max(peak, run.sample_rss())
        acked = run.reader.count
        if math.isinf(backlog_drained) and acked >= sent_by_up:
            backlog_drained = time.monotonic() - up_at
        if acked >= due_by_up:
            schedule_caught_up = time.monotonic() - up_at
        time.sleep(0.1)
    run.drain()
    _, peak_hwm = run.connector.memory_mb()
    run.figures["outage"] = {
        "rate": plan.outage_rate,
        "outage_s": plan.outage_s,
        "rss_mb_before": steady_rss,
        "rss_mb_peak_sampled": peak,
        "rss_mb_peak_process_lifetime": peak_hwm,
        "backlog_drained_s": backlog_drained,
        "catch_up_s": schedule_caught_up,
        "executions_sent": run.flow.produced_executions - sent_before,
    }
    log(
        f"    RSS peak {peak:.0f} MB; after the brokers returned: backlog acknowledged in "
        f"{backlog_drained:.1f} s, back on the venue's schedule in {schedule_caught_up:.1f} s"
    )


def recovery_phase(run: Run) -> None:
    plan, flow, reader, config, folder = run.plan, run.flow, run.reader, run.config, run.folder
    log(
        f"6/7 recovery: {plan.recovery_rate:,.0f} executions/s, the connector SIGKILLed after "
        f"{plan.recovery_run_s:.0f} s, restarted {plan.recovery_outage_s:.0f} s later"
    )
    first, duplicates_before = flow.produced_executions + 1, reader.duplicates()
    flow.rate = plan.recovery_rate
    time.sleep(plan.recovery_run_s)
    run.connector.kill()
    killed_at, killed_ns = time.monotonic(), time.time_ns()
    time.sleep(KILL_SETTLE_S)  # what the killed process had in flight has landed (or never will)
    settled = flow.produced_executions
    missing_at_kill = reader.missing(first, settled)
    time.sleep(max(0.0, killed_at + plan.recovery_outage_s - time.monotonic()))
    unwatched = flow.produced_executions - settled
    if unwatched < plan.recovery_rate * (plan.recovery_outage_s - KILL_SETTLE_S) / 2:
        msg = f"the venue made only {unwatched} executions while no stream was open: no recovery to measure"
        raise RuntimeError(msg)
    streams_before = flow.streams_opened
    connector = run.connector = ConnectorProcess(config, folder, "connector-restarted")
    restart = wait_live_again(run, streams_before)
    missed = missing_at_kill + restart.executions_before_stream - settled
    checkpoint_age_s = None if restart.resume_ns is None else (killed_ns - restart.resume_ns) / 1e9
    log(
        f"    {missed} executions missed; the restarted connector's stream opened after "
        f"{restart.stream_open_s:.2f} s, live executions in Kafka after {restart.live_again_s:.2f} s"
    )
    if checkpoint_age_s is None or checkpoint_age_s < 0:
        log("    the restarted connector found no checkpoint written before the kill: it searches nothing")
    wait_recovered(connector)
    run.drain()
    last = flow.produced_executions
    page_size = connector.settings.backfill.page_size
    run.figures["recovery"] = {
        "live_again_s": restart.live_again_s,
        "stream_open_s": restart.stream_open_s,
        "checkpoint_age_s": checkpoint_age_s,
        "rest_requests": int(connector.metric_sum("pmx_connector_backfill_requests_total")),
        "rest_requests_minimum": math.ceil(missed / page_size),
        "missed": missed,
        "backfill_executions": int(connector.metric_sum("pmx_connector_backfill_executions_total")),
        "holdback_overflows": int(connector.metric_sum("pmx_connector_holdback_overflows_total")),
        "missing": reader.missing(first, last),
        "duplicates": reader.duplicates() - duplicates_before,
        "executions": last - first + 1,
    }
    figures = run.figures["recovery"]
    figures["connector_exit_code"] = connector.stop()
    log(
        f"    {figures['rest_requests']} search requests (minimum {figures['rest_requests_minimum']}), "
        f"{figures['missing']} of {figures['executions']} executions missing"
    )


@dataclass(frozen=True, slots=True)
class Restart:
    """What a restarted connector did: seconds from its process's start, and where it resumed."""

    stream_open_s: float
    live_again_s: float
    executions_before_stream: int  # made by the venue when the new stream opened
    resume_ns: int | None  # its F when the stream opened: the checkpoint it resumed from (None: none)


def wait_live_again(run: Run, streams_before: int) -> Restart:
    """Wait for the restarted connector's stream, then for the first execution it sent in Kafka."""
    connector, flow = run.connector, run.flow
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while flow.streams_opened == streams_before:
        _check_before(deadline, connector, "opened no stream")
        time.sleep(POLL_S)
    opened_ns, before_stream = flow.stream_opened_ns, flow.executions_before_stream
    frontier = connector.status()["completeness_frontier"]  # R while the new stream's recovery runs
    while run.reader.newest() <= before_stream:
        _check_before(deadline, connector, "published no live execution")
        time.sleep(POLL_S)
    live_ns = time.time_ns()
    return Restart(
        stream_open_s=(opened_ns - connector.started_ns) / 1e9,
        live_again_s=(live_ns - connector.started_ns) / 1e9,
        executions_before_stream=before_stream,
        resume_ns=None if frontier is None else ns_from_iso(frontier),
    )


def _check_before(deadline: float, connector: ConnectorProcess, failure: str) -> None:
    connector.check_running()
    if time.monotonic() > deadline:
        msg = f"the restarted connector {failure} in {RESTART_TIMEOUT_S:.0f} s"
        raise RuntimeError(msg)


def wait_recovered(connector: ConnectorProcess) -> None:
    """Wait until the connector's recovery completed (``/status`` phase ``streaming``)."""
    deadline, next_report = time.monotonic() + RECOVERED_TIMEOUT_S, time.monotonic() + 10
    while (phase := connector.status()["phase"]) != "streaming":
        connector.check_running()
        now = time.monotonic()
        if now > deadline:
            log(f"    the recovery did not complete in {RECOVERED_TIMEOUT_S:.0f} s (phase {phase})")
            return
        if now >= next_report:
            next_report = now + 10
            requests = connector.metric_sum("pmx_connector_backfill_requests_total")
            log(f"    recovering: {requests:.0f} search requests so far (paced to the venue's limit)")
        time.sleep(1.0)


def registry_phase(run: Run, config: dict[str, Any], folder: Path) -> None:
    plan = run.plan
    log("7/7 registry: Confluent framing (a fake Schema Registry), as fast as the stream goes")
    registry = FakeSchemaRegistry().start()
    try:
        settings = {
            **config,
            "connector": {**config["connector"], "name": "bench-registry"},
            "http": {"listen": f"127.0.0.1:{_free_port()}"},
            "schema_registry": {"url": registry.url, "auto_register": True},
        }
        before = run.reader.framings()
        run.connector.stop()  # one stream at a time (after the recovery phase it has stopped already)
        run.connector = ConnectorProcess(settings, folder, "connector-registry")
        run.connector.wait_ready()
        if wait_for_snapshot(run.connector, plan.snapshot_orders) < plan.snapshot_orders:
            log("    the snapshot was not acknowledged in time: its records may be in the window")
        run.flow.rate = math.inf
        time.sleep(plan.warmup_s)
        window = measured_window(run, plan.throughput_s, "registry")
        window["load_average_1min"] = load_average()
        run.drain()
        after = run.reader.framings()
        subjects = sorted(registry.state.versions)
    finally:
        registry.stop()
    confluent = after["confluent"] - before["confluent"]
    single_object = after["single_object"] - before["single_object"]
    subject = f"{run.connector.topics['executions']}-value"
    if single_object or confluent < window["executions"] or subject not in subjects:
        msg = (
            f"the registry phase did not measure Confluent framing: {confluent} Confluent-framed and "
            f"{single_object} single-object executions read back for {window['executions']:.0f} acknowledged "
            f"in the window; subjects registered: {subjects}"
        )
        raise RuntimeError(msg)
    run.figures["registry"] = window
    per_execution = window["cpu_us_per_execution"]
    log(f"    {window['executions_per_s']:,.0f} executions/s, {per_execution:.1f} CPU µs per execution")


PHASES: Final = ("limit", "modes", "outage", "recovery", "registry")


REAL_KAFKA_PHASES: Final = ("limit", "modes")


def on_real_kafka() -> bool:
    """``BENCH_KAFKA=real``: a three-node Apache Kafka instead of dev-kafka."""
    kind = os.environ.get("BENCH_KAFKA", "dev")
    if kind not in {"dev", "real"}:
        msg = f"BENCH_KAFKA: {kind!r}, not dev or real"
        raise SystemExit(msg)
    return kind == "real"


def selected_phases(real: bool) -> tuple[str, ...]:
    """``BENCH_PHASES`` (comma-separated names of :data:`PHASES`; the snapshot always runs), or all
    (on the real Kafka: :data:`REAL_KAFKA_PHASES`, and the outage phase is refused)."""
    chosen = tuple(name.strip() for name in os.environ.get("BENCH_PHASES", "").split(",") if name.strip())
    unknown = set(chosen) - set(PHASES)
    if unknown:
        msg = f"BENCH_PHASES: unknown phase(s) {sorted(unknown)}; known: {', '.join(PHASES)}"
        raise SystemExit(msg)
    if real and "outage" in chosen:
        msg = "BENCH_PHASES: the outage phase needs dev-kafka (it takes every broker down and up)"
        raise SystemExit(msg)
    return chosen or (REAL_KAFKA_PHASES if real else PHASES)


def results_file(real: bool, phases: tuple[str, ...]) -> Path:
    """``bench-results.json`` for a whole dev-kafka run; else a file of its own (never mixed)."""
    if real:
        return REPO / "bench-results-real-kafka.json"
    return REPO / ("bench-results.json" if phases == PHASES else "bench-results-partial.json")


def main() -> int:
    plan = Plan()
    real = on_real_kafka()
    phases = selected_phases(real)
    broker = "a three-node Apache Kafka" if real else "dev-kafka"
    log(f"plan: {json.dumps(asdict(plan))}; phases: snapshot, {', '.join(phases)}; on {broker}")
    flow = BenchFlow(
        rate=0.0, executions_per_update=plan.executions_per_update, snapshot_orders=plan.snapshot_orders
    )
    with tempfile.TemporaryDirectory(prefix="pmx-bench-") as temporary, ExitStack() as scope:
        folder = Path(temporary)
        kafka: BenchKafka = (
            scope.enter_context(real_kafka(folder)) if real else scope.enter_context(dev_kafka(folder))
        )
        figures: dict[str, Any] = raw_producer_phase(kafka, plan, folder) if "limit" in phases else {}
        with bench_venue(folder, flow) as (venue, key_path):
            config = connector_settings(venue, key_path, kafka.bootstrap_servers, _free_port())
            topics = _create_connector_topics(kafka, config, folder)
            reader = ExecutionsReader(kafka.bootstrap_servers, topics["executions"])
            connector = ConnectorProcess(config, folder)
            run = Run(plan, kafka, flow, connector, reader, config, folder, figures)
            try:
                run.connector.wait_ready()
                snapshot_phase(run)
                if "modes" in phases:
                    modes_phase(run, config, then_more=bool({"outage", "recovery"} & set(phases)))
                if "outage" in phases:
                    outage_phase(run)
                    figures["outage_missing"] = reader.missing(1, flow.produced_executions)
                figures["duplicates"] = reader.duplicates()
                figures["executions_sent"] = flow.produced_executions
                if "recovery" in phases:
                    recovery_phase(run)
                if "registry" in phases:
                    registry_phase(run, config, folder)
            finally:
                reader.close()
                figures["connector_exit_code"] = run.connector.stop()
    results = summarise(plan, figures)
    results["phases"] = ["snapshot", *phases]
    results["kafka"] = (
        "real (tests.kafka_cluster, 3 nodes)" if real else "dev-kafka (librdkafka's mock, 3 brokers)"
    )
    out = results_file(real, phases)
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"figures written to {out.name}")
    print_table(results)
    return 0


def _create_connector_topics(kafka: BenchKafka, config: dict[str, Any], folder: Path) -> dict[str, str]:
    from connector.config import load_settings
    from tests.perf.stack import topics_of

    path = folder / "topics.json"
    path.write_text(json.dumps(config))
    topics = topics_of(load_settings(path))
    for role, topic in topics.items():
        kafka.create_topic(topic, 1 if role == "checkpoints" else PARTITIONS, compact=role == "checkpoints")
    return topics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Budget:
    """A bound on a headline figure: ``direction`` "<=" or ">=" ``limit``, or, with ``plus``, the
    figure named by ``plus`` plus ``limit``."""

    direction: str
    limit: float
    plus: str | None = None

    def describe(self, value: float, figures: dict[str, Any]) -> dict[str, Any]:
        """The entry in ``budgets`` for a measured ``value`` (``figures``: every figure of the run)."""
        bound = self.limit if self.plus is None else figures[self.plus] + self.limit
        met = value <= bound if self.direction == "<=" else value >= bound
        entry: dict[str, Any] = {"budget": bound, "direction": self.direction, "met": bool(met)}
        if self.plus is not None:
            entry["relative_to"] = f"{self.plus} + {self.limit:g}"
        return entry


BUDGETS = {
    "cpu_ratio_vs_raw_producer": Budget("<=", 2.5),
    "cpu_ratio_vs_raw_producer_registry": Budget("<=", 2.5),
    "throughput_eps": Budget(">=", 30_000),
    "p99_ms_at_2k": Budget("<=", 10.0),
    "rss_mb_steady": Budget("<=", 200.0),
    "rss_mb_outage": Budget("<=", 400.0),
    "outage_missing": Budget("<=", 0),
    "snapshot_100k_s": Budget("<=", 2.0),
    "recovery_live_again_s_at_1k": Budget("<=", 2.0),
    "recovery_rest_requests": Budget("<=", 2, plus="recovery_rest_requests_minimum"),
    "recovery_missing": Budget("<=", 0),
}


Getters = dict[str, Callable[[dict[str, Any]], Any]]

HEADLINE: Final[Getters] = {
    "cpu_ratio_vs_raw_producer": lambda f: f["throughput"]["cpu_us_per_execution"] / _raw_cpu_us(f),
    "cpu_ratio_vs_raw_producer_registry": lambda f: f["registry"]["cpu_us_per_execution"] / _raw_cpu_us(f),
    "throughput_eps": lambda f: f["throughput"]["executions_per_s"],
    "p99_ms_at_2k": lambda f: f["latency"]["ack_p99_ms"],
    "rss_mb_steady": lambda f: f["latency"]["rss_mb_peak_sampled"],
    "rss_mb_outage": lambda f: f["outage"]["rss_mb_peak_sampled"],
    "outage_missing": lambda f: f["outage_missing"],
    "snapshot_100k_s": lambda f: f["snapshot_100k_s"],
    "recovery_live_again_s_at_1k": lambda f: f["recovery"]["live_again_s"],
    "recovery_rest_requests": lambda f: f["recovery"]["rest_requests"],
    "recovery_missing": lambda f: f["recovery"]["missing"],
}


def _raw_cpu_us(figures: dict[str, Any]) -> float:
    raw: float = figures["raw_producer_cpu_us_per_record"]
    return raw


def _mode(figures: dict[str, Any], mode: str, kind: str) -> dict[str, float]:
    return median_window(figures["modes"][mode][kind])


def _eos(kind: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda f: _mode(f, "exactly_once", kind)[key]


def _alo(kind: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda f: _mode(f, "at_least_once", kind)[key]


def _ratio(kind: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda f: _eos(kind, key)(f) / _alo(kind, key)(f)


# exactly_once against at_least_once, same run (medians over each mode's windows; no budget in DESIGN.md)
DELIVERY_MODES: Final[Getters] = {
    "throughput_eps_eos": _eos("throughput", "executions_per_s"),
    "throughput_ratio_eos_to_alo": _ratio("throughput", "executions_per_s"),
    "connector_cpu_us_per_execution_eos": _eos("throughput", "cpu_us_per_execution"),
    "cpu_ratio_eos_to_alo": _ratio("throughput", "cpu_us_per_execution"),
    "cpu_ratio_vs_raw_producer_eos": lambda f: _eos("throughput", "cpu_us_per_execution")(f) / _raw_cpu_us(f),
    "transactions_per_s_at_max_alo": _alo("throughput", "transactions_per_s"),
    "transactions_per_s_at_max_eos": _eos("throughput", "transactions_per_s"),
    "p50_visible_ms_at_2k_alo": _alo("latency", "p50_ms"),
    "p99_visible_ms_at_2k_alo": _alo("latency", "p99_ms"),
    "p999_visible_ms_at_2k_alo": _alo("latency", "p999_ms"),
    "p50_visible_ms_at_2k_eos": _eos("latency", "p50_ms"),
    "p99_visible_ms_at_2k_eos": _eos("latency", "p99_ms"),
    "p999_visible_ms_at_2k_eos": _eos("latency", "p999_ms"),
    "p99_visible_ratio_eos_to_alo": _ratio("latency", "p99_ms"),
    "p50_ack_ms_at_2k_eos": _eos("latency", "ack_p50_ms"),
    "p99_ack_ms_at_2k_eos": _eos("latency", "ack_p99_ms"),
    "connector_histogram_share_within_10ms_at_2k_eos": _eos(
        "latency", "connector_histogram_share_within_10ms"
    ),
    "connector_cpu_us_per_execution_at_2k_eos": _eos("latency", "cpu_us_per_execution"),
    "mode_windows_per_mode": lambda f: len(f["modes"]["exactly_once"]["throughput"]),
    "mode_windows": lambda f: {
        mode: {
            kind: [{key: _rounded(value) for key, value in window.items()} for window in windows]
            for kind, windows in kinds.items()
        }
        for mode, kinds in f["modes"].items()
    },
    "modes_connector_exit_codes": lambda f: f["modes_connector_exit_codes"],
}

DETAILS: Final[Getters] = {
    "connector_cpu_us_per_execution": lambda f: f["throughput"]["cpu_us_per_execution"],
    "connector_cpu_us_per_execution_registry": lambda f: f["registry"]["cpu_us_per_execution"],
    "throughput_eps_registry": lambda f: f["registry"]["executions_per_s"],
    "raw_producer_cpu_us_per_record": _raw_cpu_us,
    "raw_producer_records_per_s": lambda f: f["raw_producer_records_per_s"],
    "execution_event_bytes": lambda f: f["execution_event_bytes"],
    "connector_cpu_cores_at_max": lambda f: f["throughput"]["cpu_cores"],
    "p50_ms_at_max": lambda f: f["throughput"]["p50_ms"],
    "p99_ms_at_max": lambda f: f["throughput"]["p99_ms"],
    "p999_ms_at_max": lambda f: f["throughput"]["p999_ms"],
    "p50_ms_at_2k": lambda f: f["latency"]["ack_p50_ms"],
    "p999_ms_at_2k": lambda f: f["latency"]["ack_p999_ms"],
    "connector_histogram_share_within_10ms_at_2k": lambda f: f["latency"][
        "connector_histogram_share_within_10ms"
    ],
    "connector_cpu_us_per_execution_at_2k": lambda f: f["latency"]["cpu_us_per_execution"],
    "rss_mb_at_max_throughput": lambda f: f["throughput"]["rss_mb_peak_sampled"],
    "rss_mb_peak_lifetime": lambda f: f["outage"]["rss_mb_peak_process_lifetime"],
    "outage_s": lambda f: f["outage"]["outage_s"],
    "outage_rate_eps": lambda f: f["outage"]["rate"],
    "outage_backlog_acknowledged_s": lambda f: f["outage"]["backlog_drained_s"],
    "outage_catch_up_s": lambda f: f["outage"]["catch_up_s"],
    "recovery_rest_requests_minimum": lambda f: f["recovery"]["rest_requests_minimum"],
    "recovery_stream_open_s": lambda f: f["recovery"]["stream_open_s"],
    "recovery_checkpoint_age_s": lambda f: f["recovery"]["checkpoint_age_s"],
    "recovery_missed_executions": lambda f: f["recovery"]["missed"],
    "recovery_backfill_executions": lambda f: f["recovery"]["backfill_executions"],
    "recovery_holdback_overflows": lambda f: f["recovery"]["holdback_overflows"],
    "recovery_duplicates": lambda f: f["recovery"]["duplicates"],
    "recovery_outage_s": lambda f: f["recovery_outage_s"],
    "load_average_1min_throughput": lambda f: f["throughput"]["load_average_1min"],
    "load_average_1min_latency": lambda f: f["latency"]["load_average_1min"],
    "load_average_1min_throughput_eos": _eos("throughput", "load_average_1min"),
    "load_average_1min_latency_eos": _eos("latency", "load_average_1min"),
    "load_average_1min_registry": lambda f: f["registry"]["load_average_1min"],
    "duplicates": lambda f: f["duplicates"],
    "executions_sent": lambda f: f["executions_sent"],
    "recovery_connector_exit_code": lambda f: f["recovery"]["connector_exit_code"],
    "connector_exit_code": lambda f: f["connector_exit_code"],
}


def _collect(getters: Getters, figures: dict[str, Any]) -> dict[str, Any]:
    """Every figure whose phase ran (a getter that finds no figure of its phase is left out)."""
    collected = {}
    for key, get in getters.items():
        try:
            collected[key] = get(figures)
        except KeyError:
            continue
    return collected


def summarise(plan: Plan, figures: dict[str, Any]) -> dict[str, Any]:
    figures = {**figures, "recovery_outage_s": plan.recovery_outage_s} if "recovery" in figures else figures
    headline = _collect(HEADLINE, figures)
    details = {**_collect(DELIVERY_MODES, figures), **_collect(DETAILS, figures)}
    every_figure = {**headline, **details}
    budgets = {
        key: budget.describe(every_figure[key], every_figure)
        for key, budget in BUDGETS.items()
        if key in every_figure and (budget.plus is None or budget.plus in every_figure)
    }
    return {
        **{key: _rounded(value) for key, value in headline.items()},
        "budgets": budgets,
        **{key: _rounded(value) for key, value in details.items()},
        "plan": asdict(plan),
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "command": _command(),
    }


def _command() -> str:
    """How this run was started: ``make bench``, or the module with the variables that select a part."""
    chosen = [f"{name}={os.environ[name]}" for name in ("BENCH_KAFKA", "BENCH_PHASES") if name in os.environ]
    quick = ["BENCH_QUICK=1"] if os.environ.get("BENCH_QUICK") else []
    if not chosen:
        return " ".join([*quick, "make bench"])
    return " ".join([*quick, *chosen, "python -m tests.perf.bench"])


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 3 if abs(value) < 10 else 1)
    return value


def print_table(results: dict[str, Any]) -> None:
    rows = [("figure", "measured", "budget", "")]
    for key, budget in results["budgets"].items():
        relative = f" ({budget['relative_to']})" if "relative_to" in budget else ""
        rows.append(
            (
                key,
                str(results[key]),
                f"{budget['direction']} {budget['budget']}{relative}",
                "met" if budget["met"] else "MISSED",
            )
        )
    rows.extend(
        (key, str(value), "", "")
        for key, value in results.items()
        if key not in results["budgets"] and key not in {"budgets", "plan", "mode_windows"}
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for mode, kinds in results.get("mode_windows", {}).items():
        for kind, windows in kinds.items():
            for number, window in enumerate(windows, 1):
                figures = ", ".join(f"{key} {window.get(key)}" for key in WINDOW_COLUMNS if key in window)
                print(f"{mode} {kind} window {number}: {figures}")


WINDOW_COLUMNS: Final = (
    "executions_per_s",
    "cpu_us_per_execution",
    "transactions_per_s",
    "p50_ms",
    "p99_ms",
    "ack_p50_ms",
    "ack_p99_ms",
    "load_average_1min",
)


if __name__ == "__main__":
    sys.exit(main())
