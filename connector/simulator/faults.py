"""The simulator's behaviour settings (faults included): their meaning, their validation, their home.

:class:`FaultSettings` is one immutable value with every fault and every venue behaviour the venue docs
leave open (venue-api.md §2, §5); :class:`FaultBoard` holds the current value, replaces it atomically
(from CLI flags at start, from ``POST /control/faults`` or from the in-process API at run time) and
counts its generations, so that open streams notice a new setting. docs/simulator.md has the table.

Faults (all off by default)::

    end_stream_after_messages   int|null   end each stream after it sent this many messages
    end_stream_every_s          float|null end each stream this many seconds after it opened
    end_stream_status           str        status for both of the above (default "UNAVAILABLE")
    stall_s                     float      stall each stream (nothing sent, heartbeats included) this long
    stall_after_messages        int        ... once it has sent this many messages (default 1)
    refuse_streams_status       str|null   refuse every new stream with this status
    end_streams_on_token_expiry bool       end a stream (UNAUTHENTICATED) once its token expires/is revoked
    duplicate_rate              float      probability, per update, of re-sending an already sent execution
    unknown_enum_rate           float      per execution: probability of type = unknown_enum_value
    unknown_enum_value          int        the unknown ExecutionType number (default 99)
    unknown_field_rate          float      probability, per message, of appending an unknown field
    extra_snapshot_orders       int        synthetic open orders appended to every snapshot
    rest_429_rate               float      probability of a search request answering 429
    rest_5xx_rate               float      probability of a search request answering rest_5xx_status
    rest_5xx_status             int        the 5xx status (default 503)
    rest_no_token_rate          float      probability, per executions page, of eof=false with no token
    token_lifetime_s            int|null   lifetime of tokens issued from now on (default: the configured one)
    stream_faults_apply_to      str        which streams the stream faults above (ends, stall, refusal, token
                                           expiry, duplicates, unknown enums/fields) hit: all|orders|dropcopy

Venue behaviours (defaults: the kindest variant, which is what the simulator did before, except that the
send queue is bounded)::

    stream_opening              str        first messages of a new stream: snapshot|heartbeat|updates|random
    opening_updates             int        updates sent before the snapshot ("updates"; "random": 1..N)
    opening_wait_s              float      longest wait for those updates before the snapshot goes anyway
    heartbeat_queueing          str        jump (ahead of queued updates) | queue (behind them) | random
    send_queue_capacity         int|null   messages a stream may queue for a slow client (null: unbounded)
    queue_overflow_status       str        status ending a stream whose queue is full (RESOURCE_EXHAUSTED)
    new_session_every_s         float|null a new session_id on each stream about this often
    snapshot_every_s            float|null a second (third...) snapshot on each stream about this often
    rest_result_order           str        oldest_first|newest_first|shuffled_pages|shuffled|random
    rest_indexing_delay_s       float      an execution is searchable this long after its transact_time
    rest_indexing_jitter_s      float      ... plus up to this much more per execution (out-of-order indexing)
    rest_max_page_size          int        largest page (pageSize above it is capped; default 1000)
    rest_default_page_size      int        page size when pageSize is 0 or absent (default 100; capped too)
    rest_rate_limit_per_minute  int        searches per rolling minute per client and endpoint (0: no limit)
    fault_seed                  int|null   seed of every die above (null: the venue's --seed)

Drop Copy (venue-api.md §6; what the docs leave open)::

    dropcopy_batch_size            int        most executions in one drop-copy response (default 100)
    dropcopy_replay_rate           float|null executions per second while replaying (null: unpaced; 2000)
    dropcopy_replay_delay_s        float      wait before the first replayed batch (default 0)
    dropcopy_resend_on_resume      int        on a resume by token, re-send this many executions before
                                              the token's position first (at-least-once; default 0)
    dropcopy_token_lifetime_s      float|null a resume token older than this is expired (default 86400)
    dropcopy_expired_token_status  str        status refusing an expired token (default INVALID_ARGUMENT)
    dropcopy_unknown_token_status  str        status refusing an unknown token (default INVALID_ARGUMENT)

The two token statuses take one of :data:`TOKEN_REFUSAL_STATUSES` (``random``: one of the four per
refusal); the venue documents that tokens expire, not the status it answers with.

The control endpoint also accepts one-shot actions that are not stored: ``"reset": true`` (back to
the venue's baseline, applied first), ``"hostile": true`` (then :data:`HOSTILE`, before the other
keys), ``"expire_issued_tokens": true``, ``"new_session": true`` and ``"send_snapshot": true`` (on
every open stream, now), and ``"expire_dropcopy_tokens": true`` (every resume token issued so far is
expired from now on).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import grpc

__all__ = [
    "HEARTBEAT_QUEUEINGS",
    "HOSTILE",
    "REST_RESULT_ORDERS",
    "STATUS_NAMES",
    "STREAM_KINDS",
    "STREAM_OPENINGS",
    "TOKEN_REFUSAL_STATUSES",
    "FaultBoard",
    "FaultSettings",
    "status_code",
]

STATUS_NAMES: Final = tuple(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)
STREAM_OPENINGS: Final = ("snapshot", "heartbeat", "updates", "random")
HEARTBEAT_QUEUEINGS: Final = ("jump", "queue", "random")
REST_RESULT_ORDERS: Final = ("oldest_first", "newest_first", "shuffled_pages", "shuffled", "random")
STREAM_KINDS: Final = ("orders", "dropcopy")
STREAM_FAULT_TARGETS: Final = ("all", *STREAM_KINDS)
TOKEN_REFUSAL_STATUSES: Final = ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE")
"""The plausible statuses for a refused resume token (the venue's is undocumented)."""
_CHOICES: Final = {
    "stream_opening": STREAM_OPENINGS,
    "heartbeat_queueing": HEARTBEAT_QUEUEINGS,
    "rest_result_order": REST_RESULT_ORDERS,
    "stream_faults_apply_to": STREAM_FAULT_TARGETS,
}
_TOKEN_STATUS_FIELDS: Final = ("dropcopy_expired_token_status", "dropcopy_unknown_token_status")
# The faults that stream_faults_apply_to aims, with their "off" values.
_STREAM_FAULTS_OFF: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "end_stream_after_messages": None,
        "end_stream_every_s": None,
        "stall_s": 0.0,
        "refuse_streams_status": None,
        "end_streams_on_token_expiry": False,
        "duplicate_rate": 0.0,
        "unknown_enum_rate": 0.0,
        "unknown_field_rate": 0.0,
    }
)
_RATE_FIELDS: Final = (
    "duplicate_rate",
    "unknown_enum_rate",
    "unknown_field_rate",
    "rest_429_rate",
    "rest_5xx_rate",
    "rest_no_token_rate",
)

