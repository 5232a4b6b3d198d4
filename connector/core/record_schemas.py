"""The Avro schemas of every record the connector writes, loaded from the package's ``schemas/*.avsc``.

The ``.avsc`` files are the contract with consumers (``schemas/`` at the repository root points at
them). Every change must stay BACKWARD compatible: a consumer with the new schema must read records
written with the old one.
"""

from __future__ import annotations

import json
from enum import StrEnum
from functools import cache
from importlib.resources import files
from typing import Any, Final

SCHEMA_PACKAGE: Final = "connector.schemas"
RELEASED_DIRECTORY: Final = "released"  # released/<version>/<RecordType>.avsc: what earlier versions wrote


class RecordType(StrEnum):
    """Every record type, named as its schema file."""

    EXECUTION = "ExecutionEvent"
    ORDER_SNAPSHOT = "OrderSnapshotEvent"
    CANCEL_REJECT = "CancelRejectEvent"
    CONNECTOR_HEARTBEAT = "ConnectorHeartbeat"
    CHECKPOINT = "Checkpoint"
    GAP_DETECTED = "GapDetected"


@cache
def schema_text(record_type: RecordType) -> str:
    """Return the ``.avsc`` text of a record type exactly as committed."""
    return (files(SCHEMA_PACKAGE) / f"{record_type.value}.avsc").read_text(encoding="utf-8")


def schema_dict(record_type: RecordType) -> dict[str, Any]:
    """Return a fresh, parsed JSON copy of a record type's schema."""
    parsed: dict[str, Any] = json.loads(schema_text(record_type))
    return parsed


def released_schema_dicts(record_type: RecordType) -> list[dict[str, Any]]:
    """The schemas earlier released versions wrote this record type with (oldest version first)."""
    released = files(SCHEMA_PACKAGE) / RELEASED_DIRECTORY
    versions = sorted(
        (entry for entry in released.iterdir() if entry.is_dir()),
        key=lambda entry: tuple(int(part) for part in entry.name.split(".") if part.isdigit()),
    )
    found = [version / f"{record_type.value}.avsc" for version in versions]
    return [json.loads(path.read_text(encoding="utf-8")) for path in found if path.is_file()]
