"""Fault injection settings of the simulator: what they mean, how they are validated, and where they live.

:class:`FaultSettings` is one immutable value with every fault; :class:`FaultBoard` holds the current
value, replaces it atomically (from CLI flags at start, from ``POST /control/faults`` or from the
in-process API at run time) and counts its generations, so that open streams notice a new setting.

Fields (all off by default)::

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
    token_lifetime_s            int|null   lifetime of tokens issued from now on (default: the configured one)

The control endpoint also accepts two one-shot actions that are not stored: ``"reset": true`` (back
to the defaults, applied before the other keys) and ``"expire_issued_tokens": true``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import grpc

__all__ = ["STATUS_NAMES", "FaultBoard", "FaultSettings", "status_code"]

STATUS_NAMES: Final = tuple(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)
_RATE_FIELDS: Final = (
    "duplicate_rate",
    "unknown_enum_rate",
    "unknown_field_rate",
    "rest_429_rate",
    "rest_5xx_rate",
)


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
    """Every fault the simulator can inject; see the module docstring for each field."""

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
    token_lifetime_s: int | None = None

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
        status_code(self.end_stream_status)
        if self.refuse_streams_status is not None:
            status_code(self.refuse_streams_status)
        checks = {
            "end_stream_after_messages": self.end_stream_after_messages is None
            or self.end_stream_after_messages >= 1,
            "end_stream_every_s": self.end_stream_every_s is None or self.end_stream_every_s > 0,
            "stall_s": self.stall_s >= 0,
            "stall_after_messages": self.stall_after_messages >= 0,
            "extra_snapshot_orders": self.extra_snapshot_orders >= 0,
            "rest_5xx_status": 500 <= self.rest_5xx_status <= 599,
            "token_lifetime_s": self.token_lifetime_s is None or self.token_lifetime_s >= 1,
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
        return value.upper() if name.endswith("_status") else value
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
