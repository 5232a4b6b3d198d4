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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from connector.commands.process import stop_on_signals, write_atomically
from connector.errors import ConfigError
from connector.simulator.faults import (
    HEARTBEAT_QUEUEINGS,
    REST_RESULT_ORDERS,
    STATUS_NAMES,
    STREAM_FAULT_TARGETS,
    STREAM_OPENINGS,
    TOKEN_REFUSAL_STATUSES,
    FaultSettings,
)
from connector.simulator.tokens import generate_client_key
from connector.simulator.venue import (
    DEFAULT_CLIENT_ID,
    DEFAULT_PARTICIPANT_ID,
    DEFAULT_SCOPES,
    SimulatedVenue,
    SimulatorConfig,
    VenueEndpoints,
)

__all__ = [
    "SETTING_FLAGS",
    "add_arguments",
    "config_from_args",
    "run",
    "settings_from_args",
    "write_ready_file",
]

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
        help="enforce the search rate limit, --rest-rate-limit-per-minute (default: on)",
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
    firm = parser.add_argument_group("drop copy (the firm-wide execution stream)")
    firm.add_argument(
        "--firm-users",
        type=_number(int, minimum=0),
        default=d.firm_users,
        metavar="N",
        help=f"other users of the firm trading besides --participant-id, seen on Drop Copy only "
        f"(default: {d.firm_users})",
    )
    firm.add_argument(
        "--firm-flow-ratio",
        type=_number(float, minimum=0.0),
        default=d.firm_flow_ratio,
        metavar="R",
        help=f"each other user's updates per update of --participant-id (default: {d.firm_flow_ratio:g})",
    )
    firm.add_argument(
        "--journal-dropcopy",
        action="store_true",
        help="also journal every firm execution (kind firm_execution) and every drop-copy response "
        "sent (kind dropcopy_send) (default: off)",
    )
    parser.add_argument(
        "--journal-stream-sends",
        action="store_true",
        help="also journal every stream message sent (kind stream_send) (default: off)",
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="start from the hostile preset: every venue behaviour with variants at random, some REST "
        "faults; the flags below override it; seed the dice with --fault-seed (default: off; control "
        'action {"hostile": true})',
    )
    _add_setting_arguments(
        parser.add_argument_group("faults (also settable at run time: POST /control/faults)"), _FAULT_FLAGS
    )
    _add_setting_arguments(
        parser.add_argument_group(
            "venue behaviours the venue docs leave open (also settable at run time: POST /control/faults)"
        ),
        _BEHAVIOUR_FLAGS,
    )
    _add_setting_arguments(
        parser.add_argument_group("drop-copy behaviours (also settable at run time: POST /control/faults)"),
        _DROPCOPY_FLAGS,
    )


@dataclass(frozen=True, slots=True)
class _SettingFlag:
    """One command-line flag setting one field of :class:`FaultSettings` (the control API's names)."""

    flag: str
    field: str
    parse: Callable[[str], Any] | None  # None: a switch that sets True
    metavar: str
    help: str
    default_text: str | None = None  # when the field's default needs words


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value.lower() not in choices:
            msg = f"expected one of {', '.join(choices)}, got {value!r}"
            raise argparse.ArgumentTypeError(msg)
        return value.lower()

    return parse


def _capacity(value: str) -> int | None:
    number = int(_number(int, minimum=0)(value))
    return number or None


