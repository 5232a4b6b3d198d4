"""The chaos scenario: dev-kafka, simulator and connector as processes, under every fault at once.

The venue's journal is the ground truth. The scenario runs order flow for ``duration_s`` while it
drops the stream, stalls it past the heartbeat timeout, expires every token, takes a Kafka broker
down for 10 s, SIGKILLs the connector twice and SIGTERMs it once (restarting it each time), with
REST 429s throughout. Then it stops the connector cleanly and checks the executions topic against
the journal, up to the watermark of the connector's final heartbeat record:

- missing executions (in the journal, not in Kafka): must be 0;
- duplicates (records beyond the first per execution ID): counted, at most 1 %;
- per order, the executions in topic order (duplicates ignored) are in venue (journal) order.

``make soak`` runs it for longer: ``python -m tests.chaos --duration 900`` (``--real-kafka``: on a
three-node Apache Kafka instead of dev-kafka). ``tests/integration/
test_chaos.py`` runs it for 60 s in ``make test``.

The :class:`Stack` runs either on ``dev-kafka`` (the embedded mock, broker down/up through its
control URL) or on the real Apache Kafka cluster of :mod:`tests.kafka_cluster`, where "broker down"
is a SIGKILL of the node's JVM and "up" its restart, and the connector creates its own topics under
a topic prefix of its own (the session's cluster is shared by the tests).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Protocol
from uuid import uuid4

import requests

from connector.core.record_schemas import RecordType
from tests.kafka_cluster import KafkaCluster, running_cluster
from tests.process_stack import free_port, nanos, start, stop, wait_for_file, write_connector_config
from tests.records import decode, read_topic

# The connector's topics by role (kafka.topics defaults), relative to kafka.topic_prefix.
TOPIC_ROLES = {
    "executions": "orders.executions",
    "snapshots": "orders.snapshots",
    "cancel_rejects": "orders.cancel-rejects",
    "heartbeats": "connector.heartbeats",
    "checkpoints": "connector.checkpoints",
    "dlq": "connector.dlq",
}
TOPICS = {
    "pmx.orders.executions": 3,
    "pmx.orders.snapshots": 3,
    "pmx.orders.cancel-rejects": 3,
    "pmx.connector.heartbeats": 1,
    "pmx.connector.checkpoints": 1,
    "pmx.connector.dlq": 1,
}
HEARTBEAT_TIMEOUT_S = 3.0
STALL_S = 5.0
BROKER_OUTAGE_S = 10.0
CATCH_UP_TIMEOUT_S = 150.0


@dataclass
class Figures:
    """What the scenario did and what it found."""

    duration_s: float = 0.0
    journal_executions: int = 0
    checked_executions: int = 0
    published_records: int = 0
    missing: int = 0
    duplicates: int = 0
    duplicate_ratio: float = 0.0
    orders_out_of_order: int = 0
    relaxed_records: int = 0  # published beside a backfill past the hold-back bound (ordering: relaxed)
    faults: dict[str, int] = field(default_factory=dict)
    connector_exits: list[int | None] = field(default_factory=list)
    gaps_by_reason: dict[str, int] = field(default_factory=dict)
    rest_refusals: int = 0
    rest_searches: int = 0  # search requests the venue answered (pages, 429s and faults)
    dropcopy_claimed: int = 0  # firm executions the last checkpoint's Drop Copy position claims
    dropcopy_tokens_refused: int = 0  # Drop Copy resumes the venue refused (expired tokens)

    def count(self, fault: str) -> None:
        """Count one injected fault."""
        self.faults[fault] = self.faults.get(fault, 0) + 1

    def table(self) -> str:
        """The figures as printable lines."""
        lines = [f"{name:>22}: {value}" for name, value in asdict(self).items()]
        return "\n".join(lines)


class Brokers(Protocol):
    """The Kafka under a :class:`Stack`, and the one fault every scenario needs: a broker down and up."""

    bootstrap_servers: str

    def down(self, broker_id: int) -> None:
        """Take one broker down."""

    def up(self, broker_id: int) -> None:
        """Bring it back."""

    def close(self) -> None:
        """Stop what this started."""


class DevKafkaBrokers:
    """``pmx-connector dev-kafka`` (the embedded mock) as a process, the connector's topics pre-created."""

    def __init__(self, tmp: Path) -> None:
        """Start the process; :meth:`ready` waits for its ready file."""
        self.tmp = tmp
        topics = [arg for name, parts in TOPICS.items() for arg in ("--topic", f"{name}:{parts}")]
        ready_file = str(tmp / "kafka.json")
        self.process = start(["dev-kafka", "--ready-file", ready_file, *topics], tmp / "kafka.log")
        self.bootstrap_servers = ""
        self.control_url = ""

    def ready(self) -> None:
        """Wait until dev-kafka wrote its ready file."""
        ready = wait_for_file(self.tmp / "kafka.json", self.process)
        self.bootstrap_servers = ready["bootstrap_servers"]
        self.control_url = ready["control_url"]

    def down(self, broker_id: int) -> None:
        """The mock broker stops answering."""
        requests.post(f"{self.control_url}/brokers/{broker_id}/down", json={}, timeout=5).raise_for_status()

    def up(self, broker_id: int) -> None:
        """The mock broker answers again."""
        requests.post(f"{self.control_url}/brokers/{broker_id}/up", json={}, timeout=5).raise_for_status()

    def close(self) -> None:
        """Stop dev-kafka."""
        stop(self.process)


