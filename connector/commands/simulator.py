"""The ``simulator`` sub-command: run the simulated venue until SIGINT or SIGTERM.

It builds a :class:`~connector.simulator.venue.SimulatedVenue` from the flags, registers the client key
(generated with ``--client-key-out`` or read with ``--client-public-key``), starts it, writes the ready
file, prints a short summary, serves until interrupted, then stops cleanly and exits 0.

The ready file is written atomically (temporary file, then rename) as JSON::

    {"grpc_target": "127.0.0.1:PORT", "rest_url": "http://127.0.0.1:PORT",
     "token_url": "http://127.0.0.1:PORT/oauth/token", "audience": "http://127.0.0.1:PORT",
     "client_id": "pmx-sim-client", "participant_id": "firms/SIM/users/connector",
     "control_url": "http://127.0.0.1:PORT/control"}
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from connector.commands.process import stop_on_signals, write_atomically
from connector.errors import ConfigError
from connector.simulator.faults import STATUS_NAMES, FaultSettings
from connector.simulator.tokens import generate_client_key
from connector.simulator.venue import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PARTICIPANT_ID,
    DEFAULT_SCOPES,
    SimulatedVenue,
    SimulatorConfig,
    VenueEndpoints,
)

__all__ = ["add_arguments", "config_from_args", "run", "write_ready_file"]

_LOG: Final = logging.getLogger(__name__)
_DEFAULTS: Final = SimulatorConfig()
_PRIVATE_KEY_MODE: Final = 0o600


def _number(kind: Callable[[str], Any], *, minimum: float, inclusive: bool = True) -> Callable[[str], Any]:
    def parse(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError as exc:
            msg = f"expected a number, got {value!r}"
            raise argparse.ArgumentTypeError(msg) from exc
        if number < minimum or (not inclusive and number == minimum):
            bound = ">=" if inclusive else ">"
            msg = f"expected a value {bound} {minimum:g}, got {value!r}"
            raise argparse.ArgumentTypeError(msg)
        return number

    return parse


def _rate(value: str) -> float:
    number = float(_number(float, minimum=0.0)(value))
    if number > 1.0:
        msg = f"expected a probability within 0..1, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return number


def _port(value: str) -> int:
    if not value.isdigit() or int(value) > 65535:
        msg = f"expected a TCP port 0..65535 (0 = any free port), got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _status(value: str) -> str:
    if value.upper() not in STATUS_NAMES:
        msg = f"expected a gRPC status name ({', '.join(STATUS_NAMES)}), got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return value.upper()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``simulator`` flags.

    Args:
        parser: The sub-command's parser.
    """
    d = _DEFAULTS
    net = parser.add_argument_group("listening")
    net.add_argument(
        "--grpc-port", type=_port, default=0, metavar="P", help="gRPC port on 127.0.0.1 (default: 0, any)"
    )
    net.add_argument(
        "--http-port", type=_port, default=0, metavar="P", help="HTTP port on 127.0.0.1 (default: 0, any)"
    )
    net.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="once listening, write the endpoints as JSON here, atomically (default: none)",
    )
    flow = parser.add_argument_group("order flow")
    flow.add_argument("--seed", type=int, default=d.seed, help=f"order-flow seed (default: {d.seed})")
    flow.add_argument(
        "--rate",
        type=_number(float, minimum=0.0),
        default=d.rate,
        metavar="R",
        help=f"order-flow updates per second, 0 pauses it (default: {d.rate:g})",
    )
    flow.add_argument(
        "--warmup-updates",
        type=_number(int, minimum=0),
        default=d.warmup_updates,
        metavar="N",
        help=f"updates produced at start so the first snapshot has orders (default: {d.warmup_updates})",
    )
    flow.add_argument(
        "--accounts",
        nargs="+",
        default=list(d.accounts),
        metavar="ACCOUNT",
        help=f"accounts (default: {' '.join(d.accounts)})",
    )
    flow.add_argument(
        "--symbols",
        nargs="+",
        default=list(d.symbols),
        metavar="SYMBOL",
        help=f"symbols (default: {' '.join(d.symbols)})",
    )
    flow.add_argument(
        "--price-scale",
        type=_number(int, minimum=100),
        default=d.price_scale,
        metavar="N",
        help=f"price units per dollar (default: {d.price_scale})",
    )
    flow.add_argument(
        "--fractional-quantity-scale",
        type=_number(int, minimum=1),
        default=d.fractional_quantity_scale,
        metavar="N",
        help=f"quantity units per contract (default: {d.fractional_quantity_scale})",
    )
    flow.add_argument(
        "--journal", type=Path, metavar="PATH", help="write every event as JSON lines here (default: none)"
    )
    api = parser.add_argument_group("stream, REST and auth")
    api.add_argument(
        "--heartbeat-interval",
        type=_number(float, minimum=0.0, inclusive=False),
        default=d.heartbeat_interval_s,
        metavar="S",
        help=f"seconds between stream heartbeats (default: {d.heartbeat_interval_s:g})",
    )
    api.add_argument(
        "--stream-limit",
        type=_number(int, minimum=1),
        default=d.stream_limit,
        metavar="N",
        help=f"concurrent streams before RESOURCE_EXHAUSTED (default: {d.stream_limit})",
    )
    api.add_argument(
        "--token-lifetime",
        type=_number(int, minimum=1),
        default=d.token_lifetime_s,
        metavar="S",
        help=f"access-token lifetime in seconds (default: {d.token_lifetime_s})",
    )
    api.add_argument(
        "--scopes",
        nargs="+",
        default=list(DEFAULT_SCOPES),
        metavar="SCOPE",
        help=f"scopes granted (default: {' '.join(DEFAULT_SCOPES)})",
    )
    api.add_argument(
        "--rest-rate-limit",
        action=argparse.BooleanOptionalAction,
        default=d.rest_rate_limit,
        help="limit each search endpoint to 12 requests per minute (default: on)",
    )
    api.add_argument(
        "--client-id", default=DEFAULT_CLIENT_ID, help=f"OAuth client id (default: {DEFAULT_CLIENT_ID})"
    )
    api.add_argument(
        "--participant-id",
        default=DEFAULT_PARTICIPANT_ID,
        help=f"participant id expected in x-participant-id (default: {DEFAULT_PARTICIPANT_ID})",
    )
    api.add_argument(
        "--client-key-out",
        type=Path,
        metavar="PATH",
        help="generate an RSA-2048 client key, register its public half, write the private PEM here "
        "(mode 0600) (default: none)",
    )
    api.add_argument(
        "--client-public-key",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="register this client public key PEM (repeatable) (default: none)",
    )
    _add_fault_arguments(
        parser.add_argument_group("faults (also settable at run time: POST /control/faults)")
    )