_FAULT_FLAGS: Final = (
    _SettingFlag(
        "--fault-end-stream-after-messages",
        "end_stream_after_messages",
        _number(int, minimum=1),
        "N",
        "end each stream after it sent N messages",
        "off",
    ),
    _SettingFlag(
        "--fault-end-stream-every",
        "end_stream_every_s",
        _number(float, minimum=0.0, inclusive=False),
        "S",
        "end each stream S seconds after it opened",
        "off",
    ),
    _SettingFlag(
        "--fault-end-stream-status", "end_stream_status", _status, "STATUS", "status of the two faults above"
    ),
    _SettingFlag(
        "--fault-stall",
        "stall_s",
        _number(float, minimum=0.0),
        "S",
        "stall each stream (nothing sent, no heartbeats) for S seconds",
        "0, off",
    ),
    _SettingFlag(
        "--fault-stall-after-messages",
        "stall_after_messages",
        _number(int, minimum=0),
        "N",
        "... once it sent N messages",
    ),
    _SettingFlag(
        "--fault-refuse-streams", "refuse_streams_status", _status, "STATUS", "refuse every new stream", "off"
    ),
    _SettingFlag(
        "--fault-end-streams-on-token-expiry",
        "end_streams_on_token_expiry",
        None,
        "",
        "end a stream with UNAUTHENTICATED once its token expires or is revoked",
        "off",
    ),
    _SettingFlag(
        "--fault-duplicate-rate",
        "duplicate_rate",
        _rate,
        "P",
        "probability, per update, of also re-sending an already sent execution",
    ),
    _SettingFlag(
        "--fault-unknown-enum-rate",
        "unknown_enum_rate",
        _rate,
        "P",
        "probability, per execution, of sending ExecutionType --fault-unknown-enum-value",
    ),
    _SettingFlag(
        "--fault-unknown-enum-value",
        "unknown_enum_value",
        _number(int, minimum=0),
        "N",
        "the unknown ExecutionType number",
    ),
    _SettingFlag(
        "--fault-unknown-field-rate",
        "unknown_field_rate",
        _rate,
        "P",
        "probability, per message, of appending an unknown field",
    ),
    _SettingFlag(
        "--fault-extra-snapshot-orders",
        "extra_snapshot_orders",
        _number(int, minimum=0),
        "N",
        "append N synthetic open orders to every snapshot",
    ),
    _SettingFlag(
        "--fault-rest-429-rate", "rest_429_rate", _rate, "P", "probability, per search request, of a 429"
    ),
    _SettingFlag(
        "--fault-rest-5xx-rate",
        "rest_5xx_rate",
        _rate,
        "P",
        "probability, per search request, of answering --fault-rest-5xx-status",
    ),
    _SettingFlag(
        "--fault-rest-5xx-status",
        "rest_5xx_status",
        _number(int, minimum=500),
        "CODE",
        "HTTP status of the 5xx fault",
    ),
    _SettingFlag(
        "--fault-rest-no-token-rate",
        "rest_no_token_rate",
        _rate,
        "P",
        "probability, per executions page, of eof=false with an empty nextPageToken",
    ),
    _SettingFlag(
        "--fault-streams",
        "stream_faults_apply_to",
        _choice(STREAM_FAULT_TARGETS),
        "WHICH",
        "which streams the stream faults hit: all, orders or dropcopy",
    ),
    _SettingFlag(
        "--fault-seed",
        "fault_seed",
        int,
        "S",
        "seed of every fault and behaviour die (streams, REST)",
        "--seed",
    ),
)
_BEHAVIOUR_FLAGS: Final = (
    _SettingFlag(
        "--stream-opening",
        "stream_opening",
        _choice(STREAM_OPENINGS),
        "HOW",
        "first messages of a new stream: snapshot; heartbeat, then snapshot; updates, then snapshot; "
        "or random per stream",
    ),
    _SettingFlag(
        "--opening-updates",
        "opening_updates",
        _number(int, minimum=1),
        "N",
        "updates before the snapshot (--stream-opening updates; random: 1..N)",
    ),
    _SettingFlag(
        "--opening-wait",
        "opening_wait_s",
        _number(float, minimum=0.0),
        "S",
        "longest wait for those updates before the snapshot goes anyway",
    ),
    _SettingFlag(
        "--heartbeat-queueing",
        "heartbeat_queueing",
        _choice(HEARTBEAT_QUEUEINGS),
        "HOW",
        "a due heartbeat (stamped at send) jumps the send queue, waits in it, or random per stream",
    ),
    _SettingFlag(
        "--send-queue-capacity",
        "send_queue_capacity",
        _capacity,
        "N",
        "messages a stream queues for a client that does not read before the venue ends it; 0: unbounded",
    ),
    _SettingFlag(
        "--queue-overflow-status",
        "queue_overflow_status",
        _status,
        "STATUS",
        "status ending a stream whose send queue is full",
    ),
    _SettingFlag(
        "--new-session-every",
        "new_session_every_s",
        _number(float, minimum=0.0, inclusive=False),
        "S",
        "a new session_id on each stream about every S seconds (0.5 S..1.5 S)",
        "off",
    ),
    _SettingFlag(
        "--snapshot-every",
        "snapshot_every_s",
        _number(float, minimum=0.0, inclusive=False),
        "S",
        "a further snapshot on each stream about every S seconds (0.5 S..1.5 S)",
        "off",
    ),
    _SettingFlag(
        "--rest-result-order",
        "rest_result_order",
        _choice(REST_RESULT_ORDERS),
        "ORDER",
        "order of execution search results unless the client asks newestFirst",
    ),
    _SettingFlag(
        "--rest-indexing-delay",
        "rest_indexing_delay_s",
        _number(float, minimum=0.0),
        "S",
        "an execution is searchable S seconds after its transact_time",
    ),
    _SettingFlag(
        "--rest-indexing-jitter",
        "rest_indexing_jitter_s",
        _number(float, minimum=0.0),
        "S",
        "... plus up to S more seconds, fixed per execution (indexed out of order)",
    ),
    _SettingFlag(
        "--rest-max-page-size",
        "rest_max_page_size",
        _number(int, minimum=1),
        "N",
        "largest search page; a larger pageSize is capped",
    ),
    _SettingFlag(
        "--rest-default-page-size",
        "rest_default_page_size",
        _number(int, minimum=1),
        "N",
        "search page size when pageSize is 0 or absent",
    ),
    _SettingFlag(
        "--rest-rate-limit-per-minute",
        "rest_rate_limit_per_minute",
        _number(int, minimum=0),
        "N",
        "searches per rolling minute per client and endpoint; 0: none (so does --no-rest-rate-limit)",
    ),
)