class RealKafkaBrokers:
    """A node of the real cluster down is its JVM SIGKILLed; up is its restart (the cluster outlives us)."""

    def __init__(self, cluster: KafkaCluster) -> None:
        """Use ``cluster`` (started by the caller)."""
        self.cluster = cluster
        self.bootstrap_servers = cluster.bootstrap_servers

    def down(self, broker_id: int) -> None:
        """SIGKILL the node."""
        self.cluster.node(broker_id).kill()

    def up(self, broker_id: int) -> None:
        """Restart the node and wait until it is back in the cluster."""
        self.cluster.restart(broker_id)

    def close(self) -> None:
        """Nothing: the session's cluster is restored by the fixture."""


def status_at(http_port: int) -> dict[str, Any] | None:
    """A connector's ``/status``, or None while it does not answer."""
    try:
        answer: dict[str, Any] = requests.get(f"http://127.0.0.1:{http_port}/status", timeout=2).json()
    except (requests.RequestException, ValueError):
        return None
    return answer


@dataclass
class Instance:
    """One more connector process of a :class:`Stack` (same settings, its own HTTP port and log)."""

    label: str
    http_port: int
    process: subprocess.Popen[bytes]
    log: Path

    def status(self) -> dict[str, Any] | None:
        """Its ``/status``, or None while it does not answer."""
        return status_at(self.http_port)


