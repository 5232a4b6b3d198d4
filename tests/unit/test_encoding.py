"""Avro value encodings: single-object (checked against the specification) and registry framing."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from fastavro.schema import to_parsing_canonical_form

from connector.core.record_schemas import RecordType, schema_dict
from connector.kafka.encoding import (
    SingleObjectDecoder,
    SingleObjectEncoder,
    registry_encoder,
    schema_fingerprint,
)

CHECKPOINT: dict[str, Any] = {
    "connector": "c1",
    "subscription": "symbols=*;accounts=*",
    "watermark": 1_763_800_000_123_456_789,
    "last_execution_id": "E42",
    "session_id": "s-9",
    "written_time": 1_763_800_001_000_000_000,
    "dropcopy_resume_token": b"\x00token",
    "dropcopy_time": 1_763_800_000_500_000_000,
}


def rabin_fingerprint64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (an oracle independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("record_type", list(RecordType))
def test_fingerprint_matches_the_specification(record_type: RecordType) -> None:
    schema = schema_dict(record_type)
    canonical = to_parsing_canonical_form(fastavro.parse_schema(schema)).encode()
    assert schema_fingerprint(schema) == struct.pack("<Q", rabin_fingerprint64(canonical))


def test_single_object_layout_and_round_trip() -> None:
    schema = schema_dict(RecordType.CHECKPOINT)
    value = SingleObjectEncoder(schema)(CHECKPOINT)
    assert value[:2] == b"\xc3\x01"
    assert value[2:10] == schema_fingerprint(schema)
    body = fastavro.schemaless_reader(io.BytesIO(value[10:]), fastavro.parse_schema(schema), None)
    assert body == CHECKPOINT
    decoder = SingleObjectDecoder([schema_dict(t) for t in RecordType])
    assert decoder(value) == CHECKPOINT


def test_decoder_rejects_foreign_values() -> None:
    decoder = SingleObjectDecoder([schema_dict(RecordType.CHECKPOINT)])
    with pytest.raises(ValueError, match="no C3 01 marker"):
        decoder(b"\x00\x00\x00\x00\x01rest")
    with pytest.raises(ValueError, match="unknown schema fingerprint"):
        decoder(b"\xc3\x01" + bytes(8) + b"body")


def test_registry_framing_decodes_with_confluents_deserializer() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://encoding-test"})
    schema = schema_dict(RecordType.CHECKPOINT)
    encode = registry_encoder(client, schema)
    context = SerializationContext("pmx.connector.checkpoints", MessageField.VALUE)
    value = encode(CHECKPOINT, "pmx.connector.checkpoints")
    assert value[0] == 0  # Confluent magic byte, then a 4-byte schema id
    schema_id = struct.unpack(">I", value[1:5])[0]
    assert client.get_latest_version("pmx.connector.checkpoints-value").schema_id == schema_id
    decoded = AvroDeserializer(client)(value, context)
    assert decoded == CHECKPOINT


def test_registry_without_auto_registration_uses_the_registered_version() -> None:
    client = SchemaRegistryClient.new_client({"url": "mock://encoding-pinned"})
    schema = schema_dict(RecordType.CHECKPOINT)
    context = SerializationContext("t", MessageField.VALUE)
    with pytest.raises(SchemaRegistryError, match="Not Found"):
        registry_encoder(client, schema, auto_register=False)(CHECKPOINT, "t")
    registry_encoder(client, schema)(CHECKPOINT, "t")  # registers
    value = registry_encoder(client, schema, auto_register=False)(CHECKPOINT, "t")
    assert AvroDeserializer(client)(value, context) == CHECKPOINT
