"""The mapping rules from venue messages to Avro records, and the context every event record carries.

The compiled transcoder (:mod:`connector.core.transcoder`, Rust in ``native/``) applies these rules,
driven by the Avro schemas and the protobuf descriptors; the readable reference implementation the
tests hold it to is ``tests/reference_mapping.py``. The rules:

- every schema field reads the protobuf field of the same name, so every venue field the schema names
  reaches the record; a schema field the venue lacks is written as its Avro default;
- enums become the Avro enum symbol of the same name plus ``<field>_number`` with the raw number; a
  number the schema does not know becomes ``UNKNOWN`` and keeps its number (nothing is lost);
- ``google.protobuf.Timestamp`` becomes integer nanoseconds since the epoch (``timestamp-nanos``), or
  null when the venue did not set it; a time outside 1677..2262 sends the event to the DLQ, except a
  deadline (``good_till_time``), which is clamped to the nearest representable instant, because a
  far-future "never" (e.g. 9999-12-31) must not cost the fill its record;
- ``price_to_quantity_filled`` (a protobuf map) becomes a list of ``{price, quantity}`` sorted by price;
- fixed-point integers stay raw beside their scale fields (lossless).

Messages are read by field name only (DESIGN.md §3), so the official proto bundle can replace the
reconstruction with ``make protos`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from connector.errors import MappingError

__all__ = [
    "CLAMPED_TIMESTAMP_FIELDS",
    "ENVELOPE_FIELDS",
    "MAX_TIMESTAMP_NS",
    "MIN_TIMESTAMP_NS",
    "NUMBER_SUFFIX",
    "TIMESTAMP_TYPE",
    "UNKNOWN_SYMBOL",
    "EventContext",
    "MappingError",
    "Source",
]

UNKNOWN_SYMBOL: Final = "UNKNOWN"
NUMBER_SUFFIX: Final = "_number"
TIMESTAMP_TYPE: Final = "google.protobuf.Timestamp"
# timestamp-nanos is a signed 64-bit count: 1677-09-21 .. 2262-04-11.
MIN_TIMESTAMP_NS: Final = -(2**63)
MAX_TIMESTAMP_NS: Final = 2**63 - 1

# Deadlines, not clock readings: clamped into range instead of failing the event (see above).
CLAMPED_TIMESTAMP_FIELDS: Final = frozenset({"good_till_time"})

ENVELOPE_FIELDS: Final = frozenset(
    {"source", "session_id", "processed_sent_time", "received_time", "connector"}
)


class Source(StrEnum):
    """How the connector obtained an event (the ``source`` header and field)."""

    STREAM = "STREAM"
    SNAPSHOT = "SNAPSHOT"
    BACKFILL = "BACKFILL"
    DROP_COPY = "DROP_COPY"


@dataclass(frozen=True, slots=True)
class EventContext:
    """What the connector knows about an event beyond the venue message itself."""

    source: Source
    session_id: str
    processed_sent_time_ns: int | None
    received_time_ns: int
    connector: str

    def envelope(self) -> dict[str, object]:
        """The envelope fields every event record carries."""
        return {
            "source": self.source.value,
            "session_id": self.session_id,
            "processed_sent_time": self.processed_sent_time_ns,
            "received_time": self.received_time_ns,
            "connector": self.connector,
        }