class Stack:
    """The three processes and their control endpoints."""

    def __init__(
        self,
        tmp: Path,
        *,
        rate: float,
        simulator_args: tuple[str, ...] = (),
        settings: dict[str, dict[str, Any]] | None = None,
        cluster: KafkaCluster | None = None,
    ) -> None:
        """Start dev-kafka (unless ``cluster`` is given) and the simulator.

        The connector starts with :meth:`start_connector`. ``settings`` override sections of the
        connector's configuration. On a real ``cluster`` the connector creates its own topics, under
        a topic prefix unique to this stack.
        """
        self.tmp = tmp
        self.brokers: Brokers
        if cluster is None:
            dev_kafka = DevKafkaBrokers(tmp)
            self.brokers = dev_kafka
            self.topic_prefix = "pmx"
        else:
            self.brokers = RealKafkaBrokers(cluster)
            self.topic_prefix = f"t{uuid4().hex[:10]}"
        self.venue_started = datetime.now(UTC)
        self.venue_process = start(
            [
                "simulator", "--ready-file", str(tmp / "venue.json"),
                "--client-key-out", str(tmp / "key.pem"), "--journal", str(tmp / "journal.jsonl"),
                "--rate", str(rate), "--heartbeat-interval", "0.5", "--seed", "11", *simulator_args,
            ],
            tmp / "venue.log",
        )  # fmt: skip
        self.kafka = {"bootstrap_servers": self.brokers.bootstrap_servers}
        if cluster is None:
            dev_kafka.ready()
            self.kafka = {
                "bootstrap_servers": dev_kafka.bootstrap_servers,
                "control_url": dev_kafka.control_url,
            }
        self.venue = wait_for_file(tmp / "venue.json", self.venue_process)
        self.http_port = free_port()
        self.connector: subprocess.Popen[bytes] | None = None
        self.connector_starts = 0
        self.configured_start_from = (self.venue_started - timedelta(seconds=5)).isoformat()
        self.settings = settings or {}
        self.config = self._write_config(self.settings)
        self.instances: list[Instance] = []  # more connector processes (start_instance)

    def _write_config(
        self, overrides: dict[str, dict[str, Any]], name: str = "config.yaml", http_port: int | None = None
    ) -> Path:
        sections: dict[str, dict[str, Any]] = {
            "venue": {"heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S},
            "kafka": {
                "topic_prefix": self.topic_prefix,
                "properties": {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500},
            },
            "connector": {
                "name": "chaos", "heartbeat_interval_s": 0.5, "checkpoint_interval_s": 1.0,
                "start_from": self.configured_start_from, "flush_timeout_s": 15,
            },
            # the hostile venue indexes an execution up to 3 s late (faults.HOSTILE)
            "backfill": {"margin_before_s": 2.0, "retry_budget_s": 120, "indexing_delay_s": 3.5},
        }  # fmt: skip
        for section, values in overrides.items():
            sections[section] = {**sections.get(section, {}), **values}
        return write_connector_config(
            self.tmp / name,
            self.venue,
            self.kafka["bootstrap_servers"],
            self.http_port if http_port is None else http_port,
            key_file=self.tmp / "key.pem",
            sections=sections,
        )

    def reconfigure(self, overrides: dict[str, dict[str, Any]]) -> None:
        """Rewrite the connector's config with ``overrides`` (sections replace those given before)."""
        self.settings = {**self.settings, **overrides}
        self.config = self._write_config(self.settings)

    def topic(self, role: str) -> str:
        """The full name of the connector's topic for ``role`` (a key of :data:`TOPIC_ROLES`)."""
        return f"{self.topic_prefix}.{TOPIC_ROLES[role]}"

    def start_connector(self) -> None:
        """Start (or restart) the connector process."""
        self.connector_starts += 1
        self.connector = start(
            ["run", "--config", str(self.config)], self.tmp / f"run-{self.connector_starts}.log"
        )

    def status(self) -> dict[str, Any] | None:
        """The connector's ``/status``, or None while it does not answer."""
        return status_at(self.http_port)

    def start_instance(self, label: str) -> Instance:
        """Start one more connector process with the same settings, on an HTTP port of its own."""
        port = free_port()
        config = self._write_config(self.settings, f"config-{label}.yaml", port)
        process = start(["run", "--config", str(config)], self.tmp / f"run-{label}.log")
        instance = Instance(label, port, process, self.tmp / f"run-{label}.log")
        self.instances.append(instance)
        return instance

    def venue_faults(self, **changes: Any) -> None:
        """Change the simulator's faults."""
        requests.post(f"{self.venue['control_url']}/faults", json=changes, timeout=5).raise_for_status()

    def venue_stats(self) -> dict[str, Any]:
        """The simulator's counters."""
        stats: dict[str, Any] = requests.get(f"{self.venue['control_url']}/stats", timeout=5).json()
        return stats

    def broker(self, broker_id: int, action: str) -> None:
        """Take one broker ``down`` or bring it ``up``."""
        if action == "down":
            self.brokers.down(broker_id)
        else:
            self.brokers.up(broker_id)

    def close(self) -> None:
        """Stop every process."""
        for instance in self.instances:
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGCONT)  # a test may have left it frozen
                stop(instance.process)
        for process in (self.connector, self.venue_process):
            if process is not None:
                stop(process)
        self.brokers.close()


