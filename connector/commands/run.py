"""The ``run`` command: build the service from the settings and run it until SIGTERM or SIGINT.

The signal handlers are installed before anything else, so a SIGTERM during the (possibly slow)
start-up still ends in a clean exit 0. A process still alive well after its stop deadline
(``connector.flush_timeout_s`` plus the final checkpoint's) prints every thread's stack to stderr,
so a stop that hangs says where. Fatal conditions end in one line and exit code 1 (printed by
the CLI); nothing an operator can cause ends in a stack trace.
"""

from __future__ import annotations

import argparse
import faulthandler
import signal
from pathlib import Path

from connector.commands.composition import BuiltService, build, tune_garbage_collection
from connector.commands.process import from_signal_handler
from connector.config import ConnectorSettings, load_settings

DEFAULT_FLUSH_TIMEOUT_S = ConnectorSettings().flush_timeout_s
STOP_SLACK_S = 6.0  # the final checkpoint's flush (5 s) and a margin


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
    dump_after_s = DEFAULT_FLUSH_TIMEOUT_S + STOP_SLACK_S

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            faulthandler.dump_traceback_later(dump_after_s, exit=False)
        stopping = True
        for service in built:
            from_signal_handler(service.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    settings = load_settings(args.config)
    dump_after_s = settings.connector.flush_timeout_s + STOP_SLACK_S
    service = build(settings)
    built.append(service)
    if stopping:
        service.stop()
    tune_garbage_collection()
    return service.run()