def _token_status(value: str) -> str:
    if value.upper() not in (*TOKEN_REFUSAL_STATUSES, "RANDOM"):
        msg = f"expected one of {', '.join(TOKEN_REFUSAL_STATUSES)} or random, got {value!r}"
        raise argparse.ArgumentTypeError(msg)
    return value.upper()


def _optional_positive(value: str) -> float | None:
    number = float(_number(float, minimum=0.0)(value))
    return number or None


_DROPCOPY_FLAGS: Final = (
    _SettingFlag(
        "--dropcopy-batch-size",
        "dropcopy_batch_size",
        _number(int, minimum=1),
        "N",
        "most executions in one drop-copy response",
    ),
    _SettingFlag(
        "--dropcopy-replay-rate",
        "dropcopy_replay_rate",
        _optional_positive,
        "R",
        "executions per second while replaying; 0: unpaced",
    ),
    _SettingFlag(
        "--dropcopy-replay-delay",
        "dropcopy_replay_delay_s",
        _number(float, minimum=0.0),
        "S",
        "wait before the first replayed batch",
    ),
    _SettingFlag(
        "--dropcopy-resend-on-resume",
        "dropcopy_resend_on_resume",
        _number(int, minimum=0),
        "N",
        "on a resume by token, first re-send the N executions up to the token's position",
    ),
    _SettingFlag(
        "--dropcopy-token-lifetime",
        "dropcopy_token_lifetime_s",
        _optional_positive,
        "S",
        "a resume token older than S seconds is expired; 0: never",
    ),
    _SettingFlag(
        "--dropcopy-expired-token-status",
        "dropcopy_expired_token_status",
        _token_status,
        "STATUS",
        f"status refusing an expired resume token: {', '.join(TOKEN_REFUSAL_STATUSES)} or random",
    ),
    _SettingFlag(
        "--dropcopy-unknown-token-status",
        "dropcopy_unknown_token_status",
        _token_status,
        "STATUS",
        f"status refusing an unknown resume token: {', '.join(TOKEN_REFUSAL_STATUSES)} or random",
    ),
)
SETTING_FLAGS: Final = (*_FAULT_FLAGS, *_BEHAVIOUR_FLAGS, *_DROPCOPY_FLAGS)
"""Every flag that sets a :class:`FaultSettings` field, by the field's control-API name."""


def _dest(spec: _SettingFlag) -> str:
    return f"setting_{spec.field}"


def _add_setting_arguments(group: argparse._ArgumentGroup, specs: tuple[_SettingFlag, ...]) -> None:
    defaults = FaultSettings()
    for spec in specs:
        default = spec.default_text or str(getattr(defaults, spec.field))
        text = f"{spec.help} (default: {default}; control field {spec.field})"
        if spec.parse is None:
            group.add_argument(
                spec.flag,
                dest=_dest(spec),
                action="store_const",
                const=True,
                default=argparse.SUPPRESS,
                help=text,
            )
        else:
            group.add_argument(
                spec.flag,
                dest=_dest(spec),
                type=spec.parse,
                metavar=spec.metavar,
                default=argparse.SUPPRESS,
                help=text,
            )


def settings_from_args(args: argparse.Namespace) -> FaultSettings:
    """Build the starting behaviour settings: the defaults, the hostile preset if asked, then the flags.

    Raises:
        ConfigError: The flags contradict each other; the message names the fields.
    """
    base = FaultSettings().with_hostile() if args.hostile else FaultSettings()
    given = [spec for spec in SETTING_FLAGS if hasattr(args, _dest(spec))]
    try:
        return base.with_changes({spec.field: getattr(args, _dest(spec)) for spec in given})
    except ValueError as exc:
        msg = f"fault and behaviour flags: {exc}"
        raise ConfigError(msg) from exc


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
    faults = settings_from_args(args)
    return SimulatorConfig(
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        seed=args.seed,
        rate=args.rate,
        warmup_updates=args.warmup_updates,
        heartbeat_interval_s=args.heartbeat_interval,
        journal_path=args.journal,
        journal_stream_sends=args.journal_stream_sends,
        journal_dropcopy=args.journal_dropcopy,
        firm_users=args.firm_users,
        firm_flow_ratio=args.firm_flow_ratio,
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
