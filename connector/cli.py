"""Command-line interface of ``pmx-connector``: wires the sub-commands.

Each sub-command lives in the module that owns its subject and exposes two functions,
``add_arguments(parser)`` and ``run(args) -> int``; this module only wires them, turns the
connector's own errors into one clear line and an exit code. Only the module of the command being
run is imported, so one command never drags in another's dependencies. The service itself is
composed in :mod:`connector.commands.composition`.

Exit codes: 0 ok, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast

from connector import __version__
from connector.errors import ConfigError, ConnectorError
from connector.observability.log_format import LOG_FORMATS, configure_logging

EXIT_OK: Final = 0
EXIT_RUNTIME_FAILURE: Final = 1
EXIT_USAGE: Final = 2


class CommandModule(Protocol):
    """What a module must offer to be a sub-command."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's flags on its parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command and return its exit code."""


@dataclass(frozen=True, slots=True)
class Command:
    """A sub-command: its name, one-line help, longer description and implementing module."""

    name: str
    summary: str
    description: str
    module: str


COMMANDS: Final[tuple[Command, ...]] = (
    Command(
        name="run",
        summary="run the connector: venue order stream -> Avro records in Kafka",
        description=(
            "Subscribe to the venue's order stream and publish every snapshot order, execution and "
            "cancel reject to Kafka as Avro records keyed by order ID, at-least-once. Serves "
            "/metrics, /healthz, /readyz and /status on http.listen. Stops cleanly on SIGTERM or "
            "SIGINT after flushing. Every setting comes from --config and PMX_CONNECTOR_* variables."
        ),
        module="connector.commands.run",
    ),
    Command(
        name="backfill",
        summary="re-feed a window of venue executions to Kafka (REST search, paced, with progress)",
        description=(
            "Search the venue's executions between --since and --until (REST, paged to the end, paced "
            "to the venue's 12 requests a minute, Retry-After honoured, filtered to the configured "
            "subscription) and publish them to the executions topic with source=backfill, then flush. "
            "Progress goes to stderr. Exit code 1 if the window cannot be read completely or Kafka "
            "does not acknowledge every record, 2 for bad settings or times."
        ),
        module="connector.commands.backfill",
    ),
    Command(
        name="demo",
        summary="run the embedded Kafka, the venue simulator and the connector, with a live view",
        description=(
            "Start an embedded Kafka cluster, a simulated venue and the connector in this process, "
            "show events flowing live, and on exit (Ctrl-C or --duration) verify Kafka against the "
            "venue's journal: executions produced, found, missing, duplicated. Exit code 1 if any "
            "execution is missing."
        ),
        module="connector.commands.demo",
    ),
    Command(
        name="check",
        summary="check the settings, the key, the token endpoint, the venue stream and Kafka",
        description=(
            "Validate the settings, read the private key, get a token, open a snapshot_only stream "
            "and check that Kafka answers and every topic exists; one ✓/✗ line per step. Nothing is "
            "written. Exit code 0 when everything passes, 1 when a step fails, 2 for bad settings."
        ),
        module="connector.commands.check",
    ),
    Command(
        name="schemas",
        summary="print the Avro schemas; with a registry, check compatibility and register them",
        description=(
            "Print every record schema (.avsc). With --check, ask the configured Schema Registry "
            "whether each is compatible with its subject's latest version; with --register, "
            "register the compatible ones. Exit code 1 when a schema is incompatible."
        ),
        module="connector.commands.schemas",
    ),
    Command(
        name="tail",
        summary="print a topic's records as JSON lines, decoding either Avro encoding",
        description=(
            "Read a topic partition by partition (no consumer group, nothing committed) and print "
            "each record as one JSON line: topic, partition, offset, timestamp, key, headers and the "
            "decoded value. Single-object Avro is decoded with the committed schemas, Confluent "
            "framing through the configured Schema Registry, anything else shown as base64."
        ),
        module="connector.commands.tail",
    ),
    Command(
        name="dev-kafka",
        summary="run an embedded Kafka cluster (librdkafka's mock brokers) for development and tests",
        description=(
            "Start an embedded, in-memory Kafka cluster on localhost and keep it running until "
            "interrupted (Ctrl-C or SIGTERM). It speaks the real Kafka protocol, so any client can "
            "use it. A loopback HTTP control endpoint can take brokers down and up, inject request "
            "errors and create topics. Data is lost when it stops."
        ),
        module="connector.commands.dev_kafka",
    ),
    Command(
        name="simulator",
        summary="run the venue simulator (gRPC order stream, REST search, OAuth token endpoint)",
        description=(
            "Start a simulated Polymarket US venue on localhost: the CreateOrderSubscription gRPC "
            "stream, the REST execution/order search, and the OAuth token endpoint, with a seeded "
            "order flow, a journal of every event it produced, and fault injection."
        ),
        module="connector.commands.simulator",
    ),
)


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser; only the ``selected`` sub-command gets its flags (and import)."""
    parser = argparse.ArgumentParser(
        prog="pmx-connector",
        description=(
            "Deliver the Polymarket US order and execution stream into Kafka as Avro records keyed "
            "by order ID: at-least-once, with no gaps."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity (default: INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=LOG_FORMATS,
        help="text lines, or one JSON object per line for log shippers (default: text)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        sub = subparsers.add_parser(command.name, help=command.summary, description=command.description)
        if command.name == selected:
            module = _load(command)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    return parser


def _load(command: Command) -> CommandModule:
    return cast(CommandModule, importlib.import_module(command.module))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pmx-connector`` and return its exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    names = {command.name for command in COMMANDS}
    parser = build_parser(next((argument for argument in arguments if argument in names), None))
    args = parser.parse_args(arguments)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    configure_logging(args.log_level, args.log_format)
    handler = cast(Callable[[argparse.Namespace], int], args.handler)
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"pmx-connector {args.command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectorError as exc:
        print(f"pmx-connector {args.command}: {exc}", file=sys.stderr)
        return EXIT_RUNTIME_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