@contextmanager
def stack(tmp: Path, *, rate: float, **options: Any) -> Iterator[Stack]:
    """A started :class:`Stack`, stopped on exit (``options`` as for :class:`Stack`)."""
    running = Stack(tmp, rate=rate, **options)
    try:
        yield running
    finally:
        running.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; raise AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
            raise AssertionError(msg)
        time.sleep(0.25)


def streaming(running: Stack) -> bool:
    """Whether the connector's streams are connected with its recovery complete."""
    status = running.status()
    if not status or status["recovery"] is not None or status["phase"] != "streaming":
        return False
    order_stream = "order_stream" not in status["sources"] or status["connected"]
    return bool(order_stream and (status["drop_copy"] is None or status["drop_copy"]["connected"]))


def run_faults(running: Stack, duration_s: float, figures: Figures, say: Callable[[str], None]) -> None:
    """Inject the faults, spread over ``duration_s`` seconds, repeating the cycle for long runs."""
    started = time.monotonic()
    cycle = 0
    while cycle == 0 or time.monotonic() - started < duration_s - 60:
        cycle += 1
        say(f"cycle {cycle}: stream drops")
        running.venue_faults(end_stream_every_s=2.5)
        wait_for_stream_drops(running, 5 * cycle)
        figures.faults["stream_drops"] = stream_drops(running)
        running.venue_faults(end_stream_every_s=None)
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the connector to stream again")

        say(f"cycle {cycle}: a {STALL_S:.0f} s stall (heartbeat timeout {HEARTBEAT_TIMEOUT_S:.0f} s)")
        running.venue_faults(stall_s=STALL_S, stall_after_messages=1)
        time.sleep(STALL_S + 1)
        running.venue_faults(stall_s=0)
        figures.count("stalls")

        say(f"cycle {cycle}: every access token and drop-copy resume token expires")
        running.venue_faults(
            end_streams_on_token_expiry=True, expire_issued_tokens=True, expire_dropcopy_tokens=True
        )
        figures.count("token_expiries")
        time.sleep(3)

        say(f"cycle {cycle}: SIGKILL")
        kill_and_restart(running, signal.SIGKILL, figures)
        time.sleep(4)

        say(f"cycle {cycle}: broker 1 down for {BROKER_OUTAGE_S:.0f} s")
        running.broker(1, "down")
        time.sleep(BROKER_OUTAGE_S)
        running.broker(1, "up")
        figures.count("broker_outages")

        say(f"cycle {cycle}: SIGKILL again")
        kill_and_restart(running, signal.SIGKILL, figures)
        time.sleep(4)

        say(f"cycle {cycle}: SIGTERM")
        kill_and_restart(running, signal.SIGTERM, figures)
        time.sleep(4)
    remaining = duration_s - (time.monotonic() - started)
    if remaining > 0:
        say(f"steady flow for {remaining:.0f} s")
        time.sleep(remaining)


def stream_drops(running: Stack) -> int:
    """The streams (order streams and Drop Copy) the venue has ended by fault."""
    stats = running.venue_stats()
    return int(stats["streams_ended_by_fault_total"] + stats.get("dropcopy_streams_ended_by_fault_total", 0))


def wait_for_stream_drops(running: Stack, total: int) -> None:
    """Wait until the venue has ended ``total`` streams by fault."""
    wait_until(lambda: stream_drops(running) >= total, 90, f"{total} stream drops")


def kill_and_restart(running: Stack, signum: signal.Signals, figures: Figures) -> None:
    """Signal the connector, wait for it to exit, and start it again."""
    process = running.connector
    assert process is not None
    process.send_signal(signum)
    process.wait(timeout=60)
    figures.connector_exits.append(process.returncode)
    figures.count("sigkill" if signum == signal.SIGKILL else "sigterm")
    running.start_connector()


