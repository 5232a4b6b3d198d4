"""Recovery after a connector outage, per venue.sources: seconds to caught up, REST searches used (#16).

``python -m tests.perf.outage`` (``make bench`` runs it) starts a three-node Apache Kafka
(:mod:`tests.kafka_cluster`; ``--dev-kafka``: the embedded mock instead) and, per configuration
(order stream alone, Drop Copy alone, both), the processes of :class:`tests.chaos.Stack`: the venue
simulator (``--rate`` updates/s of the connector's user, about one execution each; ``--firm-users
0``, so Drop Copy carries exactly the order stream's executions and the two are compared on the
same flow) and the connector (``connector.delivery`` at_least_once). The default rate is 300/s:
at 1,000/s the simulator process alone takes most of a core of this 2-core machine (it journals
every execution in memory and searches that journal for REST), and its order stream then drops
the connector as a slow consumer in the middle of the REST backfill. Once it streams and has run
``--steady-s``, the connector is SIGKILLed; the venue trades on for ``--outage-s``; the connector is
started again (its wall time is the measure's zero), and:

- **caught up**: seconds until ``/status`` says the recovery is complete (phase ``streaming``, no
  recovery running) and F (``completeness_frontier``) is at or past the restart: every execution of
  the outage is in Kafka, as far as the connector can prove (polled every 0.2 s);
- **Drop Copy position caught up** (with Drop Copy): seconds until ``drop_copy.position`` (the newest
  ``transact_time`` up to the confirmed resume token) is past the restart;
- **REST searches**: the venue's search requests during the recovery (pages, 429s and faults).

The executions topic is then checked against the journal as :func:`tests.chaos.verify` does. The
figures go to ``outage-results.json`` at the repository root and to stdout; progress to stderr. Exit
code 1 when the check finds an execution missing.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import requests

from tests.chaos import Figures, Stack, stack, streaming, verify, wait_until
from tests.kafka_cluster import KafkaCluster, running_cluster
from tests.perf.bench import load_average
from tests.perf.stack import log
from tests.process_stack import nanos, stop

RESULTS: Final = Path(__file__).resolve().parents[2] / "outage-results.json"
CONFIGURATIONS: Final = {
    "order_stream": ("order_stream",),
    "drop_copy": ("drop_copy",),
    "both": ("order_stream", "drop_copy"),
}
POLL_S: Final = 0.2
RECOVERY_TIMEOUT_S: Final = 600.0
STATS_TIMEOUT_S: Final = 60.0


def searches(running: Stack) -> int:
    """Search requests the venue answered so far (the simulator may be slow to answer under load)."""
    stats = requests.get(f"{running.venue['control_url']}/stats", timeout=STATS_TIMEOUT_S).json()
    return int(stats["rest_pages_total"] + stats["rest_rate_limited_total"] + stats["rest_faults_total"])


def past(iso: str | None, moment_ns: int) -> bool:
    """Whether an RFC 3339 time from ``/status`` is at or after ``moment_ns``."""
    return iso is not None and nanos(iso) >= moment_ns


def measure(
    tmp: Path, sources: tuple[str, ...], args: argparse.Namespace, cluster: KafkaCluster | None
) -> dict[str, Any]:
    """One configuration: steady flow, SIGKILL, the outage, the restart, and the recovery's figures."""
    settings = {
        "venue": {"sources": list(sources), "heartbeat_timeout_s": 30},
        "connector": {"checkpoint_interval_s": 1.0},  # start_from: the venue's start (everything checked)
    }
    simulator_args = ("--firm-users", "0", "--journal-dropcopy")
    with stack(
        tmp, rate=args.rate, settings=settings, simulator_args=simulator_args, cluster=cluster
    ) as running:
        running.start_connector()
        wait_until(lambda: streaming(running), RECOVERY_TIMEOUT_S, "the first start to stream")
        time.sleep(args.steady_s)
        assert running.connector is not None
        running.connector.send_signal(signal.SIGKILL)
        running.connector.wait(timeout=30)
        log(f"[{'+'.join(sources)}] connector SIGKILLed: a {args.outage_s:.0f} s outage")
        time.sleep(args.outage_s)
        before = searches(running)
        restarted_ns = time.time_ns()
        restarted = time.monotonic()
        running.start_connector()
        caught_up_s = position_s = None
        while time.monotonic() - restarted < RECOVERY_TIMEOUT_S and caught_up_s is None:
            status = running.status() or {}
            elapsed = round(time.monotonic() - restarted, 2)
            dropcopy = status.get("drop_copy")
            if position_s is None and dropcopy and past(dropcopy.get("position"), restarted_ns):
                position_s = elapsed
            if streaming(running) and past(status.get("completeness_frontier"), restarted_ns):
                caught_up_s = elapsed
            time.sleep(POLL_S)
        used = searches(running) - before
        time.sleep(3)
        figures = Figures()
        figures.connector_exits.append(stop(running.connector))
        verify(running, figures)
    result = {
        "sources": list(sources),
        "caught_up_s": caught_up_s,
        "dropcopy_position_caught_up_s": position_s,
        "rest_searches": used,
        "check": {
            "journal_executions": figures.journal_executions,
            "checked": figures.checked_executions,
            "missing": figures.missing,
            "duplicates": figures.duplicates,
            "orders_out_of_order": figures.orders_out_of_order,
        },
        "load_average_1m": load_average(),
    }
    log(f"[{'+'.join(sources)}] {json.dumps(result)}")
    return result


def main() -> int:
    """Run every configuration asked for; write the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300.0, help="venue updates/s (default 300)")
    parser.add_argument(
        "--outage-s", type=float, default=60.0, help="seconds the connector is down (default 60)"
    )
    parser.add_argument("--steady-s", type=float, default=10.0, help="flow before the SIGKILL (default 10)")
    parser.add_argument(
        "--configurations",
        default=",".join(CONFIGURATIONS),
        help=f"comma-separated, of {', '.join(CONFIGURATIONS)} (default all)",
    )
    parser.add_argument("--keep", action="store_true", help="keep each run's directory (logs, journal)")
    parser.add_argument(
        "--dev-kafka",
        action="store_true",
        help="on dev-kafka (librdkafka's mock, which ignores isolation.level), not a three-node Apache Kafka",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="pmx-outage-kafka-") as kafka_root, ExitStack() as scope:
        cluster = None if args.dev_kafka else scope.enter_context(running_cluster(Path(kafka_root)))
        for name in args.configurations.split(","):
            if args.keep:
                kept = Path(tempfile.mkdtemp(prefix=f"pmx-outage-{name}-"))
                log(f"[{name}] in {kept}")
                results.append(measure(kept, CONFIGURATIONS[name], args, cluster))
                continue
            with tempfile.TemporaryDirectory(prefix=f"pmx-outage-{name}-") as tmp:
                results.append(measure(Path(tmp), CONFIGURATIONS[name], args, cluster))
    document = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "rate": args.rate,
        "outage_s": args.outage_s,
        "results": results,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document, indent=2))
    return 1 if any(result["check"]["missing"] for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
