"""``pmx-connector schemas``: print the record schemas; with a registry, check and register them.

Without flags it prints every ``.avsc`` (or one, with ``--record``). With ``--check`` it asks the
Schema Registry of the configuration whether each schema is compatible with the subject's latest
version (the registry applies the subject's compatibility level, BACKWARD by default) and, when it
is not, lists why, field by field (:mod:`connector.core.schema_compat` against the registry's latest
version); with ``--register`` it registers the compatible ones. Subjects follow
``schema_registry.subject_name_strategy`` (``<topic>-value`` by default), the registry's TLS files
and credentials come from the settings. Exit code 1 when a schema is incompatible or the registry
cannot be reached.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Final

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connector.config import load_settings
from connector.core.record_schemas import RecordType, schema_dict, schema_text
from connector.core.schema_compat import backward_incompatibilities
from connector.errors import ConfigError, RuntimeFailure
from connector.kafka.encoding import REGISTRY_CLIENT_DEFAULTS, REGISTRY_TRANSPORT_ERRORS, registry_subjects
from connector.kafka.topics import TOPIC_ROLE, topic_names

SUBJECT_NOT_FOUND: Final = 40401


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
    registry = settings.schema_registry
    if registry.url is None:
        msg = "schema_registry.url: --check and --register need a Schema Registry"
        raise ConfigError(msg)
    try:
        client = SchemaRegistryClient.new_client({**REGISTRY_CLIENT_DEFAULTS, **registry.client_conf()})
    except (ValueError, TypeError, OSError) as exc:
        msg = f"schema_registry: {type(exc).__name__}: {exc}"
        raise ConfigError(msg) from None
    topics = topic_names(settings)
    subjects = registry_subjects(
        registry.subject_name_strategy,
        {record_type: topics[TOPIC_ROLE[record_type]] for record_type in RecordType},
        {record_type: schema_dict(record_type) for record_type in RecordType},
    )
    with client:  # closes its HTTP connections
        failures = 0
        for record_type in record_types:
            subject = subjects[record_type].subject
            schema = Schema(json.dumps(subjects[record_type].schema), "AVRO")
            try:
                problems = _incompatibilities(client, subject, schema)
                if not problems and args.register:
                    schema_id = client.register_schema(subject, schema)
                    print(f"✓ {record_type.value}: registered as {subject} (id {schema_id})")
                elif not problems:
                    print(f"✓ {record_type.value}: compatible with {subject}")
                else:
                    failures += 1
                    print(f"✗ {record_type.value}: NOT compatible with the latest version of {subject}")
                    for problem in problems:
                        print(f"    {problem}")
            except SchemaRegistryError as exc:
                message = " ".join(str(exc.error_message).split())[:200]
                msg = f"schema registry {registry.url}: HTTP {exc.http_status_code}: {message}"
                raise RuntimeFailure(msg) from None
            except REGISTRY_TRANSPORT_ERRORS as exc:
                msg = f"schema registry {registry.url} unreachable: {type(exc).__name__}"
                raise RuntimeFailure(msg) from None
    return 1 if failures else 0


def _incompatibilities(client: SchemaRegistryClient, subject: str, schema: Schema) -> list[str]:
    """Ask the registry; when it says no, say why with the local checker against its latest version."""
    try:
        if client.test_compatibility(subject, schema):
            return []
    except SchemaRegistryError as exc:
        if exc.error_code == SUBJECT_NOT_FOUND or exc.http_status_code == 404:
            return []  # a new subject: nothing to be incompatible with
        raise
    latest = client.get_latest_version(subject)
    problems = backward_incompatibilities(
        json.loads(str(schema.schema_str)), json.loads(str(latest.schema.schema_str))
    )
    reasons = [str(problem) for problem in problems]
    return reasons or [f"the registry refuses it under {subject}'s compatibility level (not BACKWARD?)"]
