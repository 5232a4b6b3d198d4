"""Avro encoders for record values: single-object encoding, or Confluent Schema Registry framing.

Both are :data:`Encoder` callables, ``(record, topic) -> bytes`` (the topic matters to the registry's
subject name; keeping confluent-kafka's ``SerializationContext`` out of the signature keeps the pure
pipeline free of Kafka imports):

- :class:`SingleObjectEncoder` (no registry): the Avro specification's single-object encoding,
  ``C3 01`` + the 8-byte little-endian CRC-64-AVRO fingerprint of the schema's Parsing Canonical
  Form + the Avro binary body. Any Avro reader holding the ``.avsc`` files can decode it.
- :func:`registry_encoder` (``schema_registry.url`` set): Confluent framing, magic byte ``0`` +
  4-byte big-endian schema ID + body, through ``confluent_kafka.schema_registry``.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeVar

import fastavro
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro.schema import fingerprint, to_parsing_canonical_form

from connector.errors import SchemaNotRegistered, SchemaRegistryUnavailable

_LOG: Final = logging.getLogger(__name__)
T = TypeVar("T")


def _http_transport_errors() -> tuple[type[Exception], ...]:
    """The transport errors of the HTTP libraries the registry client may use (public API only).

    confluent-kafka's registry client uses httpx2 (httpx's successor) or httpx, whichever is
    installed; its transport errors are how an unreachable registry shows. (Clients built on
    ``requests`` raise OSErrors.)
    """
    errors: list[type[Exception]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(module.TransportError)
    return tuple(errors)


REGISTRY_TRANSPORT_ERRORS: Final[tuple[type[Exception], ...]] = (
    OSError,
    ssl.SSLError,
    *_http_transport_errors(),
)

SINGLE_OBJECT_MARKER: Final = b"\xc3\x01"

Encoder = Callable[[Mapping[str, Any], str], bytes]


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of a schema (single-object encoding)."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(dict(schema)))
    # fastavro renders the fingerprint as the hex of its little-endian bytes (a test checks this
    # against an independent implementation of the Avro specification's algorithm).
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class SingleObjectEncoder:
    """Encodes records of one schema with Avro single-object encoding (fastavro writes the body).

    Venue events go through the compiled transcoder (:mod:`connector.core.transcoder`); this encoder
    writes the connector's own, low-rate records (heartbeats, gaps, checkpoints) and gives the
    transcoder its framing header.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        """Parse the schema and compute its fingerprint once."""
        self.header: Final = SINGLE_OBJECT_MARKER + schema_fingerprint(schema)
        self._parsed: Final = fastavro.parse_schema(dict(schema))

    def __call__(self, record: Mapping[str, Any], _topic: str = "") -> bytes:
        """Encode one record.

        Raises:
            TypeError: a value of the wrong type.
            ValueError: an unknown enum symbol, or a missing field without a default.
            OverflowError: a number beyond its Avro type.
        """
        return self.header + avro_body(self._parsed, record)