def _add_fault_arguments(group: argparse._ArgumentGroup) -> None:
    f = FaultSettings()
    group.add_argument(
        "--fault-end-stream-after-messages",
        type=_number(int, minimum=1),
        metavar="N",
        help="end each stream after it sent N messages (default: off)",
    )
    group.add_argument(
        "--fault-end-stream-every",
        type=_number(float, minimum=0.0, inclusive=False),
        metavar="S",
        help="end each stream S seconds after it opened (default: off)",
    )
    group.add_argument(
        "--fault-end-stream-status",
        type=_status,
        default=f.end_stream_status,
        metavar="STATUS",
        help=f"status of the two faults above (default: {f.end_stream_status})",
    )
    group.add_argument(
        "--fault-stall",
        type=_number(float, minimum=0.0),
        default=f.stall_s,
        metavar="S",
        help="stall each stream (nothing sent, no heartbeats) for S seconds (default: 0, off)",
    )
    group.add_argument(
        "--fault-stall-after-messages",
        type=_number(int, minimum=0),
        default=f.stall_after_messages,
        metavar="N",
        help=f"... once it sent N messages (default: {f.stall_after_messages})",
    )
    group.add_argument(
        "--fault-refuse-streams",
        type=_status,
        metavar="STATUS",
        help="refuse every new stream with STATUS (default: off)",
    )
    group.add_argument(
        "--fault-end-streams-on-token-expiry",
        action="store_true",
        help="end a stream with UNAUTHENTICATED once its token expires or is revoked (default: off)",
    )
    for name, what in (
        ("duplicate", "per update, re-send an already sent execution"),
        ("unknown-enum", f"per execution, send ExecutionType {f.unknown_enum_value}"),
        ("unknown-field", "per message, append an unknown field"),
        ("rest-429", "per search request, answer 429"),
        ("rest-5xx", "per search request, answer --fault-rest-5xx-status"),
    ):
        group.add_argument(
            f"--fault-{name}-rate",
            type=_rate,
            default=0.0,
            metavar="P",
            help=f"probability, {what} (default: 0)",
        )
    group.add_argument(
        "--fault-rest-5xx-status",
        type=_number(int, minimum=500),
        default=f.rest_5xx_status,
        metavar="CODE",
        help=f"HTTP status of the 5xx fault (default: {f.rest_5xx_status})",
    )
    group.add_argument(
        "--fault-extra-snapshot-orders",
        type=_number(int, minimum=0),
        default=0,
        metavar="N",
        help="append N synthetic open orders to every snapshot (default: 0)",
    )


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Build the venue configuration from parsed flags.

    Raises:
        ConfigError: A flag value is invalid; the message names the flag.
    """
    for flag, values in (
        ("--accounts", args.accounts),
        ("--symbols", args.symbols),
        ("--scopes", args.scopes),
    ):
        if not values or any(not value.strip() for value in values):
            msg = f"{flag}: give at least one non-empty value"
            raise ConfigError(msg)
    if any(not account.startswith("firms/") for account in args.accounts):
        msg = "--accounts: each account must look like firms/<firm>/accounts/<id>"
        raise ConfigError(msg)
    try:
        faults = FaultSettings(
            end_stream_after_messages=args.fault_end_stream_after_messages,
            end_stream_every_s=args.fault_end_stream_every,
            end_stream_status=args.fault_end_stream_status,
            stall_s=args.fault_stall,
            stall_after_messages=args.fault_stall_after_messages,
            refuse_streams_status=args.fault_refuse_streams,
            end_streams_on_token_expiry=args.fault_end_streams_on_token_expiry,
            duplicate_rate=args.fault_duplicate_rate,
            unknown_enum_rate=args.fault_unknown_enum_rate,
            unknown_field_rate=args.fault_unknown_field_rate,
            extra_snapshot_orders=args.fault_extra_snapshot_orders,
            rest_429_rate=args.fault_rest_429_rate,
            rest_5xx_rate=args.fault_rest_5xx_rate,
            rest_5xx_status=args.fault_rest_5xx_status,
        )
    except ValueError as exc:
        msg = f"fault flags: {exc}"
        raise ConfigError(msg) from exc
    return SimulatorConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        seed=args.seed,
        rate=args.rate,
        warmup_updates=args.warmup_updates,
        heartbeat_interval_s=args.heartbeat_interval,
        journal_path=args.journal,
        accounts=tuple(args.accounts),
        symbols=tuple(args.symbols),
        price_scale=args.price_scale,
        fractional_quantity_scale=args.fractional_quantity_scale,
        stream_limit=args.stream_limit,
        token_lifetime_s=args.token_lifetime,
        scopes=tuple(args.scopes),
        rest_rate_limit=args.rest_rate_limit,
        client_id=args.client_id,
        participant_id=args.participant_id,
        faults=faults,
    )


def write_ready_file(path: Path, endpoints: VenueEndpoints) -> None:
    """Write the ready file atomically (a temporary file in the same directory, then a rename).

    Raises:
        ConfigError: The file cannot be written.
    """
    try:
        write_atomically(path, (json.dumps(endpoints.to_json()) + "\n").encode(), 0o644)
    except OSError as exc:
        msg = f"--ready-file {path}: cannot write it: {exc}"
        raise ConfigError(msg) from exc


def _register_keys(venue: SimulatedVenue, args: argparse.Namespace) -> None:
    for path in args.client_public_key:
        try:
            venue.register_client_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            msg = f"--client-public-key {path}: cannot use it: {exc}"
            raise ConfigError(msg) from exc
    if args.client_key_out is not None:
        private_pem, public_pem = generate_client_key()
        try:
            write_atomically(args.client_key_out, private_pem, _PRIVATE_KEY_MODE)
        except OSError as exc:
            msg = f"--client-key-out {args.client_key_out}: cannot write it: {exc}"
            raise ConfigError(msg) from exc
        venue.register_client_key(public_pem)
    if not args.client_public_key and args.client_key_out is None:
        _LOG.warning(
            "no client key registered (--client-key-out/--client-public-key): no token can be issued"
        )


def run(args: argparse.Namespace) -> int:
    """Run the simulator until SIGINT or SIGTERM.

    Args:
        args: The parsed flags.

    Returns:
        0 after a clean stop.

    Raises:
        ConfigError: A flag value is invalid.
        RuntimeFailure: The venue cannot start.
    """
    config = config_from_args(args)
    venue = SimulatedVenue(config)
    _register_keys(venue, args)
    stop = threading.Event()
    with stop_on_signals(stop), venue:
        endpoints = venue.endpoints
        if args.ready_file is not None:
            write_ready_file(args.ready_file, endpoints)
        print(
            f"venue simulator ready: gRPC {endpoints.grpc_target}, REST {endpoints.rest_url}, "
            f"token URL {endpoints.token_url}, control {endpoints.control_url}\n"
            f"  client_id={endpoints.client_id} participant_id={endpoints.participant_id} "
            f"seed={config.seed} rate={config.rate:g}/s journal={config.journal_path or '-'}",
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    if args.ready_file is not None:
        with contextlib.suppress(FileNotFoundError):
            args.ready_file.unlink()
    stats = venue.stats()
    print(
        f"venue simulator stopped: {stats['executions_produced']} executions, "
        f"{stats['streams_opened_total']} streams served",
        file=sys.stdout,
        flush=True,
    )
    return 0
