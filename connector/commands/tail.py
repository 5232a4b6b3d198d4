"""``pmx-connector tail TOPIC``: print a topic's records as JSON lines, decoding either Avro encoding.

Values in single-object encoding are decoded with the committed schemas; Confluent-framed values
through the Schema Registry of the configuration; anything else (the DLQ's raw protobuf) is
printed as base64. Reads partitions directly (no consumer group, nothing committed).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any, Final

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connector.config import load_settings
from connector.core.record_schemas import RecordType, schema_dict
from connector.errors import ConfigError, RuntimeFailure
from connector.kafka.encoding import SINGLE_OBJECT_MARKER, SingleObjectDecoder
from connector.kafka.publisher import client_config

METADATA_TIMEOUT_S: Final = 10.0
IDLE_STOP_S: Final = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``tail``'s flags."""
    parser.add_argument("topic", help="topic to read (full name, e.g. pmx.orders.executions)")
    parser.add_argument("--config", type=Path, metavar="PATH", help="settings file (Kafka and registry)")
    parser.add_argument(
        "--bootstrap-servers", metavar="HOSTS", help="Kafka bootstrap servers (overrides --config)"
    )
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    parser.add_argument("--max", type=int, metavar="N", help="stop after N records")
    parser.add_argument(
        "--follow", action="store_true", help="keep waiting for new records (default: stop when caught up)"
    )


def run(args: argparse.Namespace) -> int:
    """Print records as JSON lines; return 0."""
    config, registry_url = _connection(args)
    decoder = RecordDecoder(registry_url)
    consumer = Consumer({**config, "group.id": "pmx-connector-tail", "enable.auto.commit": False})
    try:
        try:
            metadata = consumer.list_topics(args.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            msg = f"cannot reach Kafka: {exc.args[0].str() if exc.args else exc}"
            raise RuntimeFailure(msg) from None
        topic = metadata.topics.get(args.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            msg = f"topic {args.topic!r} does not exist"
            raise RuntimeFailure(msg)
        assignments = []
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(args.topic, partition), timeout=10)
            assignments.append(TopicPartition(args.topic, partition, low if args.from_beginning else high))
        consumer.assign(assignments)
        printed = 0
        idle_since = time.monotonic()
        while args.max is None or printed < args.max:
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                if not args.follow and time.monotonic() - idle_since > IDLE_STOP_S:
                    break
                continue
            idle_since = time.monotonic()
            print(json.dumps(decoder.describe(message), default=str), flush=True)
            printed += 1
    except BrokenPipeError:
        sys.stderr.close()  # the reader (e.g. head) went away; nothing more to say
    finally:
        consumer.close()
    return 0


def _headers(message: Message) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, raw in list(message.headers() or []):
        if isinstance(raw, bytes):
            headers[str(name)] = raw.decode(errors="replace")
    return headers


def _connection(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    if args.config is not None:
        settings = load_settings(args.config)
        bootstrap = args.bootstrap_servers or settings.kafka.bootstrap_servers
        config = client_config(bootstrap, settings.kafka.properties)
        registry_url = settings.schema_registry.url
    elif args.bootstrap_servers:
        config, registry_url = {"bootstrap.servers": args.bootstrap_servers}, None
    else:
        msg = "give --config PATH or --bootstrap-servers HOSTS"
        raise ConfigError(msg)
    return config, registry_url


class RecordDecoder:
    """Decodes a record value of either encoding (or shows it as base64)."""

    def __init__(self, registry_url: str | None) -> None:
        """Index the committed schemas; connect to the registry lazily when given."""
        self._single_object = SingleObjectDecoder([schema_dict(record_type) for record_type in RecordType])
        self._registry = (
            AvroDeserializer(SchemaRegistryClient.new_client({"url": registry_url})) if registry_url else None
        )

    def decode(self, topic: str, value: bytes | None) -> tuple[str, Any]:
        """Return (encoding, decoded value)."""
        if value is None:
            return "null", None
        if value[:2] == SINGLE_OBJECT_MARKER:
            try:
                return "avro-single-object", self._single_object(value)
            except ValueError:
                pass
        if self._registry is not None and value[:1] == b"\x00" and len(value) > 5:
            context = SerializationContext(topic, MessageField.VALUE)
            return "avro-confluent", self._registry(value, context)
        return "base64", base64.b64encode(value).decode()

    def describe(self, message: Message) -> dict[str, Any]:
        """A JSON-ready description of one record."""
        topic = message.topic() or ""
        encoding, value = self.decode(topic, message.value())
        key = message.key()
        return {
            "topic": topic,
            "partition": message.partition(),
            "offset": message.offset(),
            "timestamp_ms": message.timestamp()[1],
            "key": key.decode(errors="replace") if isinstance(key, bytes) else key,
            "headers": _headers(message),
            "encoding": encoding,
            "value": value,
        }
