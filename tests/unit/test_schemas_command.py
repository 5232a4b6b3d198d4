"""``pmx-connector schemas``: prints the committed schemas; checking needs a registry URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.cli import main
from connector.core.record_schemas import RecordType, schema_dict, schema_text
from connector.engine.status import Phase
from tests.unit.test_config import VALID, write


def test_prints_every_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas"]) == 0
    out = capsys.readouterr().out
    assert out == "".join(schema_text(record_type) for record_type in RecordType)


def test_prints_one_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "--record", "Checkpoint"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "Checkpoint"


def test_check_without_a_registry_is_a_configuration_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schemas", "--check", "--config", str(write(tmp_path, VALID))]) == 2
    assert "schema_registry.url: --check and --register need a Schema Registry" in capsys.readouterr().err


def test_the_heartbeat_schema_documents_every_phase_the_engine_reports() -> None:
    fields = {field["name"]: field for field in schema_dict(RecordType.CONNECTOR_HEARTBEAT)["fields"]}
    documented = [phase.strip() for phase in fields["phase"]["doc"].split(",")]
    assert documented == [phase.value for phase in Phase]