def verify(running: Stack, figures: Figures) -> None:
    """Compare the executions topic with the journal, up to what the connector claims at the end.

    The order stream's claim is the final heartbeat's watermark (F): every user's execution at or
    before it. With Drop Copy as a source (the journal then holds the firm's executions), the last
    checkpoint's ``dropcopy_time`` claims every firm execution before it, and with Drop Copy alone
    F claims the firm's executions too. Venue order is the firm's order when Drop Copy is a source.
    """
    bootstrap = running.kafka["bootstrap_servers"]
    heartbeats = read_topic(bootstrap, running.topic("heartbeats"))
    final_watermark = None
    for message in heartbeats:
        headers = dict(message.headers() or [])
        if headers.get("event_type") == RecordType.CONNECTOR_HEARTBEAT.value.encode():
            record = decode(message.value(), RecordType.CONNECTOR_HEARTBEAT)
            if record["phase"] == "stopped":
                final_watermark = record["watermark"]
        elif headers.get("event_type") == RecordType.GAP_DETECTED.value.encode():
            reason = decode(message.value(), RecordType.GAP_DETECTED)["reason"]
            figures.gaps_by_reason[reason] = figures.gaps_by_reason.get(reason, 0) + 1
    assert final_watermark is not None, "no final heartbeat record with a watermark"

    messages = read_topic(bootstrap, running.topic("executions"))
    published = [decode(m.value(), RecordType.EXECUTION) for m in messages]
    relaxed = [dict(m.headers() or []).get("ordering") == b"relaxed" for m in messages]
    journal = [json.loads(line) for line in (running.tmp / "journal.jsonl").read_text().splitlines()]
    executions = [entry for entry in journal if entry["kind"] == "execution"]
    firm = [entry for entry in journal if entry["kind"] == "firm_execution"]
    sources = running.settings.get("venue", {}).get("sources", ["order_stream"])
    checked: dict[str, dict[str, Any]] = {}
    if "order_stream" in sources:
        claimed = (e for e in executions if nanos(e["transact_time"]) <= final_watermark)
        checked.update((e["execution_id"], e) for e in claimed)
    if "drop_copy" in sources:
        assert firm, "Drop Copy is a source: run the simulator with --journal-dropcopy"
        dropcopy_time = last_checkpoint(running)["dropcopy_time"]
        assert dropcopy_time is not None, "Drop Copy is a source, and the last checkpoint has no position"
        figures.dropcopy_claimed = len([e for e in firm if nanos(e["transact_time"]) < dropcopy_time])
        claim = dropcopy_time if "order_stream" in sources else max(dropcopy_time, final_watermark + 1)
        checked.update((e["execution_id"], e) for e in firm if nanos(e["transact_time"]) < claim)
        executions = firm  # in the firm's order (the user's executions are among them)
    published_ids = [record["execution_id"] for record in published]
    figures.journal_executions = len(executions)
    figures.checked_executions = len(checked)
    figures.published_records = len(published)
    figures.missing = len(checked.keys() - set(published_ids))
    figures.duplicates = len(published_ids) - len(set(published_ids))
    figures.duplicate_ratio = round(figures.duplicates / max(1, len(set(published_ids))), 5)
    figures.relaxed_records = sum(relaxed)
    figures.orders_out_of_order = orders_out_of_venue_order(executions, published, relaxed)


def last_checkpoint(running: Stack) -> dict[str, Any]:
    """The connector's last checkpoint record."""
    messages = read_topic(running.kafka["bootstrap_servers"], running.topic("checkpoints"))
    assert messages, "no checkpoint"
    return decode(messages[-1].value(), RecordType.CHECKPOINT)


def orders_out_of_venue_order(
    executions: list[dict[str, Any]], published: list[dict[str, Any]], relaxed: list[bool]
) -> int:
    """Orders whose first occurrences in the topic invert the venue's order, unmarked.

    A pair of one order's executions may appear out of venue order only if one of the two says so
    (``ordering: relaxed``: it was published beside a backfill that outlasted the hold-back bound).
    """
    venue_index = {entry["execution_id"]: index for index, entry in enumerate(executions)}
    first: dict[str, list[tuple[int, bool]]] = defaultdict(list)
    seen: set[str] = set()
    for record, marked in zip(published, relaxed, strict=True):  # per order one partition: offset order
        if record["execution_id"] not in seen and record["execution_id"] in venue_index:
            seen.add(record["execution_id"])
            first[record["order_id"]].append((venue_index[record["execution_id"]], marked))
    out_of_order = 0
    for occurrences in first.values():
        if any(
            later[0] < earlier[0] and not (later[1] or earlier[1])
            for position, earlier in enumerate(occurrences)
            for later in occurrences[position + 1 :]
        ):
            out_of_order += 1
    return out_of_order


