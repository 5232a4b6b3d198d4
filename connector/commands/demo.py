"""``pmx-connector demo``: the embedded Kafka, the venue simulator and the connector, with a live view.

Everything runs in this one process on localhost. The venue's order flow is paused while the
connector subscribes, then runs at ``--rate`` updates per second; the terminal shows events/s,
records acknowledged, latency, heartbeats, reconnects and the last executions read back from
Kafka. On exit (Ctrl-C or ``--duration``) the flow stops, the connector flushes, and every
execution the venue produced after the subscription is looked up in Kafka: produced, found,
missing, duplicated. The exit code is 1 if anything is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from connector.commands.composition import BuiltService, build
from connector.config import Settings
from connector.core.record_schemas import RecordType, schema_dict
from connector.embedded import EmbeddedKafka
from connector.errors import RuntimeFailure
from connector.kafka.encoding import SingleObjectDecoder
from connector.kafka.topic_reader import read_tail
from connector.kafka.topics import topic_names
from connector.observability.metrics import Metrics
from connector.simulator import SimulatedVenue, SimulatorConfig, VenueEndpoints

CONNECT_TIMEOUT_S: Final = 30.0
DRAIN_TIMEOUT_S: Final = 15.0
VERIFY_TIMEOUT_S: Final = 60.0
REFRESH_S: Final = 0.5
PARTITIONS: Final = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``demo``'s flags."""
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    parser.add_argument(
        "--rate", type=float, default=50.0, metavar="R", help="venue updates per second (default: 50)"
    )
    parser.add_argument("--seed", type=int, default=1, help="order-flow seed (default: 1)")
    parser.add_argument(
        "--brokers", type=int, default=3, metavar="N", help="embedded Kafka brokers (default: 3)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when nothing is missing from Kafka."""
    console = Console()
    root = logging.getLogger()
    root.setLevel(max(root.level, logging.WARNING))  # the live view is the output; keep logs to warnings
    with (
        tempfile.TemporaryDirectory(prefix="pmx-demo-") as folder,
        _stack(args, Path(folder), console) as stack,
    ):
        venue, kafka, built, settings, stop_connector = stack
        console.print("[bold]connector subscribed[/]; the venue starts trading now. Ctrl-C to stop.")
        cut = venue.journal.last_seq
        venue.set_rate(args.rate)
        executions_topic = topic_names(settings)["executions"]
        try:
            _live_view(console, built.metrics, kafka.bootstrap_servers, executions_topic, args.duration)
        except KeyboardInterrupt:
            console.print("stopping ...")
        venue.set_rate(0.0)
        _drain(venue, built)
        stop_connector()  # flushes: every record is acknowledged (or reported) before the check
        report = _verify(Path(folder) / "journal.jsonl", cut, kafka.bootstrap_servers, executions_topic)
        _print_report(console, report)
        return 0 if report["missing"] == 0 else 1


@contextmanager
def _stack(
    args: argparse.Namespace, folder: Path, console: Console
) -> Iterator[tuple[SimulatedVenue, EmbeddedKafka, BuiltService, Settings, Callable[[], None]]]:
    journal = folder / "journal.jsonl"
    config = SimulatorConfig(
        seed=args.seed, rate=0.0, warmup_updates=40, heartbeat_interval_s=1.0, journal_path=journal
    )
    with EmbeddedKafka(brokers=args.brokers) as kafka, SimulatedVenue(config) as venue:
        key_file = folder / "client.pem"
        key_file.write_bytes(venue.generate_client_key())
        key_file.chmod(0o600)
        endpoints = venue.endpoints
        document = settings_for_simulator(venue.endpoints, kafka.bootstrap_servers, key_file)
        # The demo stops its own brokers at the end: keep librdkafka's reconnect chatter quiet.
        document["kafka"]["properties"] = {"log.connection.close": False, "log_level": 2}
        document["http"] = {"listen": "127.0.0.1:0"}
        document["connector"] = {"name": "pmx-demo", "heartbeat_interval_s": 2}
        settings = Settings.model_validate(document)
        for topic in topic_names(settings).values():
            kafka.create_topic(topic, partitions=PARTITIONS, replication_factor=min(3, args.brokers))
        console.print(f"embedded Kafka   {kafka.bootstrap_servers}")
        console.print(f"venue simulator  gRPC {endpoints.grpc_target}  REST {endpoints.rest_url}")
        built = build(settings)
        runner = threading.Thread(target=built.run, name="connector", daemon=True)
        runner.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not built.status.connected:
            if time.monotonic() > deadline or not runner.is_alive():
                built.stop()
                msg = f"the connector did not connect: {built.status.last_error or 'no error recorded'}"
                raise RuntimeFailure(msg)
            time.sleep(0.05)
        console.print(f"connector        /metrics /status on http://127.0.0.1:{built.health.port}")

        def stop_connector() -> None:
            built.stop()
            runner.join(timeout=30)

        try:
            yield venue, kafka, built, settings, stop_connector
        finally:
            stop_connector()


def settings_for_simulator(
    endpoints: VenueEndpoints, bootstrap_servers: str, key_file: Path
) -> dict[str, Any]:
    """The settings document that points the connector at a simulator and a Kafka cluster."""
    return {
        "venue": {
            "grpc_target": endpoints.grpc_target,
            "rest_url": endpoints.rest_url,
            "insecure": True,
            "participant_id": endpoints.participant_id,
        },
        "auth": {
            "token_url": endpoints.token_url,
            "client_id": endpoints.client_id,
            "private_key_file": str(key_file),
            "audience": endpoints.audience,
        },
        "kafka": {"bootstrap_servers": bootstrap_servers},
    }


def _live_view(
    console: Console, metrics: Metrics, bootstrap: str, topic: str, duration: float | None
) -> None:
    decoder = SingleObjectDecoder([schema_dict(RecordType.EXECUTION)])
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "pmx-demo-view", "auto.offset.reset": "latest"}
    )
    consumer.subscribe([topic])
    last: deque[dict[str, Any]] = deque(maxlen=6)
    started = time.monotonic()
    previous = (started, _sample(metrics, "pmx_connector_events_received_total", "execution"))
    rate = 0.0
    try:
        with Live(console=console, refresh_per_second=4) as live:
            while duration is None or time.monotonic() - started < duration:
                deadline = time.monotonic() + REFRESH_S
                while (left := deadline - time.monotonic()) > 0:
                    message = consumer.poll(left)
                    value = message.value() if message is not None and message.error() is None else None
                    if value:
                        last.append(decoder(value))
                now = time.monotonic()
                received = _sample(metrics, "pmx_connector_events_received_total", "execution")
                rate = (received - previous[1]) / max(now - previous[0], 1e-6)
                previous = (now, received)
                live.update(_view(metrics, rate, last, now - started))
    finally:
        consumer.close()


