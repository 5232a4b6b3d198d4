"""The ``dev-kafka`` sub-command: run an embedded Kafka cluster until interrupted.

It starts :class:`~connector.embedded.EmbeddedKafka`, creates the connector's default topics (those
of ``kafka.topic_prefix`` ``--topic-prefix``, laid out as the connector would create them; not with
``--no-default-topics``) and any ``--topic``, waits until the brokers answer a metadata request,
starts the loopback control endpoint (:mod:`connector.embedded.control`), prints both addresses, writes
the optional ready file, and then serves until SIGINT or SIGTERM, after which it shuts down cleanly,
removes the ready file and exits with 0.

The ready file is written atomically (temporary file, then rename) as JSON::

    {"bootstrap_servers": "127.0.0.1:40123,...", "control_url": "http://127.0.0.1:40555"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Final, NamedTuple

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from connector.commands.process import stop_on_signals, write_atomically
from connector.config import KafkaSettings
from connector.embedded.cluster import EmbeddedKafka
from connector.embedded.control import ControlServer
from connector.errors import ConfigError, EmbeddedKafkaError
from connector.kafka.topics import topic_layouts

__all__ = ["TopicSpec", "add_arguments", "parse_topic", "run", "wait_until_ready", "write_ready_file"]

_LOG: Final = logging.getLogger(__name__)

DEFAULT_BROKERS: Final = 3
DEFAULT_TOPIC_PREFIX: Final = KafkaSettings.model_fields["topic_prefix"].default
READY_TIMEOUT_S: Final = 30.0
_STOP_POLL_S: Final = 0.5


class TopicSpec(NamedTuple):
    """A ``--topic NAME[:PARTITIONS]`` value."""

    name: str
    partitions: int


def parse_topic(value: str) -> TopicSpec:
    """Parse ``NAME`` or ``NAME:PARTITIONS`` (partitions default to 1).

    Args:
        value: The flag's value.

    Returns:
        The parsed topic.

    Raises:
        argparse.ArgumentTypeError: The value is malformed.
    """
    name, sep, count = value.rpartition(":")
    if not sep:
        name, count = value, "1"
    if not name or not count.isdigit() or int(count) < 1:
        msg = f"expected NAME or NAME:PARTITIONS with PARTITIONS >= 1, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return TopicSpec(name, int(count))


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        msg = f"expected a positive integer, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        msg = f"expected a TCP port 0..65535 (0 = any free port), got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``dev-kafka`` flags.

    Args:
        parser: The sub-command's parser.
    """
    parser.add_argument(
        "--brokers",
        type=_positive_int,
        default=DEFAULT_BROKERS,
        metavar="N",
        help=f"number of brokers (default: {DEFAULT_BROKERS})",
    )
    parser.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="once ready, write {bootstrap_servers, control_url} as JSON here (atomically); removed on exit",
    )
    parser.add_argument(
        "--topic",
        type=parse_topic,
        action="append",
        default=[],
        metavar="NAME[:PARTITIONS]",
        help="create this topic at start (repeatable); other topics are auto-created with 4 partitions",
    )
    parser.add_argument(
        "--topic-prefix",
        default=DEFAULT_TOPIC_PREFIX,
        metavar="PREFIX",
        help=f"create the connector's topics under this kafka.topic_prefix (default: {DEFAULT_TOPIC_PREFIX})",
    )
    parser.add_argument(
        "--no-default-topics",
        action="store_true",
        help="do not create the connector's topics (only those given with --topic)",
    )
    parser.add_argument(
        "--control-port",
        type=_port,
        default=0,
        metavar="P",
        help="port of the loopback HTTP control endpoint (default: 0, any free port)",
    )


def wait_until_ready(
    bootstrap_servers: str, topics: tuple[str, ...] = (), timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Block until the brokers answer a metadata request that lists ``topics``.

    Args:
        bootstrap_servers: The cluster to probe.
        topics: Topics that must appear in the metadata.
        timeout_s: How long to keep trying.

    Raises:
        EmbeddedKafkaError: The cluster did not answer in time.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 3})
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"embedded Kafka at {bootstrap_servers} not ready after {timeout_s:.0f}s: {last_error}"
            raise EmbeddedKafkaError(msg)
        try:
            metadata = admin.list_topics(timeout=min(remaining, 5.0))
        except KafkaException as exc:
            last_error = str(exc)
            continue
        missing = [topic for topic in topics if topic not in metadata.topics]
        if metadata.brokers and not missing:
            return
        last_error = f"brokers {sorted(metadata.brokers)}, missing topics {missing}"
        time.sleep(0.1)


def write_ready_file(path: Path, bootstrap_servers: str, control_url: str) -> None:
    """Write the ready file atomically: a temporary file in the same directory, then a rename.

    Args:
        path: Destination.
        bootstrap_servers: The cluster's bootstrap servers.
        control_url: The control endpoint's base URL.

    Raises:
        ConfigError: The file cannot be written.
    """
    payload = json.dumps({"bootstrap_servers": bootstrap_servers, "control_url": control_url})
    try:
        write_atomically(path, (payload + "\n").encode())
    except OSError as exc:
        msg = f"--ready-file {path}: cannot write it: {exc}"
        raise ConfigError(msg) from exc


def topics_to_create(args: argparse.Namespace, bootstrap_servers: str) -> list[TopicSpec]:
    """The connector's default topics (unless ``--no-default-topics``), then every ``--topic``.

    A ``--topic`` naming a default topic sets its partitions.

    Raises:
        ConfigError: ``--topic-prefix`` is not a valid ``kafka.topic_prefix``.
    """
    wanted: dict[str, int] = {}
    if not args.no_default_topics:
        try:
            settings = KafkaSettings(bootstrap_servers=bootstrap_servers, topic_prefix=args.topic_prefix)
        except ValueError:
            msg = f"--topic-prefix {args.topic_prefix!r}: letters, digits, '.', '_' and '-' only"
            raise ConfigError(msg) from None
        wanted = {name: layout.partitions for name, layout in topic_layouts(settings).items()}
    for topic in args.topic:
        wanted[topic.name] = topic.partitions
    return [TopicSpec(name, partitions) for name, partitions in wanted.items()]


def run(args: argparse.Namespace) -> int:
    """Run the embedded cluster until SIGINT or SIGTERM.

    Args:
        args: Parsed flags (see :func:`add_arguments`).

    Returns:
        0 after a clean shutdown.

    Raises:
        EmbeddedKafkaError: The cluster could not start or did not become ready.
        ConfigError: The ready file cannot be written.
    """
    ready_file: Path | None = args.ready_file
    stop = threading.Event()
    with stop_on_signals(stop), EmbeddedKafka(brokers=args.brokers) as kafka:
        topics = topics_to_create(args, kafka.bootstrap_servers)
        for topic in topics:
            kafka.create_topic(
                topic.name, partitions=topic.partitions, replication_factor=min(3, args.brokers)
            )
        wait_until_ready(kafka.bootstrap_servers, tuple(topic.name for topic in topics))
        with ControlServer(kafka, port=args.control_port) as control:
            print(f"bootstrap servers: {kafka.bootstrap_servers}", flush=True)
            print(f"control url: {control.url}", flush=True)
            if ready_file is not None:
                write_ready_file(ready_file, kafka.bootstrap_servers, control.url)
            try:
                while not stop.wait(_STOP_POLL_S):
                    pass
            finally:
                if ready_file is not None:
                    with contextlib.suppress(FileNotFoundError):
                        ready_file.unlink()
    _LOG.info("dev-kafka stopped")
    return 0
