"""What the service says about itself: its phase, and the status document behind ``/status`` and ``/readyz``.

The engine writes :class:`ServiceStatus` on its own thread; the HTTP server only reads it. Every time
in it is the completeness frontier F or a wall time, never the raw watermark: what ``/status`` says
about the past is exactly what the checkpoint would promise. Nothing secret is ever put in it.

:class:`Phase` is the ``phase`` of the ConnectorHeartbeat record (its schema documents the same
values; a test keeps the two equal).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

LOOP_STALL_LIMIT_S: Final = 60.0


class Phase(StrEnum):
    """Where the service is in its life (the ConnectorHeartbeat ``phase``)."""

    STARTING = "starting"
    WAITING_FOR_KAFKA = "waiting_for_kafka"
    WAITING_FOR_SCHEMA_REGISTRY = "waiting_for_schema_registry"
    CONNECTING = "connecting"
    RECOVERING = "recovering"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    STANDBY = "standby"


class Role(StrEnum):
    """Whether this instance publishes (``connector.leader_election``: leader or standby)."""

    SINGLE = "single"  # no election: the only instance
    LEADER = "leader"
    STANDBY = "standby"


@dataclass(slots=True)
class DropCopyStatus:
    """The Drop Copy stream's part of ``/status`` (``venue.sources`` holds ``drop_copy``)."""

    connected: bool = False
    resume: str = "live"  # how the current (or last) stream started: token, time or live
    confirmed_token: bool = False  # whether a resume token is confirmed (the checkpoint holds it)
    confirmed_token_at: str | None = None  # wall time the newest one was confirmed
    position: str | None = None  # the newest transact_time up to it: Drop Copy is complete before it
    batches: int = 0
    refusals: int = 0  # resume positions the venue refused
    reconnects: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class ServiceStatus:
    """What the service reports about itself (written by the engine, read by HTTP)."""

    connector: str
    subscription: str
    instance: str = ""
    role: str = Role.SINGLE.value
    delivery: str = "at_least_once"
    phase: str = Phase.STARTING.value
    session_id: str = ""
    connected: bool = False
    completeness_frontier: str | None = None
    last_venue_heartbeat: str | None = None
    last_error: str | None = None
    producer_healthy: bool = True
    reconnects: int = 0
    recovery: dict[str, Any] | None = None
    holdback_overflows: int = 0
    gaps_detected: int = 0
    last_gap: dict[str, Any] | None = None
    last_checkpoint: str | None = None
    leadership: dict[str, Any] | None = None  # connector.leader_election: the election's state
    sources: list[str] = field(default_factory=lambda: ["order_stream"])  # venue.sources
    drop_copy: DropCopyStatus | None = None  # venue.sources holds drop_copy
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    loop_tick_monotonic: float = field(default_factory=time.monotonic)

    def tick(self, now: float) -> None:
        """Record that the engine's loop is alive (``now``: its monotonic clock)."""
        self.loop_tick_monotonic = now

    def loop_alive(self) -> bool:
        """Whether the engine's loop ticked recently (on the process's monotonic clock)."""
        return time.monotonic() - self.loop_tick_monotonic < LOOP_STALL_LIMIT_S

    def not_ready_reasons(self) -> list[str]:
        """Why the service is not ready (empty when it is)."""
        reasons: list[str] = []
        if self.role == Role.STANDBY.value:  # warm and waiting: ready (a rollout waits for readiness)
            return reasons if self.loop_alive() else ["standby loop not ticking"]
        if "order_stream" in self.sources and not self.connected:
            reasons.append("venue stream not connected")
        if self.drop_copy is not None and not self.drop_copy.connected:
            reasons.append("drop copy stream not connected")
        if not self.producer_healthy:
            reasons.append("producer unhealthy")
        if not self.loop_alive():
            reasons.append("main loop not ticking")
        return reasons

    def to_json(self) -> dict[str, Any]:
        """The ``/status`` document."""
        document = asdict(self)
        document.pop("loop_tick_monotonic")
        document["ready"] = not self.not_ready_reasons()
        return document
