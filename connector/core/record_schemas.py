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
