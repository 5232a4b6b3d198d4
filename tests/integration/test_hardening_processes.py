"""``pmx-connector run`` as a process against operator mistakes, a registry outage, and known secrets.

Operator mistakes found only at run time (configuration mistakes are the exit-2 table in
``tests/unit/test_config.py``) each end in one clear fatal line and exit code 1, with no traceback;
the transient ones (Kafka, the token endpoint or the Schema Registry unreachable) keep the process
up, not ready, retrying, with the reason in ``/status`` and the log: never a crash loop. The cases
run as concurrent processes.

The secrets run uses a private key, a SASL password and registry credentials with known values,
at DEBUG log level, and finds none of them in the logs, ``/metrics``, ``/status``, ``/readyz``, the
fatal line of a refused run, or ``/proc/PID/cmdline``. (The embedded Kafka has no SASL, so there the
SASL password is configured but unused: what matters is where the connector puts it.) The SASL_SSL
run does the same on the real Kafka's secured cluster (``secure_kafka``: SCRAM-SHA-512 over TLS with
a private CA), where the password from a ``PMX_CONNECTOR_*`` variable really authenticates.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from connector.embedded import EmbeddedKafka
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.simulator.clock import utc_now
from tests.integration.test_run_process import TOPICS, free_port, metric_value, poll_http, stop
from tests.kafka_fixtures import SecureKafka
from tests.registry_fixtures import FakeSchemaRegistry

SASL_PASSWORD = "sasl-Pa55-7f3e9c1d"
REGISTRY_PASSWORD = "reg-Pa55-0b4d2a86"
REGISTRY_CREDENTIALS = f"pmx:{REGISTRY_PASSWORD}"
WRONG_REGISTRY_PASSWORD = "wrong-Pa55-55aa11ee"


@pytest.fixture(scope="module")
def venue() -> Iterator[SimulatedVenue]:
    config = SimulatorConfig(
        seed=5, rate=0.0, warmup_updates=30, heartbeat_interval_s=0.3, rest_rate_limit=False
    )
    with SimulatedVenue(config) as simulated:
        yield simulated


@pytest.fixture(scope="module")
def kafka_with_topics() -> Iterator[EmbeddedKafka]:
    with EmbeddedKafka(brokers=1) as kafka:
        for name, partitions in TOPICS.items():
            kafka.create_topic(name, partitions=partitions, replication_factor=1)
        yield kafka


def connector_config(
    venue: SimulatedVenue, key: Path, bootstrap: str, port: int, **overrides: dict[str, Any]
) -> dict[str, Any]:
    endpoints = venue.endpoints
    config: dict[str, Any] = {
        "venue": {
            "grpc_target": endpoints.grpc_target,
            "rest_url": endpoints.rest_url,
            "insecure": True,
            "participant_id": endpoints.participant_id,
        },
        "auth": {
            "token_url": endpoints.token_url,
            "client_id": endpoints.client_id,
            "private_key_file": str(key),
            "audience": endpoints.audience,
        },
        "kafka": {"bootstrap_servers": bootstrap},
        "http": {"listen": f"127.0.0.1:{port}"},
        "connector": {"heartbeat_interval_s": 0.5},
    }
    for section, values in overrides.items():
        config[section] = {**config.get(section, {}), **values}
    return config


@dataclass
class Run:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout_s: float) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(self.process)
            pytest.fail(f"{self.name}: still running after {timeout_s} s:\n{self.text()[-2000:]}")


def start_run(
    name: str,
    tmp_path: Path,
    config: dict[str, Any],
    env: dict[str, str] | None = None,
    log_level: str = "INFO",
) -> Run:
    folder = tmp_path / name.replace(" ", "-")
    folder.mkdir()
    path = folder / "config.yaml"
    path.write_text(json.dumps(config))
    log = folder / "run.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", "--log-level", log_level, "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, **(env or {})},
        )
    run = Run(name, process, log, int(config["http"]["listen"].rsplit(":", 1)[1]))
    STARTED.append(run)
    return run


STARTED: list[Run] = []


@pytest.fixture(autouse=True)
def stop_every_run() -> Iterator[None]:
    """Whatever a test's outcome, no connector process outlives it."""
    yield
    while STARTED:
        stop(STARTED.pop().process)


def assert_one_fatal_line(run: Run, expected: str) -> None:
    text = run.text()
    assert "Traceback" not in text, text
    last = text.rstrip("\n").splitlines()[-1]
    assert last.startswith(f"pmx-connector run: {expected}"), f"{run.name}: {last}"


@pytest.fixture
def client_key(venue: SimulatedVenue, tmp_path: Path) -> Path:
    path = tmp_path / "client.pem"
    path.write_bytes(venue.generate_client_key())
    return path


