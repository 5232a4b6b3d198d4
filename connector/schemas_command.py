"""``pmx-connector schemas``: print the record schemas; with a registry, check and register them.

Without flags it prints every ``.avsc`` (or one, with ``--record``). With ``--check`` it asks the
Schema Registry of the configuration whether each schema is compatible with the subject's latest
version (the registry applies the subject's compatibility level, BACKWARD by default); with
``--register`` it registers the compatible ones. Subjects follow the topic-name strategy
(``<topic>-value``). Exit code 1 when a schema is incompatible or the registry cannot be reached.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connector.composition import topic_names
from connector.config import load_settings
from connector.errors import ConfigError, RuntimeFailure
from connector.record_schemas import RecordType, schema_text

SUBJECT_NOT_FOUND: Final = 40401
TOPIC_ROLE: Final = {
    RecordType.EXECUTION: "executions",
    RecordType.ORDER_SNAPSHOT: "snapshots",
    RecordType.CANCEL_REJECT: "cancel_rejects",
    RecordType.CONNECTOR_HEARTBEAT: "heartbeats",
    RecordType.CHECKPOINT: "checkpoints",
    RecordType.GAP_DETECTED: "heartbeats",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``schemas``' flags."""
    parser.add_argument("--record", choices=[t.value for t in RecordType], help="only this record type")
    parser.add_argument(
        "--config", type=Path, metavar="PATH", help="settings (for the registry and topic names)"
    )
    parser.add_argument("--check", action="store_true", help="check compatibility against the registry")
    parser.add_argument(
        "--register", action="store_true", help="register compatible schemas (implies --check)"
    )


def run(args: argparse.Namespace) -> int:
    """Print, check or register; return 1 if any schema is incompatible."""
    record_types = [RecordType(args.record)] if args.record else list(RecordType)
    if not (args.check or args.register):
        for record_type in record_types:
            print(schema_text(record_type), end="")
        return 0
    settings = load_settings(args.config)
    if settings.schema_registry.url is None:
        msg = "schema_registry.url: --check and --register need a Schema Registry"
        raise ConfigError(msg)
    client = SchemaRegistryClient.new_client({"url": settings.schema_registry.url})
    topics = topic_names(settings)
    failures = 0
    for record_type in record_types:
        subject = f"{topics[TOPIC_ROLE[record_type]]}-value"
        schema = Schema(json.dumps(json.loads(schema_text(record_type))), "AVRO")
        try:
            compatible = _compatible(client, subject, schema)
            if compatible and args.register:
                schema_id = client.register_schema(subject, schema)
                print(f"✓ {record_type.value}: registered as {subject} (id {schema_id})")
            elif compatible:
                print(f"✓ {record_type.value}: compatible with {subject}")
            else:
                failures += 1
                print(f"✗ {record_type.value}: NOT compatible with the latest version of {subject}")
        except SchemaRegistryError as exc:
            msg = f"schema registry {settings.schema_registry.url}: {exc}"
            raise RuntimeFailure(msg) from None
    return 1 if failures else 0


def _compatible(client: SchemaRegistryClient, subject: str, schema: Schema) -> bool:
    try:
        return bool(client.test_compatibility(subject, schema))
    except SchemaRegistryError as exc:
        if exc.error_code == SUBJECT_NOT_FOUND or exc.http_status_code == 404:
            return True  # a new subject: nothing to be incompatible with
        raise