def avro_body(parsed: Any, record: Mapping[str, Any]) -> bytes:
    """The Avro binary body of a record as fastavro writes it (``parsed``: a parsed schema)."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, record)
    return buffer.getvalue()


class SingleObjectDecoder:
    """Decodes single-object-encoded values of any of the schemas it was given, by fingerprint."""

    def __init__(self, schemas: list[Mapping[str, Any]], reader: Mapping[str, Any] | None = None) -> None:
        """Index the (writer) schemas by fingerprint; decode into ``reader`` when given, else each one's own.

        With a ``reader``, a value written with an older compatible schema is resolved into it (the
        fields it lacks take their defaults), so the code that reads it sees one shape.
        """
        self._by_fingerprint = {schema_fingerprint(s): fastavro.parse_schema(dict(s)) for s in schemas}
        self._reader = fastavro.parse_schema(dict(reader)) if reader is not None else None

    def __call__(self, value: bytes) -> dict[str, Any]:
        """Decode one value.

        Raises:
            ValueError: not single-object encoded, or written with a schema this decoder does not know.
        """
        if value[:2] != SINGLE_OBJECT_MARKER:
            msg = "not an Avro single-object encoded value (no C3 01 marker)"
            raise ValueError(msg)
        schema = self._by_fingerprint.get(value[2:10])
        if schema is None:
            msg = f"unknown schema fingerprint {value[2:10].hex()}"
            raise ValueError(msg)
        decoded = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, self._reader or schema)
        if not isinstance(decoded, dict):
            msg = "a record schema decoded to a non-record value"
            raise TypeError(msg)
        return decoded


def registry_encoder(
    client: Any,
    schema: Mapping[str, Any],
    *,
    auto_register: bool = True,
    subject_name_strategy: Callable[[SerializationContext, str], str] | None = None,
) -> Encoder:
    """Return an encoder with Confluent Schema Registry framing for one schema.

    Args:
        client: a ``confluent_kafka.schema_registry.SchemaRegistryClient`` (``mock://`` URLs give the
            in-memory client).
        schema: the Avro schema.
        auto_register: register the schema on first use; off in locked-down production registries.
        subject_name_strategy: a confluent subject-name strategy; topic-name by default.
    """
    conf: dict[str, Any] = {"auto.register.schemas": auto_register}
    if not auto_register:
        conf["use.latest.version"] = True
    if subject_name_strategy is not None:
        conf["subject.name.strategy"] = subject_name_strategy
    serializer = AvroSerializer(client, json.dumps(schema), conf=conf)

    def encode(record: Mapping[str, Any], topic: str) -> bytes:
        encoded: bytes = serializer(dict(record), SerializationContext(topic, MessageField.VALUE))
        return encoded

    return encode


# --------------------------------------------------------------------------- registry: known schema IDs

CONFLUENT_MAGIC: Final = b"\x00"
SUBJECT_NOT_FOUND: Final = 40401
SCHEMA_NOT_FOUND: Final = 40403
# Our own loop retries the registry (with status and logs); the client's own retries would only
# hide the outage for longer.
REGISTRY_CLIENT_DEFAULTS: Final[Mapping[str, Any]] = {"max.retries": 0, "timeout": 10}

SubjectNameStrategy = Literal["topic", "record", "topic_record"]


@dataclass(frozen=True, slots=True)
class RegistrySubject:
    """One record type's schema and the subject it lives under."""

    schema: Mapping[str, Any]
    subject: str


def subject_name(strategy: SubjectNameStrategy, topic: str, schema: Mapping[str, Any]) -> str:
    """The registry subject of a record schema's values on a topic, per Confluent's strategies."""
    full_name = f"{schema['namespace']}.{schema['name']}" if schema.get("namespace") else str(schema["name"])
    if strategy == "record":
        return full_name
    if strategy == "topic_record":
        return f"{topic}-{full_name}"
    return f"{topic}-value"


def registry_subjects(
    strategy: SubjectNameStrategy, topics: Mapping[T, str], schemas: Mapping[T, Mapping[str, Any]]
) -> dict[T, RegistrySubject]:
    """The subject of each record type's schema.

    The topic strategy gives one subject per topic, which can hold only one record type: the
    registry would refuse the second (a different record is not BACKWARD compatible). So on a topic
    that carries several record types (the heartbeat topic carries ConnectorHeartbeat and
    GapDetected; routing can put every event type on one topic), the topic strategy becomes
    topic-record for those types: ``<topic>-<record full name>``.
    """
    types_per_topic = Counter(topics.values())
    subjects = {}
    for key, topic in topics.items():
        chosen: SubjectNameStrategy = (
            "topic_record" if strategy == "topic" and types_per_topic[topic] > 1 else strategy
        )
        subjects[key] = RegistrySubject(schemas[key], subject_name(chosen, topic, schemas[key]))
    return subjects


class ConfluentEncoder:
    """Confluent framing with a schema ID known in advance: ``00`` + 4-byte big-endian ID + Avro body.

    It never talks to the registry, so a registry outage cannot stop publishing once the IDs are known.
    """

    def __init__(self, schema: Mapping[str, Any], schema_id: int) -> None:
        """Parse the schema once and prepare the five-byte header."""
        self._parsed = fastavro.parse_schema(dict(schema))
        self.schema_id: Final = schema_id
        self.header: Final = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")

    def __call__(self, record: Mapping[str, Any], _topic: str = "") -> bytes:
        """Encode one record."""
        buffer = io.BytesIO()
        buffer.write(self.header)
        fastavro.schemaless_writer(buffer, self._parsed, record)
        return buffer.getvalue()


