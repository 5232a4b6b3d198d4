"""Failover trials of a hot standby on the real broker: leader SIGKILL -> the standby publishing (issue #15).

``python -m tests.perf.failover --trials 10`` (``make bench`` runs it after :mod:`tests.perf.bench`)
starts a three-node Apache Kafka (:mod:`tests.kafka_cluster`, KRaft, replication 3,
``min.insync.replicas`` 2), the venue simulator (``--rate`` 200 updates/s, a journal) and two
connector processes with the same config (``tests.chaos.Stack.start_instance``: each its own HTTP
port) with ``connector.leader_election: true`` and ``connector.delivery: exactly_once``. A consumer
thread in this process reads the executions topic ``read_committed`` (explicit) from the beginning
and notes, per record, its venue ``transact_time``, its ``source`` and when it held it.

Each trial, once the leader streams (``/status`` role ``leader``, phase ``streaming``: its recovery
complete) and the other instance stands by (phase ``standby``, ready), and the flow has run
``--steady-s`` more seconds:

1. the leader is SIGKILLed (its wall time is the trial's zero);
2. **stream open**: seconds until the standby's ``/status`` says ``connected`` (its venue stream
   delivered a first message; polled every 0.05 s);
3. **visible**: seconds until the reader holds the first execution whose venue ``transact_time`` is
   after the kill. Only the new leader can have published it (the old one was dead by then), and the
   reader sees it only once its transaction committed, so this is "a consumer gets new fills again".
   Such a record may come from the backfill of the takeover window or from the new stream: the first
   of each is reported too (``visible_stream_s``: the first live one). The new leader's
   ``records_produced`` counter is not used: it counts Kafka acknowledgements of records not yet
   committed, which a read_committed consumer does not see;
4. the killed process is started again (a new instance: new port and log) and the trial ends once
   it stands by and the new leader's recovery completed (``phase`` streaming).

At the end both instances are stopped (the standby first, so the last ``stopped`` heartbeat is the
leader's) and the executions topic is checked against the venue's journal as
:func:`tests.chaos.verify` does (read_committed): missing and duplicate executions, orders out of
venue order. min/median/p90/max of both measures, the per-trial figures, the check and the 1-minute
load average go to ``failover-results.json`` at the repository root (its own file: ``bench.py``'s
``bench-results.json`` stays one run of that module) and to stdout; progress to stderr. The exit
code is 1 when the check finds an execution missing or duplicated, or a trial failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from tests.chaos import Figures, Instance, Stack, stack, verify
from tests.kafka_cluster import running_cluster
from tests.perf.bench import load_average
from tests.perf.reader import transact_time_and_source
from tests.perf.stack import log
from tests.process_stack import stop

REPO: Final = Path(__file__).resolve().parents[2]
RESULTS: Final = REPO / "failover-results.json"
RATE: Final = 200.0  # venue updates per second
POLL_S: Final = 0.05
TAKEOVER_TIMEOUT_S: Final = 60.0
SETTLE_TIMEOUT_S: Final = 240.0  # the new leader's backfill is paced to the venue's 12 searches a minute
STREAM: Final = 0  # ExecutionEvent.source: STREAM
SOURCES: Final = ("stream", "snapshot", "backfill", "drop_copy", "unknown")


class CommittedExecutions:
    """A ``read_committed`` consumer thread on the executions topic: when each record was held."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        """Assign every partition of ``topic`` from the beginning and start consuming."""
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"failover-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
                "log_level": 0,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=30)
        partitions = list(metadata.topics[topic].partitions)
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self._lock = threading.Lock()
        self._held: list[tuple[int, int, int]] = []  # (held at ns, transact_time ns, source)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="committed-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._consumer.consume(num_messages=500, timeout=0.05)
            except KafkaException:
                continue
            now = time.time_ns()
            batch = []
            for message in messages:
                value = message.value()
                if message.error() is not None or not value:
                    continue
                transact_time, source = transact_time_and_source(value)
                if transact_time is not None:
                    batch.append((now, transact_time, source))
            if batch:
                with self._lock:
                    self._held.extend(batch)

    def mark(self) -> int:
        """A position in what was held (records held later are at or after it)."""
        with self._lock:
            return len(self._held)

    def first_after(self, after_ns: int, since: int, source: int | None = None) -> tuple[int, str] | None:
        """When the reader held the first record with ``transact_time`` > ``after_ns`` (of ``source``),
        among those held since the mark ``since``, and its source."""
        with self._lock:
            held = [
                (at, kind)
                for at, transact, kind in self._held[since:]
                if transact > after_ns and source in {None, kind}
            ]
        if not held:
            return None
        at, kind = min(held)
        return at, SOURCES[kind]

    def close(self) -> None:
        """Stop the thread and the consumer."""
        self._stopping.set()
        self._thread.join(timeout=10)
        self._consumer.close()


@dataclass(slots=True)
class Trial:
    """One leader SIGKILL: seconds from the kill."""

    number: int
    killed: str
    stream_open_s: float
    visible_s: float
    visible_stream_s: float
    first_visible_source: str
    restarted_standby_s: float  # from the killed process's restart until it stood by
    settled_s: float  # from the kill until the new leader's recovery completed
    load_average_1min: float


@dataclass(slots=True)
class Run:
    """The stack, the two current instances and what the trials measured."""

    running: Stack
    reader: CommittedExecutions
    leader: Instance
    standby: Instance
    trials: list[Trial] = field(default_factory=list)
    starts: int = 2


def leads(instance: Instance) -> bool:
    """Whether it leads with its recovery complete."""
    status = instance.status()
    return status is not None and status["role"] == "leader" and status["phase"] == "streaming"


def stands_by(instance: Instance) -> bool:
    """Whether it stands by, ready."""
    status = instance.status()
    return status is not None and status["phase"] == "standby" and bool(status["ready"])


def connected(instance: Instance) -> bool:
    """Whether its venue stream is open (a first message arrived)."""
    status = instance.status()
    return bool(status and status["connected"])


def wait(predicate: Any, timeout_s: float, what: str, *alive: Instance) -> float:
    """Poll ``predicate`` every :data:`POLL_S`; return the seconds it took (raise on timeout or exit)."""
    started = time.monotonic()
    while not predicate():
        for instance in alive:
            if instance.process.poll() is not None:
                msg = f"{instance.label} exited with {instance.process.returncode} waiting for {what}"
                raise RuntimeError(msg)
        if time.monotonic() - started > timeout_s:
            msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
            raise RuntimeError(msg)
        time.sleep(POLL_S)
    return time.monotonic() - started


def trial(run: Run, number: int, steady_s: float) -> Trial:
    """Kill the leader, time the takeover, restart the killed process as the standby."""
    leader, standby = run.leader, run.standby
    wait(lambda: leads(leader), SETTLE_TIMEOUT_S, "the leader to stream", leader)
    wait(lambda: stands_by(standby), SETTLE_TIMEOUT_S, "the other to stand by", standby)
    time.sleep(steady_s)
    since = run.reader.mark()
    leader.process.send_signal(signal.SIGKILL)
    killed_ns, killed_at = time.time_ns(), time.monotonic()
    leader.process.wait(timeout=10)
    stream_open_s = wait(lambda: connected(standby), TAKEOVER_TIMEOUT_S, "the takeover", standby)
    wait(lambda: run.reader.first_after(killed_ns, since) is not None, TAKEOVER_TIMEOUT_S, "a new execution")
    wait(
        lambda: run.reader.first_after(killed_ns, since, STREAM) is not None,
        TAKEOVER_TIMEOUT_S,
        "a new live execution",
        standby,
    )
    first_any = run.reader.first_after(killed_ns, since)
    first_live = run.reader.first_after(killed_ns, since, STREAM)
    assert first_any is not None and first_live is not None
    run.starts += 1
    restarted = run.running.start_instance(f"i{run.starts}")
    restarted_standby_s = wait(
        lambda: stands_by(restarted), SETTLE_TIMEOUT_S, "the restart to stand by", restarted
    )
    wait(lambda: leads(standby), SETTLE_TIMEOUT_S, "the new leader's recovery", standby)
    settled_s = time.monotonic() - killed_at
    run.leader, run.standby = standby, restarted
    return Trial(
        number=number,
        killed=leader.label,
        stream_open_s=stream_open_s,
        visible_s=(first_any[0] - killed_ns) / 1e9,
        visible_stream_s=(first_live[0] - killed_ns) / 1e9,
        first_visible_source=first_any[1],
        restarted_standby_s=restarted_standby_s,
        settled_s=settled_s,
        load_average_1min=load_average(),
    )


def spread(values: list[float]) -> dict[str, float]:
    """min, median, p90 (nearest rank) and max."""
    ordered = sorted(values)
    if not ordered:
        return {}
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    middle = len(ordered) // 2
    median = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "min": round(ordered[0], 3),
        "median": round(median, 3),
        "p90": round(p90, 3),
        "max": round(ordered[-1], 3),
    }


def main() -> int:
    """Run the trials and write ``failover-results.json``."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=10, help="leader SIGKILLs (default 10)")
    parser.add_argument(
        "--rate", type=float, default=RATE, help=f"venue updates per second (default {RATE:g})"
    )
    parser.add_argument(
        "--steady-s", type=float, default=3.0, help="flow before each kill, once both settled (default 3)"
    )
    args = parser.parse_args()
    started = time.monotonic()
    settings = {"connector": {"delivery": "exactly_once", "leader_election": True}}
    failures: list[str] = []
    figures = Figures()
    with tempfile.TemporaryDirectory(prefix="pmx-failover-") as temporary:
        tmp = Path(temporary)
        log(f"failover: a 3-node Kafka, the simulator at {args.rate:g} updates/s, two connectors")
        with (
            running_cluster(tmp / "kafka") as cluster,
            stack(tmp, rate=args.rate, cluster=cluster, settings=settings) as running,
        ):
            first = running.start_instance("i1")
            wait(lambda: leads(first), SETTLE_TIMEOUT_S, "the first instance to lead", first)
            second = running.start_instance("i2")
            wait(lambda: stands_by(second), SETTLE_TIMEOUT_S, "the second to stand by", second)
            reader = CommittedExecutions(cluster.bootstrap_servers, running.topic("executions"))
            run = Run(running, reader, first, second)
            try:
                for number in range(1, args.trials + 1):
                    try:
                        done = trial(run, number, args.steady_s)
                    except RuntimeError as exc:
                        failures.append(f"trial {number}: {exc}")
                        log(f"    trial {number} failed: {exc}")
                        break
                    run.trials.append(done)
                    log(
                        f"    trial {number}: killed {done.killed}; stream open {done.stream_open_s:.2f} s, "
                        f"first new execution visible {done.visible_s:.2f} s ({done.first_visible_source}), "
                        f"first live one {done.visible_stream_s:.2f} s; settled {done.settled_s:.1f} s "
                        f"(load {done.load_average_1min:.1f})"
                    )
                log("    stopping the standby, then the leader; checking the topic against the journal")
                stop(run.standby.process)
                wait(lambda: leads(run.leader), SETTLE_TIMEOUT_S, "the leader to catch up", run.leader)
                time.sleep(2)
                figures.connector_exits.append(stop(run.leader.process))
                verify(running, figures)
            finally:
                reader.close()
    trials = run.trials
    results: dict[str, Any] = {
        "trials": len(trials),
        "stream_open_s": spread([t.stream_open_s for t in trials]),
        "visible_s": spread([t.visible_s for t in trials]),
        "visible_stream_s": spread([t.visible_stream_s for t in trials]),
        "settled_s": spread([t.settled_s for t in trials]),
        "restarted_standby_s": spread([t.restarted_standby_s for t in trials]),
        "first_visible_sources": {
            source: sum(t.first_visible_source == source for t in trials) for source in SOURCES
        },
        "journal_check": {
            "checked_executions": figures.checked_executions,
            "published_records": figures.published_records,
            "missing": figures.missing,
            "duplicates": figures.duplicates,
            "orders_out_of_order": figures.orders_out_of_order,
            "connector_exits": figures.connector_exits,
        },
        "failures": failures,
        "load_average_1min": spread([t.load_average_1min for t in trials]),
        "per_trial": [{k: _rounded(v) for k, v in asdict(t).items()} for t in trials],
        "rate_updates_per_s": args.rate,
        "steady_s": args.steady_s,
        "wall_s": round(time.monotonic() - started, 1),
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "command": " ".join(["python -m tests.perf.failover", *sys.argv[1:]]),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    ok = (
        not failures and figures.missing == 0 and figures.duplicates == 0 and figures.orders_out_of_order == 0
    )
    return 0 if ok else 1


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def print_table(results: dict[str, Any]) -> None:
    """The spreads and the check, one line each."""
    print(f"failover: {results['trials']} trials (leader SIGKILL -> ...), seconds")
    for key in ("stream_open_s", "visible_s", "visible_stream_s", "settled_s", "restarted_standby_s"):
        print(f"  {key:<20} " + "  ".join(f"{name} {value}" for name, value in results[key].items()))
    print(f"  first visible source {results['first_visible_sources']}")
    print(f"  journal check        {results['journal_check']}")
    print(f"  load average (1 min) {results['load_average_1min']}")
    if results["failures"]:
        print(f"  FAILURES             {results['failures']}")


if __name__ == "__main__":
    sys.exit(main())