def run_scenario(
    tmp: Path,
    duration_s: float,
    say: Callable[[str], None] = print,
    *,
    cluster: KafkaCluster | None = None,
    fault_seed: int = 11,
    delivery: str = "at_least_once",
    sources: tuple[str, ...] = ("order_stream",),
) -> Figures:
    """Run the whole scenario in ``tmp`` (on ``cluster``, else dev-kafka); return the figures.

    The venue is the hostile simulator (``--hostile``: any first message, heartbeats ahead of a
    queued backlog, new sessions and snapshots mid-stream, duplicates, late and reordered search
    results, ...), its dice seeded with ``fault_seed``, and 30 % of searches answered 429. The
    connector runs with ``connector.delivery`` = ``delivery`` and ``venue.sources`` = ``sources``
    (Drop Copy's faults are the order stream's, plus the expiry of every resume token); the check
    reads ``read_committed``.
    """
    figures = Figures()
    started = time.monotonic()
    venue_args = ("--hostile", "--fault-seed", str(fault_seed), "--fault-rest-429-rate", "0.3")
    if "drop_copy" in sources:
        venue_args = (*venue_args, "--journal-dropcopy")
    settings = {"connector": {"delivery": delivery}, "venue": {"sources": list(sources)}}
    with stack(tmp, rate=20, simulator_args=venue_args, cluster=cluster, settings=settings) as running:
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the first start to finish its backfill")
        run_faults(running, duration_s, figures, say)
        say("faults over: waiting for the connector to catch up")
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the connector to catch up")
        time.sleep(3)
        stats = running.venue_stats()
        figures.rest_refusals = stats["rest_rate_limited_total"] + stats["rest_faults_total"]
        figures.rest_searches = figures.rest_refusals + stats["rest_pages_total"]
        figures.dropcopy_tokens_refused = stats.get("dropcopy_tokens_refused_total", 0)
        assert running.connector is not None
        figures.connector_exits.append(stop(running.connector))
        figures.duration_s = round(time.monotonic() - started, 1)
        verify(running, figures)
    return figures


def main() -> int:
    """``make soak``: run the scenario for ``--duration`` seconds and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=900.0, help="seconds of order flow (default 900)")
    parser.add_argument(
        "--real-kafka",
        action="store_true",
        help="on a three-node Apache Kafka (tests.kafka_cluster), not dev-kafka",
    )
    parser.add_argument(
        "--fault-seed", type=int, default=11, help="seed of the hostile venue's dice (default 11)"
    )
    parser.add_argument(
        "--delivery",
        choices=("at_least_once", "exactly_once"),
        default="exactly_once",
        help="connector.delivery (default exactly_once: then no duplicate may reach a read_committed reader)",
    )
    parser.add_argument(
        "--sources",
        default="order_stream",
        help="venue.sources, comma-separated: order_stream, drop_copy, or both (default order_stream)",
    )
    args = parser.parse_args()
    with TemporaryDirectory(prefix="pmx-soak-") as tmp, ExitStack() as cluster_scope:
        cluster = (
            cluster_scope.enter_context(running_cluster(Path(tmp) / "kafka")) if args.real_kafka else None
        )
        figures = run_scenario(
            Path(tmp),
            args.duration,
            say=lambda line: print(f"[soak] {line}", flush=True),
            cluster=cluster,
            fault_seed=args.fault_seed,
            delivery=args.delivery,
            sources=tuple(args.sources.split(",")),
        )
    print(figures.table())
    exactly_once = args.delivery == "exactly_once"
    duplicates_ok = figures.duplicates == 0 if exactly_once else figures.duplicate_ratio <= 0.01
    ok = figures.missing == 0 and duplicates_ok and figures.orders_out_of_order == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
