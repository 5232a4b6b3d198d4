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

import io
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import fastavro
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro.schema import fingerprint, to_parsing_canonical_form

from connector.kafka.avro_writer import UnsupportedSchema, compile_writer, fastavro_body

SINGLE_OBJECT_MARKER: Final = b"\xc3\x01"

Encoder = Callable[[Mapping[str, Any], str], bytes]


def schema_fingerprint(schema: Mapping[str, Any]) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of a schema (single-object encoding)."""
    canonical = to_parsing_canonical_form(fastavro.parse_schema(dict(schema)))
    # fastavro renders the fingerprint as the hex of its little-endian bytes (a test checks this
    # against an independent implementation of the Avro specification's algorithm).
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


class SingleObjectEncoder:
    """Encodes records of one schema with Avro single-object encoding.

    The body is written by the writer :func:`~connector.kafka.avro_writer.compile_writer` generates
    from the schema (byte for byte what fastavro writes, several times faster), or by fastavro for a
    schema the generator does not support.
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        """Compile the schema's writer and compute its fingerprint once."""
        self.header: Final = SINGLE_OBJECT_MARKER + schema_fingerprint(schema)
        try:
            self._write_body = compile_writer(schema)
        except UnsupportedSchema:
            parsed = fastavro.parse_schema(dict(schema))
            self._write_body = lambda record: fastavro_body(parsed, record)

    def __call__(self, record: Mapping[str, Any], _topic: str = "") -> bytes:
        """Encode one record.

        Raises:
            TypeError: a value of the wrong type.
            ValueError: an unknown enum symbol, or a missing field without a default.
            OverflowError: a number beyond its Avro type.
        """
        return self.header + self._write_body(record)


class SingleObjectDecoder:
    """Decodes single-object-encoded values of any of the schemas it was given, by fingerprint."""

    def __init__(self, schemas: list[Mapping[str, Any]]) -> None:
        """Index the schemas by fingerprint."""
        self._by_fingerprint = {schema_fingerprint(s): fastavro.parse_schema(dict(s)) for s in schemas}

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
        decoded = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, schema)
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
