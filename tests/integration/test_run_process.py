"""End to end as processes: the real Kafka cluster, ``simulator`` and ``run`` with a config file.

The connector creates its topics itself (the ``pmx`` prefix is this test's alone on the session's
cluster).

The connector's own claim is checked against the venue's journal: every execution with a venue time
after the snapshot and up to the watermark of the connector's last heartbeat record is in Kafka,
exactly once, and the service exits 0 on SIGTERM after flushing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.core.record_schemas import RecordType
from tests.kafka_cluster import KafkaCluster
from tests.process_stack import (
    free_port,
    metric_value,
    nanos,
    poll_http,
    start,
    stop,
    wait_for_file,
    write_connector_config,
)
from tests.records import decode, read_topic

TOPICS = {
    "pmx.orders.executions": 3,
    "pmx.orders.snapshots": 3,
    "pmx.orders.cancel-rejects": 3,
    "pmx.connector.heartbeats": 1,
    "pmx.connector.checkpoints": 1,
    "pmx.connector.dlq": 1,
}


@pytest.fixture
def stack(tmp_path: Path, real_kafka: KafkaCluster) -> Iterator[dict[str, Any]]:
    venue = start(
        [
            "simulator", "--ready-file", str(tmp_path / "venue.json"),
            "--client-key-out", str(tmp_path / "key.pem"), "--journal", str(tmp_path / "journal.jsonl"),
            "--rate", "100", "--heartbeat-interval", "0.5",
        ],
        tmp_path / "venue.log",
    )  # fmt: skip
    try:
        yield {
            "kafka": {"bootstrap_servers": real_kafka.bootstrap_servers},
            "venue": wait_for_file(tmp_path / "venue.json", venue),
            "tmp": tmp_path,
        }
    finally:
        stop(venue)


def write_config(stack: dict[str, Any], port: int) -> Path:
    tmp = stack["tmp"]
    return write_connector_config(
        tmp / "config.yaml",
        stack["venue"],
        stack["kafka"]["bootstrap_servers"],
        port,
        key_file=tmp / "key.pem",
        sections={"connector": {"name": "from-the-file", "heartbeat_interval_s": 0.5}},
    )


def test_run_publishes_the_venue_stream_and_stops_cleanly(stack: dict[str, Any]) -> None:
    port = free_port()
    tmp = stack["tmp"]
    env = {
        **os.environ,
        "PMX_CONNECTOR_CONNECTOR__NAME": "it-connector",
    }  # the environment overrides the file
    with (tmp / "run.log").open("wb") as log:
        connector = subprocess.Popen(
            [sys.executable, "-m", "connector", "run", "--config", str(write_config(stack, port))],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        poll_http(f"{base}/readyz", lambda r: r.status_code == 200)
        executions_metric = 'pmx_connector_records_produced_total{topic="pmx.orders.executions"}'
        poll_http(f"{base}/metrics", lambda r: metric_value(r.text, executions_metric) >= 300)
        status = requests.get(f"{base}/status", timeout=2).json()
        assert status["phase"] == "streaming" and status["connected"] and status["session_id"]
        assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
    finally:
        code = stop(connector)
    log_text = (tmp / "run.log").read_text()
    assert code == 0, log_text
    assert "all records acknowledged" in log_text

    bootstrap = stack["kafka"]["bootstrap_servers"]
    heartbeats = [
        decode(m.value(), RecordType.CONNECTOR_HEARTBEAT)
        for m in read_topic(bootstrap, "pmx.connector.heartbeats")
    ]
    assert heartbeats and heartbeats[0]["connector"] == "it-connector"
    final = heartbeats[-1]  # one partition: in order; written after the flush at shutdown
    assert final["phase"] == "stopped" and final["watermark"] is not None
    watermark = final["watermark"]
    snapshots = [
        decode(m.value(), RecordType.ORDER_SNAPSHOT) for m in read_topic(bootstrap, "pmx.orders.snapshots")
    ]
    snapshot_sent = min(s["processed_sent_time"] for s in snapshots)
    published = [
        decode(m.value(), RecordType.EXECUTION)["execution_id"]
        for m in read_topic(bootstrap, "pmx.orders.executions")
    ]
    journal = [json.loads(line) for line in (tmp / "journal.jsonl").read_text().splitlines()]
    covered = [
        entry["execution_id"]
        for entry in journal
        if entry["kind"] == "execution" and snapshot_sent < nanos(entry["transact_time"]) <= watermark
    ]
    assert len(covered) > 50
    assert set(covered) - set(published) == set(), "executions under the watermark missing from Kafka"
    assert len(published) == len(set(published)), "duplicates in Kafka"

    tail = subprocess.run(
        [sys.executable, "-m", "connector", "tail", "pmx.orders.executions", "--bootstrap-servers", bootstrap,
         "--from-beginning", "--max", "5"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(lines) == 5
    for line in lines:
        assert line["encoding"] == "avro-single-object"
        assert line["value"]["execution_id"] in published
        assert line["key"] == line["value"]["order_id"]
        assert line["headers"]["execution_id"] == line["value"]["execution_id"]