def test_runtime_operator_mistakes(
    venue: SimulatedVenue, kafka_with_topics: EmbeddedKafka, client_key: Path, tmp_path: Path
) -> None:
    bootstrap = kafka_with_topics.bootstrap_servers
    ahead = timedelta(hours=1)
    with (
        SimulatedVenue(SimulatorConfig(seed=6, rate=0.0), clock=lambda: utc_now() + ahead) as skewed,
        EmbeddedKafka(brokers=1) as bare_kafka,  # no topics, and (like a locked-down cluster) no CreateTopics
    ):
        skewed_key = tmp_path / "skewed-client.pem"
        skewed_key.write_bytes(skewed.generate_client_key())
        registry_down = FakeSchemaRegistry()  # never started
        dead_port = free_port()
        fatal: dict[str, tuple[Run, str]] = {}

        def fatal_case(name: str, config: dict[str, Any], expected: str) -> None:
            fatal[name] = (start_run(name, tmp_path, config), expected)

        fatal_case(
            "clock skew",
            connector_config(skewed, skewed_key, bootstrap, free_port()),
            f"token endpoint refused client '{skewed.endpoints.client_id}': invalid_client_assertion: "
            "the assertion has expired; the assertion's iat/exp come from this machine's clock",
        )
        fatal_case(
            "unknown client",
            connector_config(venue, client_key, bootstrap, free_port(), auth={"client_id": "not-registered"}),
            "token endpoint refused client 'not-registered': invalid_client",
        )
        fatal_case(
            "topics missing, cannot create",
            connector_config(venue, client_key, bare_kafka.bootstrap_servers, free_port()),
            "topic pmx.",
        )
        fatal_case(
            "topics missing, creation off",
            connector_config(
                venue, client_key, bare_kafka.bootstrap_servers, free_port(), kafka={"create_topics": False}
            ),
            "topics missing and kafka.create_topics is off: pmx.orders.executions, ",
        )
        registry_refuses = FakeSchemaRegistry(credentials=REGISTRY_CREDENTIALS).start()
        try:
            fatal_case(
                "registry credentials refused",
                connector_config(
                    venue,
                    client_key,
                    bootstrap,
                    free_port(),
                    schema_registry={
                        "url": registry_refuses.url,
                        "basic_auth_user_info": f"pmx:{WRONG_REGISTRY_PASSWORD}",
                    },
                ),
                f"schema registry {registry_refuses.url} refused ",
            )
            token_down = start_run(
                "token endpoint unreachable",
                tmp_path,
                connector_config(
                    venue,
                    client_key,
                    bootstrap,
                    free_port(),
                    auth={"token_url": f"http://127.0.0.1:{dead_port}/oauth/token"},
                ),
            )
            kafka_down = start_run(
                "kafka unreachable",
                tmp_path,
                connector_config(venue, client_key, f"127.0.0.1:{dead_port}", free_port()),
            )
            waiting_for_registry = start_run(
                "registry unreachable",
                tmp_path,
                connector_config(
                    venue, client_key, bootstrap, free_port(), schema_registry={"url": registry_down.url}
                ),
            )
            for name, (run, expected) in fatal.items():
                assert run.wait(60) == 1, f"{name}:\n{run.text()[-2000:]}"
                assert_one_fatal_line(run, expected)
            assert WRONG_REGISTRY_PASSWORD not in fatal["registry credentials refused"][0].text()
        finally:
            registry_refuses.stop()

        try:
            for run, reason in (
                (
                    token_down,
                    f"token endpoint http://127.0.0.1:{dead_port}/oauth/token unreachable: cannot connect",
                ),
                (waiting_for_registry, f"schema registry {registry_down.url} unreachable: ConnectError"),
                (kafka_down, f"cannot reach Kafka at 127.0.0.1:{dead_port}:"),
            ):
                base = f"http://127.0.0.1:{run.port}"
                status = poll_http(
                    f"{base}/status", lambda r, reason=reason: reason in (r.json().get("last_error") or "")
                ).json()
                assert not status["ready"] and not status["connected"]
                assert requests.get(f"{base}/readyz", timeout=2).status_code == 503
                assert run.process.poll() is None, "a transient outage must not end the process"
                assert reason in run.text(), "the reason is in the log too"
            assert requests.get(f"http://127.0.0.1:{waiting_for_registry.port}/status", timeout=2).json()[
                "phase"
            ] == ("waiting_for_schema_registry")
            assert requests.get(f"http://127.0.0.1:{kafka_down.port}/status", timeout=2).json()["phase"] == (
                "waiting_for_kafka"
            )
        finally:
            for run in (token_down, waiting_for_registry, kafka_down):
                assert stop(run.process) == 0, run.text()[-2000:]
                assert "Traceback" not in run.text()