class RegistrySchemaIds(Generic[T]):
    """The schema ID of every record type: pinned in the settings, or asked of the registry once.

    :meth:`resolve` asks the registry for the IDs not pinned (registering the schemas when
    auto-registration is on, else looking the exact schema up under its subject). The engine retries
    it (a start-up step) with backoff until it succeeds, saying why it waits, so the service
    stays up and says "not ready" rather than crash. Each :meth:`encoder` frames with the ID found
    and never calls the registry again, so a later registry outage does not stop publishing.
    """

    def __init__(
        self,
        client: Any,
        subjects: Mapping[T, RegistrySubject],
        *,
        auto_register: bool,
        pinned_ids: Mapping[T, int],
        url: str,
    ) -> None:
        """Hold the client (no network I/O happens here).

        Args:
            client: a ``SchemaRegistryClient``.
            subjects: the schema and subject of each record type.
            auto_register: register schemas that the registry does not hold yet.
            pinned_ids: IDs fixed by configuration; these record types never ask the registry.
            url: the registry URL (for messages).
        """
        self._client = client
        self._subjects = dict(subjects)
        self._auto_register = auto_register
        self._ids: dict[T, int] = {key: pinned_ids[key] for key in subjects if key in pinned_ids}
        self._encoders: dict[T, ConfluentEncoder] = {}
        self._url = url

    @property
    def ids(self) -> Mapping[T, int]:
        """The IDs known so far."""
        return dict(self._ids)

    def missing(self) -> list[T]:
        """Record types whose ID is not known yet."""
        return [key for key in self._subjects if key not in self._ids]

    def resolve(self) -> None:
        """Ask the registry for every missing ID, once.

        Raises:
            SchemaRegistryUnavailable: the registry cannot be reached (retry later).
            SchemaNotRegistered: auto-registration is off and a schema is not registered (fatal).
        """
        for key in self.missing():
            entry = self._subjects[key]
            schema = Schema(json.dumps(entry.schema), "AVRO")
            try:
                if self._auto_register:
                    schema_id = int(self._client.register_schema(entry.subject, schema))
                else:
                    schema_id = int(self._client.lookup_schema(entry.subject, schema).schema_id)
            except SchemaRegistryError as exc:
                if exc.error_code in {SUBJECT_NOT_FOUND, SCHEMA_NOT_FOUND} and not self._auto_register:
                    msg = (
                        f"schema {entry.schema['name']} is not registered under subject {entry.subject} "
                        f"at {self._url} and schema_registry.auto_register is off: register it "
                        "(pmx-connector schemas --register) or pin its ID in schema_registry.pinned_ids"
                    )
                    raise SchemaNotRegistered(msg) from None
                if exc.http_status_code is not None and 400 <= exc.http_status_code < 500:
                    msg = f"schema registry {self._url} refused {entry.subject}: {_registry_problem(exc)}"
                    raise SchemaNotRegistered(msg) from None
                msg = f"schema registry {self._url} failed: {_registry_problem(exc)}"
                raise SchemaRegistryUnavailable(msg) from None
            except REGISTRY_TRANSPORT_ERRORS as exc:
                msg = f"schema registry {self._url} unreachable: {type(exc).__name__}"
                raise SchemaRegistryUnavailable(msg) from None
            self._ids[key] = schema_id
            _LOG.info("schema %s is ID %d under subject %s", entry.schema["name"], schema_id, entry.subject)

    def prefix(self, key: T) -> bytes:
        """The framing header of one record type's values: ``00`` + its 4-byte schema ID.

        Raises:
            RuntimeError: the ID is not known yet (the engine resolves it at start).
        """
        if key not in self._ids:
            msg = f"the schema ID of {self._subjects[key].schema['name']} is not known yet"
            raise RuntimeError(msg)
        return CONFLUENT_MAGIC + self._ids[key].to_bytes(4, "big")

    def encoder(self, key: T) -> Encoder:
        """The encoder of one record type; it frames with the ID that :meth:`resolve` finds.

        Calling it before the ID is known raises ``RuntimeError`` (the engine resolves first).
        """
        schema = self._subjects[key].schema

        def encode(record: Mapping[str, Any], topic: str = "") -> bytes:
            encoder = self._encoders.get(key)
            if encoder is None:
                if key not in self._ids:
                    msg = f"the schema ID of {schema['name']} is not known yet"
                    raise RuntimeError(msg)
                encoder = self._encoders[key] = ConfluentEncoder(schema, self._ids[key])
            return encoder(record, topic)

        return encode


def _registry_problem(error: SchemaRegistryError) -> str:
    message = " ".join(str(error.error_message).split())[:200]
    return f"HTTP {error.http_status_code}: {message}"
