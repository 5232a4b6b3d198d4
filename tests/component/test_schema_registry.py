"""Registry mode against registries that speak HTTP: ``schemas --check/--register`` and the encoders.

The registry is :class:`tests.registry_fixtures.FakeSchemaRegistry` (the Confluent REST endpoints the
connector uses, on loopback; CI has no Docker), ``mock://`` (confluent-kafka's in-memory client), and
a real Confluent Schema Registry through testcontainers when a Docker engine answers.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.cli import main
from connector.commands.composition import encoders_for
from connector.config import Settings, load_settings
from connector.core.record_schemas import RecordType, schema_dict, schema_text
from connector.errors import SchemaNotRegistered, SchemaRegistryUnavailable
from connector.kafka.encoding import registry_subjects
from connector.kafka.topics import TOPIC_ROLE, topic_names
from tests.kafka_fixtures import docker_engine_answers
from tests.registry_fixtures import FakeSchemaRegistry
from tests.unit.test_config import VALID, write

HEARTBEAT = {
    "connector": "c",
    "subscription": "symbols=*;accounts=*",
    "emitted_time": 1_700_000_000_000_000_000,
    "phase": "streaming",
    "session_id": "s",
    "last_venue_heartbeat_time": None,
    "watermark": None,
    "version": "0.1.0",
}


def config(tmp_path: Path, **registry: Any) -> Path:
    data = copy.deepcopy(VALID)
    data["schema_registry"] = registry
    return write(tmp_path, data)


def settings(tmp_path: Path, **registry: Any) -> Settings:
    return load_settings(config(tmp_path, **registry), environ={})


# --------------------------------------------------------------------------- schemas --check / --register


def test_register_then_check_against_a_live_registry(
    tmp_path: Path, fake_registry: FakeSchemaRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, url=fake_registry.url)
    assert main(["schemas", "--register", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("✓") == len(RecordType)
    # The heartbeat topic carries two record types: one subject each (a topic subject holds one).
    assert sorted(fake_registry.state.versions) == [
        "pmx.connector.checkpoints-value",
        "pmx.connector.heartbeats-pmx.connector.v1.ConnectorHeartbeat",
        "pmx.connector.heartbeats-pmx.connector.v1.GapDetected",
        "pmx.orders.cancel-rejects-value",
        "pmx.orders.executions-value",
        "pmx.orders.snapshots-value",
    ]
    assert main(["schemas", "--check", "--config", str(path)]) == 0
    assert "compatible with pmx.orders.executions-value" in capsys.readouterr().out


def test_check_names_the_field_when_the_registry_holds_an_incompatible_version(
    tmp_path: Path, fake_registry: FakeSchemaRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    released = schema_dict(RecordType.CHECKPOINT)
    next(f for f in released["fields"] if f["name"] == "watermark")["type"] = "string"
    fake_registry.register("pmx.connector.checkpoints-value", json.dumps(released))
    path = config(tmp_path, url=fake_registry.url)
    assert main(["schemas", "--check", "--record", "Checkpoint", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "✗ Checkpoint: NOT compatible with the latest version of pmx.connector.checkpoints-value" in out
    assert "Checkpoint.watermark: no branch of the new union can read the old string" in out
    assert main(["schemas", "--register", "--record", "Checkpoint", "--config", str(path)]) == 1
    assert len(fake_registry.state.versions["pmx.connector.checkpoints-value"]) == 1  # nothing registered


def test_check_uses_the_subject_name_strategy(
    tmp_path: Path, fake_registry: FakeSchemaRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, url=fake_registry.url, subject_name_strategy="record")
    assert main(["schemas", "--register", "--record", "ExecutionEvent", "--config", str(path)]) == 0
    assert list(fake_registry.state.versions) == ["pmx.connector.v1.ExecutionEvent"]
    capsys.readouterr()


def test_check_with_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = FakeSchemaRegistry(credentials="pmx:registry-s3cret").start()
    try:
        good = config(tmp_path, url=registry.url, basic_auth_user_info="pmx:registry-s3cret")
        assert main(["schemas", "--check", "--record", "Checkpoint", "--config", str(good)]) == 0
        bad = config(tmp_path, url=registry.url, basic_auth_user_info="pmx:wrong-s3cret")
        assert main(["schemas", "--check", "--record", "Checkpoint", "--config", str(bad)]) == 1
    finally:
        registry.stop()
    captured = capsys.readouterr()
    assert f"pmx-connector schemas: schema registry {registry.url}: HTTP 401: Unauthorized" in captured.err
    assert "s3cret" not in captured.out + captured.err


def test_check_against_an_unreachable_registry_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    down = FakeSchemaRegistry()  # never started: nothing listens on its port
    path = config(tmp_path, url=down.url)
    assert main(["schemas", "--check", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pmx-connector schemas: schema registry {down.url} unreachable: ConnectError"), err
    assert err.count("\n") == 1 and "Traceback" not in err


# --------------------------------------------------------------------------- the connector's encoders


def decode_confluent(value: bytes, schema_id: int, record_type: RecordType) -> dict[str, Any]:
    assert value[0] == 0 and int.from_bytes(value[1:5], "big") == schema_id
    parsed = fastavro.parse_schema(schema_dict(record_type))
    decoded: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)
    return decoded


def test_pinned_ids_publish_while_the_registry_is_down(tmp_path: Path) -> None:
    registry = FakeSchemaRegistry()  # down: never started
    pinned = {record_type.value: 40 + index for index, record_type in enumerate(RecordType)}
    configured = settings(tmp_path, url=registry.url, auto_register=False, pinned_ids=pinned)
    encoders, schema_ids = encoders_for(configured, topic_names(configured))
    assert schema_ids is not None and schema_ids.missing() == []
    value = encoders[RecordType.CONNECTOR_HEARTBEAT](HEARTBEAT, "pmx.connector.heartbeats")
    assert decode_confluent(value, pinned["ConnectorHeartbeat"], RecordType.CONNECTOR_HEARTBEAT) == HEARTBEAT
    assert registry.state.requests == []


def test_partly_pinned_ids_ask_the_registry_for_the_rest_once(
    tmp_path: Path, fake_registry: FakeSchemaRegistry
) -> None:
    configured = settings(tmp_path, url=fake_registry.url, auto_register=False, pinned_ids={"Checkpoint": 7})
    topics = topic_names(configured)
    subjects = registry_subjects(
        "topic",
        {record_type: topics[TOPIC_ROLE[record_type]] for record_type in RecordType},
        {record_type: schema_dict(record_type) for record_type in RecordType},
    )
    registered = {
        record_type: fake_registry.register(subjects[record_type].subject, schema_text(record_type))
        for record_type in RecordType
    }
    encoders, schema_ids = encoders_for(configured, topics)
    assert schema_ids is not None and schema_ids.missing() == [
        t for t in RecordType if t.value != "Checkpoint"
    ]
    schema_ids.resolve()
    fake_registry.stop()  # a later outage does not matter: no encoder calls the registry again
    requests_before = len(fake_registry.state.requests)
    value = encoders[RecordType.CONNECTOR_HEARTBEAT](HEARTBEAT, "pmx.connector.heartbeats")
    heartbeat_id = registered[RecordType.CONNECTOR_HEARTBEAT]
    assert decode_confluent(value, heartbeat_id, RecordType.CONNECTOR_HEARTBEAT) == HEARTBEAT
    assert schema_ids.ids[RecordType.CHECKPOINT] == 7
    assert len(fake_registry.state.requests) == requests_before


def test_auto_registration_off_and_schema_missing_is_fatal_and_says_what_to_do(
    tmp_path: Path, fake_registry: FakeSchemaRegistry
) -> None:
    configured = settings(tmp_path, url=fake_registry.url, auto_register=False)
    _, schema_ids = encoders_for(configured, topic_names(configured))
    assert schema_ids is not None
    with pytest.raises(SchemaNotRegistered, match="pmx-connector schemas --register"):
        schema_ids.resolve()


def test_an_unreachable_registry_is_transient_then_registers(tmp_path: Path) -> None:
    """Unreachable: a transient failure (the engine's start-up step retries it, not ready); then it works."""
    registry = FakeSchemaRegistry()
    configured = settings(tmp_path, url=registry.url)
    encoders, schema_ids = encoders_for(configured, topic_names(configured))
    assert schema_ids is not None
    with pytest.raises(SchemaRegistryUnavailable, match="unreachable"):
        schema_ids.resolve()
    with pytest.raises(RuntimeError, match="not known yet"):
        encoders[RecordType.EXECUTION]({}, "t")
    registry.start()
    try:
        schema_ids.resolve()
        assert not schema_ids.missing()
    finally:
        registry.stop()


def _poll(predicate: Any, timeout_s: float) -> bool:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_mock_registry_in_process(tmp_path: Path) -> None:
    configured = settings(tmp_path, url="mock://composition-test")
    encoders, schema_ids = encoders_for(configured, topic_names(configured))
    assert schema_ids is not None
    schema_ids.resolve()
    value = encoders[RecordType.CONNECTOR_HEARTBEAT](HEARTBEAT, "pmx.connector.heartbeats")
    heartbeat_id = schema_ids.ids[RecordType.CONNECTOR_HEARTBEAT]
    assert decode_confluent(value, heartbeat_id, RecordType.CONNECTOR_HEARTBEAT) == HEARTBEAT
    assert len(set(schema_ids.ids.values())) == len(RecordType)  # one registered schema per record type


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers (CI here has none)")
def test_real_schema_registry_through_testcontainers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # pragma: no cover - needs Docker
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.network import Network
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.kafka import KafkaContainer

    with Network() as network:
        kafka = KafkaContainer().with_network(network).with_network_aliases("kafka")
        with kafka:
            registry = (
                DockerContainer("confluentinc/cp-schema-registry:7.6.1")
                .with_network(network)
                .with_env("SCHEMA_REGISTRY_HOST_NAME", "schema-registry")
                .with_env("SCHEMA_REGISTRY_KAFKASTORE_BOOTSTRAP_SERVERS", "PLAINTEXT://kafka:9092")
                .with_env("SCHEMA_REGISTRY_LISTENERS", "http://0.0.0.0:8081")
                .with_exposed_ports(8081)
            )
            with registry:
                wait_for_logs(registry, "Server started", timeout=120)
                url = f"http://{registry.get_container_host_ip()}:{registry.get_exposed_port(8081)}"
                path = config(tmp_path, url=url)
                assert main(["schemas", "--register", "--config", str(path)]) == 0
                assert main(["schemas", "--check", "--config", str(path)]) == 0
                configured = load_settings(path, environ={})
                encoders, schema_ids = encoders_for(configured, topic_names(configured))
                assert schema_ids is not None
                schema_ids.resolve()
                value = encoders[RecordType.CONNECTOR_HEARTBEAT](HEARTBEAT, "pmx.connector.heartbeats")
                client = SchemaRegistryClient({"url": url})
                context = SerializationContext("pmx.connector.heartbeats", MessageField.VALUE)
                assert AvroDeserializer(client)(value, context) == HEARTBEAT
    capsys.readouterr()