def _view(metrics: Metrics, rate: float, last: deque[dict[str, Any]], elapsed: float) -> Group:
    table = Table(title=f"pmx-connector demo  ({elapsed:.0f} s)", show_header=False)
    p50, p99 = _percentiles(metrics, "pmx_connector_event_to_ack_seconds", (0.5, 0.99))
    rows = [
        ("executions/s received", f"{rate:,.0f}"),
        (
            "executions received",
            f"{_sample(metrics, 'pmx_connector_events_received_total', 'execution'):,.0f}",
        ),
        ("records acknowledged", f"{_total(metrics, 'pmx_connector_records_produced_total'):,.0f}"),
        ("event -> ack p50 / p99", f"≤ {p50 * 1000:.1f} ms / ≤ {p99 * 1000:.1f} ms (histogram buckets)"),
        ("venue heartbeats", f"{_sample(metrics, 'pmx_connector_events_received_total', 'heartbeat'):,.0f}"),
        ("reconnects", f"{_total(metrics, 'pmx_connector_reconnects_total'):,.0f}"),
        ("in flight", f"{_total(metrics, 'pmx_connector_inflight_records'):,.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    events = Table(title="last executions read back from Kafka")
    for column in ("order", "type", "qty @ px", "state", "source"):
        events.add_column(column)
    for record in last:
        execution = record["execution"]
        order = execution["order"]
        quantity = execution["last_shares"] / max(order["fractional_quantity_scale"], 1)
        price = execution["last_px"] / max(order["price_scale"], 1)
        events.add_row(
            record["order_id"],
            execution["type"].removeprefix("EXECUTION_TYPE_"),
            f"{quantity:g} @ {price:g}" if execution["last_shares"] else "",
            order["state"].removeprefix("ORDER_STATE_"),
            record["source"].lower(),
        )
    return Group(table, events)


def _sample(metrics: Metrics, name: str, label_value: str) -> float:
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and label_value in sample.labels.values():
                return float(sample.value)
    return 0.0


def _total(metrics: Metrics, name: str) -> float:
    return sum(
        float(sample.value)
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name
    )


def _percentiles(metrics: Metrics, name: str, quantiles: tuple[float, ...]) -> tuple[float, ...]:
    buckets: list[tuple[float, float]] = []
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                buckets.append((float(sample.labels["le"]), float(sample.value)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    results = []
    for quantile in quantiles:
        bound = next((le for le, count in buckets if total and count >= quantile * total), 0.0)
        results.append(bound)
    return tuple(results)


def _drain(venue: SimulatedVenue, built: BuiltService) -> None:
    """Wait until the completeness frontier covers the venue's last execution (or a deadline)."""
    journal_path = venue.config.journal_path
    last_time = 0
    if journal_path is not None:
        for line in journal_path.read_text().splitlines():
            entry = json.loads(line)
            last_time = max(last_time, _nanos(entry["transact_time"]))
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        frontier = built.status.completeness_frontier
        if frontier is not None and _nanos(frontier) >= last_time // 1000 * 1000:
            return
        time.sleep(0.1)


def _verify(journal: Path, cut: int, bootstrap: str, topic: str) -> dict[str, int]:
    produced = [
        entry["execution_id"]
        for entry in map(json.loads, journal.read_text().splitlines())
        if entry["kind"] == "execution" and entry["seq"] > cut
    ]
    found = Counter(record["execution_id"] for record in _read_executions(bootstrap, topic))
    missing = sum(1 for execution_id in produced if execution_id not in found)
    duplicated = sum(count - 1 for count in found.values() if count > 1)
    return {"produced": len(produced), "found": len(set(produced) & found.keys()), "missing": missing,
            "duplicated": duplicated}  # fmt: skip


def _read_executions(bootstrap: str, topic: str) -> Iterator[dict[str, Any]]:
    """Every execution record in the topic, read to its end as the connector reads its own topics.

    Transaction markers hold offsets but are never delivered, so the read ends on each partition's
    end-of-partition event, not on a count; a read that cannot finish raises instead of stopping short.
    """
    decoder = SingleObjectDecoder([schema_dict(RecordType.EXECUTION)])
    for message in read_tail(bootstrap, {}, topic, last=None, timeout_s=VERIFY_TIMEOUT_S):
        value = message.value()
        if value:
            yield decoder(value)


def _print_report(console: Console, report: dict[str, int]) -> None:
    console.print()
    table = Table(title="verification against the venue's journal (executions after the subscription)")
    for column in ("produced by the venue", "found in Kafka", "missing", "duplicated"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{report[key]:,}" for key in ("produced", "found", "missing", "duplicated")))
    console.print(table)
    verdict = (
        "[green]nothing missing[/]" if report["missing"] == 0 else "[red]executions missing from Kafka[/]"
    )
    console.print(verdict)


def _nanos(rfc3339: str) -> int:
    moment = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000
