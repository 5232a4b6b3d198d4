"""Registry mode against registries that speak HTTP: ``schemas --check/--register`` and the encoders.

The registry is :class:`tests.registry_fixtures.FakeSchemaRegistry` (the Confluent REST endpoints the
connector uses, on loopback, for faults and credentials), ``mock://`` (confluent-kafka's in-memory
client), and a real one: Apicurio Registry's Confluent-compatible API
(:class:`tests.registry_fixtures.ApicurioRegistry`), which also judges our schema checker on every
pair of the schema-compat tests.
"""

from __future__ import annotations

import copy
import io
import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
import requests
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.cli import main
from connector.commands.composition import encoders_for
from connector.config import Settings, load_settings
from connector.core.record_schemas import RecordType, schema_dict, schema_text
from connector.core.schema_compat import is_backward_compatible
from connector.errors import SchemaNotRegistered, SchemaRegistryUnavailable
from connector.kafka.encoding import RegistrySchemaIds, registry_subjects
from connector.kafka.topics import TOPIC_ROLE, topic_names
from tests.registry_fixtures import ApicurioRegistry, FakeSchemaRegistry
from tests.unit import test_schema_compat as compat_cases
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
    "instance": "",
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


# --------------------------------------------------------------------------- a real registry (Apicurio)


def prefixed_config(tmp_path: Path, prefix: str, **registry: Any) -> Path:
    """Settings whose topics (so subjects) are under ``prefix``: the session's registry is shared."""
    data = copy.deepcopy(VALID)
    data["kafka"] = {**data["kafka"], "topic_prefix": prefix}
    data["schema_registry"] = registry
    return write(tmp_path, data)


def latest_id(registry: ApicurioRegistry, subject: str) -> int:
    answer = requests.get(f"{registry.url}/subjects/{subject}/versions/latest", timeout=10)
    answer.raise_for_status()
    return int(answer.json()["id"])


def test_register_check_and_encode_against_a_real_registry(
    tmp_path: Path, real_registry: ApicurioRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    path = prefixed_config(tmp_path, "real1", url=real_registry.url)
    assert main(["schemas", "--register", "--config", str(path)]) == 0
    assert capsys.readouterr().out.count("✓") == len(RecordType)
    assert main(["schemas", "--check", "--config", str(path)]) == 0
    assert "compatible with real1.orders.executions-value" in capsys.readouterr().out

    topics = topic_names(load_settings(path, environ={}))
    subjects = registry_subjects(
        "topic",
        {record_type: topics[TOPIC_ROLE[record_type]] for record_type in RecordType},
        {record_type: schema_dict(record_type) for record_type in RecordType},
    )
    with SchemaRegistryClient({"url": real_registry.url}) as client:
        schema_ids = RegistrySchemaIds(
            client, subjects, auto_register=True, pinned_ids={}, url=real_registry.url
        )
        schema_ids.resolve()
        assert schema_ids.ids[RecordType.EXECUTION] == latest_id(
            real_registry, "real1.orders.executions-value"
        )
        heartbeat_subject = "real1.connector.heartbeats-pmx.connector.v1.ConnectorHeartbeat"
        assert schema_ids.ids[RecordType.CONNECTOR_HEARTBEAT] == latest_id(real_registry, heartbeat_subject)
        value = schema_ids.encoder(RecordType.CONNECTOR_HEARTBEAT)(HEARTBEAT, topics["heartbeats"])
        context = SerializationContext(topics["heartbeats"], MessageField.VALUE)
        # the registry's own copy of the schema decodes it
        assert AvroDeserializer(client, schema_str=None)(value, context) == HEARTBEAT


def test_check_rejects_an_incompatible_schema_on_a_real_registry(
    tmp_path: Path, real_registry: ApicurioRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    subject = "real2.connector.checkpoints-value"
    released = schema_dict(RecordType.CHECKPOINT)
    watermark = next(f for f in released["fields"] if f["name"] == "watermark")
    watermark["type"] = "string"
    del watermark["default"]  # a real registry refuses a schema whose default does not match its type
    with SchemaRegistryClient({"url": real_registry.url}) as client:
        client.register_schema(subject, Schema(json.dumps(released), "AVRO"))
    path = prefixed_config(tmp_path, "real2", url=real_registry.url)
    assert main(["schemas", "--check", "--record", "Checkpoint", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"✗ Checkpoint: NOT compatible with the latest version of {subject}" in out
    assert "Checkpoint.watermark: no branch of the new union can read the old string" in out
    assert main(["schemas", "--register", "--record", "Checkpoint", "--config", str(path)]) == 1
    capsys.readouterr()
    with SchemaRegistryClient({"url": real_registry.url}) as client:
        assert client.get_versions(subject) == [1], "nothing registered"


def test_our_checker_and_a_real_registry_say_the_same(real_registry: ApicurioRegistry) -> None:
    """Every pair of the schema-compat tests (the Avro project's and our deliberate changes), both ways.

    The one documented difference: our checker also rejects a changed ``logicalType`` (the bytes
    resolve, the values would be misread), which Avro's own rules accept.
    """
    cases = [(name, reader, writer) for name, reader, writer in compat_cases.AVRO_COMPATIBLE]
    cases += [(name, reader, writer) for name, reader, writer, _kind in compat_cases.AVRO_INCOMPATIBLE]
    released = schema_dict(RecordType.EXECUTION)
    cases += [
        (name, compat_cases.changed(edit), released) for name, edit in compat_cases.COMPATIBLE_CHANGES.items()
    ]
    cases += [
        (name, compat_cases.changed(edit), released)
        for name, (edit, _) in compat_cases.INCOMPATIBLE_CHANGES.items()
    ]
    run = uuid.uuid4().hex[:8]
    disagreements = []
    with SchemaRegistryClient({"url": real_registry.url}) as client:
        for index, (name, reader, writer) in enumerate(cases):
            subject = f"agree-{run}-{index}"
            client.register_schema(subject, Schema(json.dumps(writer), "AVRO"))
            registry_says = client.test_compatibility(subject, Schema(json.dumps(reader), "AVRO"))
            if registry_says != is_backward_compatible(reader, writer):
                disagreements.append((name, registry_says))
    assert len(cases) > 140
    assert disagreements == [("logical type changed", True)]