HOSTILE: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "stream_opening": "random",
        "opening_updates": 3,
        "heartbeat_queueing": "random",
        "send_queue_capacity": 1000,
        "new_session_every_s": 20.0,
        "snapshot_every_s": 30.0,
        "duplicate_rate": 0.02,
        "unknown_enum_rate": 0.01,
        "unknown_field_rate": 0.05,
        "rest_result_order": "random",
        "rest_indexing_delay_s": 1.0,
        "rest_indexing_jitter_s": 2.0,
        "rest_no_token_rate": 0.1,
        "rest_max_page_size": 500,
        "rest_429_rate": 0.05,
        "rest_5xx_rate": 0.02,
        "dropcopy_batch_size": 20,
        "dropcopy_replay_rate": 500.0,
        "dropcopy_replay_delay_s": 0.5,
        "dropcopy_resend_on_resume": 5,
        "dropcopy_expired_token_status": "random",
        "dropcopy_unknown_token_status": "random",
    }
)
"""The hostile preset: every behaviour with variants drawn at random, and some of each REST fault.

It leaves alone the faults a scenario schedules itself (drops, stalls, refusals, token expiry), the
rate limit (the venue's 12/minute stays), and the seed (``fault_seed``).
"""


def status_code(name: str) -> grpc.StatusCode:
    """Look up a gRPC status by name (``UNAVAILABLE``, ``internal``, ...).

    Raises:
        ValueError: Unknown name, or OK (which is not a fault).
    """
    upper = name.strip().upper()
    if upper not in STATUS_NAMES:
        msg = f"unknown gRPC status {name!r}; expected one of {', '.join(STATUS_NAMES)}"
        raise ValueError(msg)
    return grpc.StatusCode[upper]


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Every fault and venue behaviour the simulator can vary; see the module docstring for each field."""

    end_stream_after_messages: int | None = None
    end_stream_every_s: float | None = None
    end_stream_status: str = "UNAVAILABLE"
    stall_s: float = 0.0
    stall_after_messages: int = 1
    refuse_streams_status: str | None = None
    end_streams_on_token_expiry: bool = False
    duplicate_rate: float = 0.0
    unknown_enum_rate: float = 0.0
    unknown_enum_value: int = 99
    unknown_field_rate: float = 0.0
    extra_snapshot_orders: int = 0
    rest_429_rate: float = 0.0
    rest_5xx_rate: float = 0.0
    rest_5xx_status: int = 503
    rest_no_token_rate: float = 0.0
    token_lifetime_s: int | None = None
    stream_faults_apply_to: str = "all"
    stream_opening: str = "snapshot"
    opening_updates: int = 1
    opening_wait_s: float = 1.0
    heartbeat_queueing: str = "jump"
    send_queue_capacity: int | None = 100_000
    queue_overflow_status: str = "RESOURCE_EXHAUSTED"
    new_session_every_s: float | None = None
    snapshot_every_s: float | None = None
    rest_result_order: str = "oldest_first"
    rest_indexing_delay_s: float = 0.0
    rest_indexing_jitter_s: float = 0.0
    rest_max_page_size: int = 1000
    rest_default_page_size: int = 100
    rest_rate_limit_per_minute: int = 12
    fault_seed: int | None = None
    dropcopy_batch_size: int = 100
    dropcopy_replay_rate: float | None = 2000.0
    dropcopy_replay_delay_s: float = 0.0
    dropcopy_resend_on_resume: int = 0
    dropcopy_token_lifetime_s: float | None = 86400.0
    dropcopy_expired_token_status: str = "INVALID_ARGUMENT"  # noqa: S105 - a gRPC status name
    dropcopy_unknown_token_status: str = "INVALID_ARGUMENT"  # noqa: S105 - a gRPC status name

    def __post_init__(self) -> None:
        """Validate every field.

        Raises:
            ValueError: A field is out of range; the message names it.
        """
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                msg = f"{name} must be within 0..1, got {value!r}"
                raise ValueError(msg)
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                msg = f"{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}"
                raise ValueError(msg)
        status_code(self.end_stream_status)
        status_code(self.queue_overflow_status)
        if self.refuse_streams_status is not None:
            status_code(self.refuse_streams_status)
        for name in _TOKEN_STATUS_FIELDS:
            if str(getattr(self, name)).upper() not in (*TOKEN_REFUSAL_STATUSES, "RANDOM"):
                msg = (
                    f"{name} must be one of {', '.join(TOKEN_REFUSAL_STATUSES)} or random, "
                    f"got {getattr(self, name)!r}"
                )
                raise ValueError(msg)
        checks = {
            "end_stream_after_messages": _at_least(self.end_stream_after_messages, 1),
            "end_stream_every_s": self.end_stream_every_s is None or self.end_stream_every_s > 0,
            "stall_s": self.stall_s >= 0,
            "stall_after_messages": self.stall_after_messages >= 0,
            "extra_snapshot_orders": self.extra_snapshot_orders >= 0,
            "rest_5xx_status": 500 <= self.rest_5xx_status <= 599,
            "token_lifetime_s": _at_least(self.token_lifetime_s, 1),
            "opening_updates": self.opening_updates >= 1,
            "opening_wait_s": self.opening_wait_s >= 0,
            "send_queue_capacity": _at_least(self.send_queue_capacity, 1),
            "new_session_every_s": self.new_session_every_s is None or self.new_session_every_s > 0,
            "snapshot_every_s": self.snapshot_every_s is None or self.snapshot_every_s > 0,
            "rest_indexing_delay_s": self.rest_indexing_delay_s >= 0,
            "rest_indexing_jitter_s": self.rest_indexing_jitter_s >= 0,
            "rest_max_page_size": self.rest_max_page_size >= 1,
            "rest_default_page_size": self.rest_default_page_size >= 1,
            "rest_rate_limit_per_minute": self.rest_rate_limit_per_minute >= 0,
            "dropcopy_batch_size": self.dropcopy_batch_size >= 1,
            "dropcopy_replay_rate": self.dropcopy_replay_rate is None or self.dropcopy_replay_rate > 0,
            "dropcopy_replay_delay_s": self.dropcopy_replay_delay_s >= 0,
            "dropcopy_resend_on_resume": self.dropcopy_resend_on_resume >= 0,
            "dropcopy_token_lifetime_s": self.dropcopy_token_lifetime_s is None
            or self.dropcopy_token_lifetime_s > 0,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"{name}: value {getattr(self, name)!r} is out of range"
                raise ValueError(msg)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as a JSON-ready dict."""
        return dataclasses.asdict(self)

    def with_changes(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Return a copy with some fields changed, checking names and types.

        Args:
            changes: Field name to new value (JSON types; ints are accepted for floats).

        Returns:
            The new settings.

        Raises:
            ValueError: Unknown field, wrong type or out-of-range value.
        """
        fields = {field.name: field for field in dataclasses.fields(self)}
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in fields:
                msg = f"unknown fault {name!r}; known: {', '.join(sorted(fields))}"
                raise ValueError(msg)
            clean[name] = _coerce(name, str(fields[name].type), value)
        return dataclasses.replace(self, **clean)

    def with_hostile(self) -> FaultSettings:
        """Return a copy with the :data:`HOSTILE` preset applied."""
        return self.with_changes(HOSTILE)

    def for_stream(self, kind: str) -> FaultSettings:
        """Return the settings one kind of stream (``orders`` or ``dropcopy``) is subject to.

        The stream faults are switched off unless ``stream_faults_apply_to`` aims them at ``kind``.
        """
        if self.stream_faults_apply_to in ("all", kind):
            return self
        return dataclasses.replace(self, **_STREAM_FAULTS_OFF)


def _at_least(value: int | None, minimum: int) -> bool:
    return value is None or value >= minimum


def _coerce(name: str, annotation: str, value: Any) -> Any:
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        msg = f"{name} cannot be null"
        raise ValueError(msg)
    if annotation.startswith("bool"):
        if isinstance(value, bool):
            return value
    elif annotation.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation.startswith("float"):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif annotation.startswith("str") and isinstance(value, str):
        if name.endswith("_status"):
            return value.upper()
        return value.lower() if name in _CHOICES else value
    msg = f"{name}: expected {annotation}, got {value!r}"
    raise ValueError(msg)


class FaultBoard:
    """The current fault settings, replaced atomically; thread-safe."""

    def __init__(self, initial: FaultSettings | None = None) -> None:
        self._settings = initial or FaultSettings()
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> FaultSettings:
        """The settings in force."""
        return self._settings

    @property
    def generation(self) -> int:
        """Incremented each time the settings change."""
        return self._generation

    def replace(self, settings: FaultSettings) -> FaultSettings:
        """Put new settings in force and return them."""
        with self._lock:
            self._settings = settings
            self._generation += 1
            return settings

    def update(self, changes: Mapping[str, Any]) -> FaultSettings:
        """Change some fields (see :meth:`FaultSettings.with_changes`) and return the new settings."""
        with self._lock:
            self._settings = self._settings.with_changes(changes)
            self._generation += 1
            return self._settings
