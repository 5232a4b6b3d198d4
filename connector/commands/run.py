"""The ``run`` command: build the service from the settings and run it until SIGTERM or SIGINT.

The signal handlers are installed before anything else, so a SIGTERM during the (possibly slow)
start-up still ends in a clean exit 0. Fatal conditions end in one line and exit code 1 (printed by
the CLI); nothing an operator can cause ends in a stack trace.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from connector.commands.composition import BuiltService, build, tune_garbage_collection
from connector.config import load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``run``'s flags."""
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML settings file (optional when every key comes from PMX_CONNECTOR_* variables)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the service and run it until SIGTERM/SIGINT; return the exit code."""
    built: list[BuiltService] = []
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for service in built:
            service.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    service = build(load_settings(args.config))
    built.append(service)
    if stopping:
        service.stop()
    tune_garbage_collection()
    return service.run()