def test_secrets_never_leave_the_process(
    venue: SimulatedVenue, kafka_with_topics: EmbeddedKafka, client_key: Path, tmp_path: Path
) -> None:
    key_lines = [line for line in client_key.read_text().splitlines() if "-----" not in line]
    secrets = {
        "private key": max(key_lines, key=len),
        "private key (another line)": key_lines[len(key_lines) // 2],
        "SASL password": SASL_PASSWORD,
        "registry password": REGISTRY_PASSWORD,
        "registry basic auth header": base64.b64encode(REGISTRY_CREDENTIALS.encode()).decode(),
    }
    registry = FakeSchemaRegistry(credentials=REGISTRY_CREDENTIALS)  # down at first
    config = connector_config(
        venue,
        client_key,
        kafka_with_topics.bootstrap_servers,
        free_port(),
        kafka={"properties": {"sasl.username": "pmx", "sasl.password": SASL_PASSWORD}},
        schema_registry={"url": registry.url},
    )
    run = start_run(
        "secrets",
        tmp_path,
        config,
        env={"PMX_CONNECTOR_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": REGISTRY_CREDENTIALS},
        log_level="DEBUG",
    )
    base = f"http://127.0.0.1:{run.port}"
    seen: dict[str, str] = {}
    try:
        waiting = poll_http(f"{base}/status", lambda r: r.json()["phase"] == "waiting_for_schema_registry")
        seen["/status while waiting"] = waiting.text
        seen["/proc/PID/cmdline"] = Path(f"/proc/{run.process.pid}/cmdline").read_bytes().decode()
        registry.start()
        poll_http(f"{base}/readyz", lambda r: r.status_code == 200, timeout_s=60)
        snapshots = 'pmx_connector_records_produced_total{topic="pmx.orders.snapshots"}'
        seen["/metrics"] = poll_http(f"{base}/metrics", lambda r: metric_value(r.text, snapshots) >= 1).text
        for endpoint in ("/status", "/readyz", "/healthz"):
            seen[endpoint] = requests.get(f"{base}{endpoint}", timeout=2).text
    finally:
        code = stop(run.process)
        registry.stop()
    seen["log"] = run.text()
    assert code == 0, seen["log"][-3000:]
    assert "Traceback" not in seen["log"]
    assert json.loads(seen["/status"])["phase"] == "streaming"
    # the registry was really used: every record type registered, with the credentials
    assert len(registry.state.versions) == 6
    for where, text in seen.items():
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} appears in {where}"


def test_secrets_never_leave_the_process_over_sasl_ssl(
    venue: SimulatedVenue, secure_kafka: SecureKafka, client_key: Path, tmp_path: Path
) -> None:
    user = "pmx-connector"
    password = secure_kafka.passwords[user]
    properties = secure_kafka.client_properties(user)
    del properties["sasl.password"]  # from the environment only
    config = connector_config(
        venue,
        client_key,
        secure_kafka.bootstrap_servers,
        free_port(),
        kafka={"topic_prefix": "granted", "replication_factor": 1, "properties": properties},
    )
    run = start_run(
        "secrets over SASL_SSL",
        tmp_path,
        config,
        env={"PMX_CONNECTOR_KAFKA__PROPERTIES__SASL.PASSWORD": password},
        log_level="DEBUG",
    )
    base = f"http://127.0.0.1:{run.port}"
    seen: dict[str, str] = {}
    try:
        seen["/proc/PID/cmdline"] = Path(f"/proc/{run.process.pid}/cmdline").read_bytes().decode()
        poll_http(f"{base}/readyz", lambda r: r.status_code == 200, timeout_s=60)
        snapshots = 'pmx_connector_records_produced_total{topic="granted.orders.snapshots"}'
        seen["/metrics"] = poll_http(f"{base}/metrics", lambda r: metric_value(r.text, snapshots) >= 1).text
        for endpoint in ("/status", "/readyz", "/healthz"):
            seen[endpoint] = requests.get(f"{base}{endpoint}", timeout=2).text
    finally:
        code = stop(run.process)
    seen["log"] = run.text()
    assert code == 0, seen["log"][-3000:]
    assert "Traceback" not in seen["log"]
    assert "created topic granted.orders.executions" in seen["log"], "the connector made its own topics"
    assert json.loads(seen["/status"])["phase"] == "streaming"
    for where, text in seen.items():
        assert password not in text, f"the SASL password appears in {where}"
