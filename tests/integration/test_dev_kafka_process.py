"""``pmx-connector dev-kafka`` as a real process: ready file, clients, control URL, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer

from tests import process_stack

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 20.0
OUTAGE_S = 10.0


@dataclass
class DevKafka:
    process: subprocess.Popen[bytes]
    ready_file: Path
    bootstrap_servers: str
    control_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def wait_for_ready_file(
    process: subprocess.Popen[bytes], ready_file: Path, stderr_path: Path
) -> dict[str, str]:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready_file.exists():
            return dict(json.loads(ready_file.read_text()))
        if process.poll() is not None:
            pytest.fail(
                f"dev-kafka exited with {process.returncode}: {stderr_path.read_text(errors='replace')}"
            )
        time.sleep(0.05)
    pytest.fail(
        f"dev-kafka wrote no ready file in {READY_TIMEOUT_S}s: {stderr_path.read_text(errors='replace')}"
    )


@pytest.fixture
def dev_kafka(tmp_path: Path) -> Iterator[DevKafka]:
    ready_file = tmp_path / "kafka.json"
    stdout_path, stderr_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    command = [
        sys.executable,
        "-m",
        "connector",
        "dev-kafka",
        "--ready-file",
        str(ready_file),
        "--topic",
        "orders:3",
    ]
    with (
        stdout_path.open("wb") as stdout,
        stderr_path.open("wb") as stderr,
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=stdout, stderr=stderr) as process,
    ):
        try:
            ready = wait_for_ready_file(process, ready_file, stderr_path)
            yield DevKafka(process, ready_file, ready["bootstrap_servers"], ready["control_url"], stderr_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=EXIT_TIMEOUT_S)
    assert ready["bootstrap_servers"] in stdout_path.read_text()


def post(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - loopback http URL
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
        return dict(json.loads(response.read()))


def stop(dev: DevKafka, signum: signal.Signals) -> int:
    dev.process.send_signal(signum)
    return dev.process.wait(timeout=EXIT_TIMEOUT_S)


def test_ready_file_names_a_usable_cluster_and_sigint_stops_it(dev_kafka: DevKafka) -> None:
    assert len(dev_kafka.bootstrap_servers.split(",")) == 3
    assert dev_kafka.control_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(f"{dev_kafka.control_url}/health", timeout=10) as response:  # noqa: S310
        assert json.loads(response.read()) == {
            "status": "ok",
            "bootstrap_servers": dev_kafka.bootstrap_servers,
        }
    producer = Producer({"bootstrap.servers": dev_kafka.bootstrap_servers})
    metadata = producer.list_topics(timeout=10)
    assert len(metadata.topics["orders"].partitions) == 3
    assert sorted(metadata.brokers) == [1, 2, 3]

    assert stop(dev_kafka, signal.SIGINT) == 0, dev_kafka.stderr()
    assert not dev_kafka.ready_file.exists()


def test_every_broker_down_for_10s_loses_nothing_then_sigterm_exits_0(dev_kafka: DevKafka) -> None:
    producer = Producer(
        {
            "bootstrap.servers": dev_kafka.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "reconnect.backoff.ms": 50,
            "reconnect.backoff.max.ms": 500,
        }
    )
    failures: list[KafkaError] = []
    acked: dict[int, float] = {}
    produced_at: dict[int, float] = {}

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error)
        else:
            seq = json.loads(message.value())["seq"]
            assert seq not in acked, f"record {seq} acknowledged twice"
            acked[seq] = time.monotonic()

    seq = 0

    def produce_for(seconds: float) -> None:
        nonlocal seq
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            produced_at[seq] = time.monotonic()
            producer.produce(
                "orders", key=f"order-{seq % 13}", value=json.dumps({"seq": seq}), on_delivery=on_delivery
            )
            seq += 1
            producer.poll(0.005)

    produce_for(1.0)
    post(f"{dev_kafka.control_url}/brokers/down")
    down_at = time.monotonic()
    produce_for(OUTAGE_S)
    acked_during_outage = sum(1 for t in acked.values() if t > down_at + 0.5)
    post(f"{dev_kafka.control_url}/brokers/up")
    up_at = time.monotonic()
    produce_for(1.0)
    assert producer.flush(60) == 0
    flushed_at = time.monotonic()

    assert failures == []
    assert sorted(acked) == list(range(seq)), "every record is acknowledged exactly once"
    assert acked_during_outage == 0, "nothing can be acknowledged while every broker is down"
    stuck = [s for s, t in produced_at.items() if down_at + 0.5 < t < up_at]
    assert len(stuck) > 100
    assert all(acked[s] > up_at for s in stuck)
    assert flushed_at - up_at < 30

    received = consume_all(dev_kafka.bootstrap_servers, "orders", seq)
    assert sorted(received) == list(range(seq)), "every record is in Kafka exactly once"

    assert stop(dev_kafka, signal.SIGTERM) == 0, dev_kafka.stderr()
    assert not dev_kafka.ready_file.exists()
    assert "received SIGTERM" in dev_kafka.stderr()


def consume_all(bootstrap_servers: str, topic: str, count: int) -> list[int]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap_servers,
            "group.id": f"verify-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    received: list[int] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(received) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is None:
                    received.append(json.loads(message.value())["seq"])
        for message in consumer.consume(num_messages=1000, timeout=1.0):
            if message.error() is None:
                received.append(json.loads(message.value())["seq"])
    finally:
        consumer.close()
    return received


def test_dev_kafka_has_the_connectors_topics_so_run_works_out_of_the_box(tmp_path: Path) -> None:
    """Issue 13: ``dev-kafka`` then ``run`` with the defaults streams (the mock cannot CreateTopics)."""
    kafka = process_stack.start(
        ["dev-kafka", "--ready-file", str(tmp_path / "kafka.json")], tmp_path / "kafka.log"
    )
    bare = process_stack.start(
        ["dev-kafka", "--no-default-topics", "--brokers", "1", "--ready-file", str(tmp_path / "bare.json")],
        tmp_path / "bare.log",
    )
    venue = process_stack.start(
        [
            "simulator",
            "--ready-file",
            str(tmp_path / "venue.json"),
            "--client-key-out",
            str(tmp_path / "key.pem"),
        ],
        tmp_path / "venue.log",
    )
    connector = None
    try:
        ready = process_stack.wait_for_file(tmp_path / "kafka.json", kafka)
        bare_ready = process_stack.wait_for_file(tmp_path / "bare.json", bare)
        metadata = Producer({"bootstrap.servers": ready["bootstrap_servers"]}).list_topics(timeout=10)
        partitions = {name: len(topic.partitions) for name, topic in metadata.topics.items()}
        assert partitions == {
            "pmx.orders.executions": 6,
            "pmx.orders.snapshots": 6,
            "pmx.orders.cancel-rejects": 6,
            "pmx.connector.heartbeats": 6,
            "pmx.connector.checkpoints": 1,
            "pmx.connector.dlq": 6,
            "pmx.connector.leader": 1,  # the leader election's (connector.leader_election)
        }
        bare_topics = Producer({"bootstrap.servers": bare_ready["bootstrap_servers"]}).list_topics(timeout=10)
        assert not [name for name in bare_topics.topics if name.startswith("pmx.")]

        port = process_stack.free_port()
        config = process_stack.write_connector_config(
            tmp_path / "config.yaml",
            process_stack.wait_for_file(tmp_path / "venue.json", venue),
            ready["bootstrap_servers"],
            port,
            key_file=tmp_path / "key.pem",
            sections={},
        )
        connector = process_stack.start(["run", "--config", str(config)], tmp_path / "run.log")
        process_stack.poll_http(
            f"http://127.0.0.1:{port}/readyz", lambda r: r.status_code == 200, timeout_s=60
        )
    finally:
        for process in (connector, venue, bare, kafka):
            if process is not None:
                process_stack.stop(process)
    assert "Traceback" not in (tmp_path / "run.log").read_text()
