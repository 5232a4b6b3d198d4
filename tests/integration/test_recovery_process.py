"""Recovery as processes: a clean restart republishes nothing; an unrecoverable gap is declared once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from connector.config import start_from_ns
from connector.core.record_schemas import RecordType
from tests.chaos import CATCH_UP_TIMEOUT_S, Figures, stack, streaming, verify, wait_until
from tests.kafka_cluster import KafkaCluster
from tests.process_stack import metric_value, nanos, stop
from tests.records import decode, read_topic

MARGIN_S = 2.0


def test_a_clean_restart_republishes_zero_executions(tmp_path: Path, real_kafka: KafkaCluster) -> None:
    with stack(tmp_path, rate=20, cluster=real_kafka) as running:
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the first backfill")
        time.sleep(4)
        assert running.connector is not None
        assert stop(running.connector) == 0
        time.sleep(3)  # the venue trades on while the connector is down
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the restart's backfill")
        time.sleep(3)
        assert stop(running.connector) == 0
        figures = Figures()
        verify(running, figures)
        second_log = (tmp_path / "run-2.log").read_text()
    print(figures.table())
    assert "resuming from the checkpoint" in second_log
    assert figures.checked_executions > 100, figures.table()
    assert figures.missing == 0, figures.table()
    assert figures.duplicates == 0, figures.table()
    assert figures.orders_out_of_order == 0, figures.table()


def test_search_failing_past_its_budget_is_declared_as_exactly_one_gap(
    tmp_path: Path, real_kafka: KafkaCluster
) -> None:
    options = {
        "simulator_args": ("--fault-rest-5xx-rate", "1"),
        "settings": {"backfill": {"retry_budget_s": 2.0, "margin_before_s": MARGIN_S, "margin_after_s": 1.0}},
    }
    with stack(tmp_path, rate=20, cluster=real_kafka, **options) as running:
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the failed backfill to be given up")
        status = running.status()
        assert status is not None
        metrics = requests.get(f"http://127.0.0.1:{running.http_port}/metrics", timeout=5).text
        time.sleep(1)
        assert running.connector is not None
        running.connector.send_signal(signal.SIGTERM)
        assert running.connector.wait(timeout=60) == 0
        bootstrap = running.kafka["bootstrap_servers"]
        heartbeat_topic = read_topic(bootstrap, running.topic("heartbeats"))
        snapshots = read_topic(bootstrap, running.topic("snapshots"))
        start_from = start_from_ns(running.configured_start_from)
    assert start_from is not None
    gaps = [
        decode(m.value(), RecordType.GAP_DETECTED)
        for m in heartbeat_topic
        if dict(m.headers())["event_type"] == RecordType.GAP_DETECTED.value.encode()
    ]
    exhausted = [gap for gap in gaps if gap["reason"] == "rest_exhausted"]
    assert len(exhausted) == 1, gaps
    margin_ns = int(MARGIN_S * 1e9)
    assert exhausted[0]["window_start"] == start_from - margin_ns
    stream_start = decode(snapshots[0].value(), RecordType.ORDER_SNAPSHOT)["processed_sent_time"]
    assert exhausted[0]["window_end"] == stream_start + 1_000_000_000
    assert "retry budget" in exhausted[0]["detail"]
    assert metric_value(metrics, 'pmx_connector_gaps_detected_total{reason="rest_exhausted"}') == 1
    assert metric_value(metrics, 'pmx_connector_backfill_requests_total{result="error"}') >= 2
    assert status["gaps_detected"] >= 1 and status["last_gap"]["reason"] == "rest_exhausted"


def test_the_backfill_command_refeeds_a_window_with_progress(tmp_path: Path) -> None:
    with stack(tmp_path, rate=50) as running:
        time.sleep(3)  # the venue trades; no connector is running
        until = datetime.now(UTC).isoformat()
        command = [sys.executable, "-m", "connector", "backfill", "--config", str(running.config)]
        refeed = subprocess.run(
            [*command, "--since", running.configured_start_from, "--until", until],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        backwards = subprocess.run(
            [*command, "--since", until, "--until", running.configured_start_from],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        records = read_topic(running.kafka["bootstrap_servers"], "pmx.orders.executions")
        journal = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    assert refeed.returncode == 0, refeed.stderr
    assert "page 1:" in refeed.stderr and "done:" in refeed.stderr
    window = (start_from_ns(running.configured_start_from), start_from_ns(until))
    expected = [
        e["execution_id"]
        for e in journal
        if e["kind"] == "execution" and window[0] <= nanos(e["transact_time"]) < window[1]  # type: ignore[operator]
    ]
    published = [decode(m.value(), RecordType.EXECUTION) for m in records]
    assert len(expected) > 50
    assert sorted(r["execution_id"] for r in published) == sorted(expected)
    assert {r["source"] for r in published} == {"BACKFILL"}
    assert {dict(m.headers())["source"] for m in records} == {b"backfill"}
    assert backwards.returncode == 2
    assert backwards.stderr.strip().endswith("must be before --until (" + running.configured_start_from + ")")


def test_every_broker_down_longer_than_any_timeout_loses_nothing_and_the_loop_stays_alive(
    tmp_path: Path,
) -> None:
    """Kafka down past an operator's message.timeout.ms: no record fails (the timeout is enforced
    infinite), the venue stream pauses, /healthz stays alive, and nothing is lost or reordered."""
    options = {
        "settings": {
            "kafka": {
                "properties": {
                    "message.timeout.ms": 3000,
                    "queue.buffering.max.messages": 200,
                    "reconnect.backoff.ms": 50,
                    "reconnect.backoff.max.ms": 500,
                }
            }
        }
    }
    with stack(tmp_path, rate=20, **options) as running:
        running.start_connector()
        wait_until(lambda: streaming(running), CATCH_UP_TIMEOUT_S, "the first backfill")
        time.sleep(2)
        requests.post(f"{running.kafka['control_url']}/brokers/down", json={}, timeout=5).raise_for_status()
        wait_until(
            lambda: (running.status() or {}).get("producer_healthy") is False,
            60,
            "the producer to be reported unhealthy",
        )
        health = requests.get(f"http://127.0.0.1:{running.http_port}/healthz", timeout=5)
        assert health.status_code == 200, "the loop keeps ticking while Kafka is down"
        time.sleep(4)  # past the operator's 3 s timeout
        requests.post(f"{running.kafka['control_url']}/brokers/up", json={}, timeout=5).raise_for_status()
        wait_until(
            lambda: streaming(running) and (running.status() or {}).get("producer_healthy") is True,
            CATCH_UP_TIMEOUT_S,
            "Kafka to take records again",
        )
        time.sleep(3)
        assert running.connector is not None
        assert stop(running.connector) == 0
        figures = Figures()
        verify(running, figures)
        log = (tmp_path / "run-1.log").read_text()
    print(figures.table())
    assert "Kafka is not taking records" in log and "taking records again" in log
    assert "delivery to" not in log, "no delivery failed"
    assert figures.missing == 0, figures.table()
    assert figures.orders_out_of_order == 0, figures.table()
    assert figures.duplicates == 0, figures.table()
