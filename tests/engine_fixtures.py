"""Test doubles for the engine's venue-side ports, and a driver that steps the engine in a test.

- :class:`ScriptedStream`: a venue stream that hands out the responses a test queued (thread-safe),
  optionally ending with a :class:`~connector.engine.ports.StreamEnd`;
- :class:`NoSearch`: an execution search that must not be used (a first start from "now");
- :class:`EmptySearch`: an execution search that finds nothing;
- :func:`venue_executions`, :func:`response_of`: venue executions, and a stream response of them;
- :func:`engine_on_kafka`: the real engine with every real Kafka adapter (``build_engine``), on a
  scripted stream;
- :func:`step_until`: step the engine (real clock) until a condition holds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from connector._pb.polymarket.v1 import trading_pb2
from connector.commands.composition import build_engine, subscription_key
from connector.config import Settings
from connector.engine.ports import ExecutionSearch, SearchFailure, SearchPage, SearchRequest, StreamEnd
from connector.engine.service import ConnectorService
from connector.engine.status import ServiceStatus
from connector.kafka.publisher import KafkaPublisher
from connector.kafka.topics import topic_names
from connector.observability.metrics import Metrics
from connector.simulator import SimulatedVenue, SimulatorConfig


class ScriptedStream:
    """A venue stream whose responses the test queues."""

    def __init__(self, responses: Iterable[Any] = ()) -> None:
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self.cancelled = False
        self.push(*responses)

    def push(self, *items: Any) -> None:
        """Queue responses (a :class:`StreamEnd`, raw bytes): they go out as wire bytes, as gRPC's do."""
        with self._lock:
            self._items.extend(
                item if isinstance(item, (StreamEnd, bytes)) else item.SerializeToString() for item in items
            )

    def take(self) -> Any | StreamEnd | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def cancel(self) -> None:
        self.cancelled = True


class NoSearch:
    """An execution search the test does not expect to be asked."""

    def submit(self, request: SearchRequest) -> None:
        msg = f"no backfill expected, but asked for {request}"
        raise AssertionError(msg)

    def poll(self) -> SearchPage | SearchFailure | None:
        return None

    def cancel(self) -> None:
        pass


class EmptySearch:
    """An execution search that finds nothing (one empty last page per request)."""

    def __init__(self) -> None:
        self._answer: SearchPage | None = None
        self.requests = 0

    def submit(self, request: SearchRequest) -> None:
        del request
        self.requests += 1
        self._answer = SearchPage((), "", eof=True)

    def poll(self) -> SearchPage | SearchFailure | None:
        answer, self._answer = self._answer, None
        return answer

    def cancel(self) -> None:
        self._answer = None


def venue_executions(count: int) -> list[trading_pb2.Execution]:
    """The first ``count`` executions of a seeded simulated venue (no server is started)."""
    with SimulatedVenue(SimulatorConfig(seed=5, rate=0.0, warmup_updates=30)) as venue:
        executions = [entry.execution for entry in venue.journal.executions()][:count]
    assert len(executions) == count
    return executions


def response_of(*executions: trading_pb2.Execution) -> trading_pb2.CreateOrderSubscriptionResponse:
    """A stream response carrying ``executions`` as one update, sent now."""
    response = trading_pb2.CreateOrderSubscriptionResponse(session_id="s-1")
    response.processed_sent_time.GetCurrentTime()
    response.update.executions.extend(executions)
    return response


def undialled_settings(bootstrap_servers: str, key_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings for the engine on a given Kafka, with venue addresses nothing dials (``sections``
    override or add top-level sections, e.g. ``connector={"name": ...}``)."""
    return Settings.model_validate(
        {
            "venue": {
                "grpc_target": "127.0.0.1:1",
                "rest_url": "http://127.0.0.1:1",
                "insecure": True,
                "participant_id": "firms/F/users/u",
            },
            "auth": {
                "token_url": "http://127.0.0.1:1/oauth/token",
                "client_id": "c",
                "private_key_file": str(key_path),
                "audience": "http://127.0.0.1:1",
            },
            "kafka": {"bootstrap_servers": bootstrap_servers},
            **sections,
        }
    )


def engine_on_kafka(
    settings: Settings, streams: Iterable[ScriptedStream], search: ExecutionSearch | None = None
) -> tuple[ConnectorService, KafkaPublisher, Metrics, ServiceStatus]:
    """The real engine and Kafka adapters; each stream the engine opens is the next scripted one."""
    opened = iter(streams)
    metrics = Metrics(tuple(topic_names(settings).values()))
    status = ServiceStatus(connector=settings.connector.name, subscription=subscription_key(settings))
    engine = build_engine(
        settings,
        open_stream=lambda: next(opened),
        search=search or NoSearch(),
        invalidate_token=lambda: None,
        metrics=metrics,
        status=status,
    )
    return engine.service, engine.publisher, metrics, status


def step_until(service: ConnectorService, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Step the engine on the real clock until ``condition`` holds (fail after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        assert not service.finished, f"the engine stopped while waiting for {what}"
        time.sleep(min(service.step(), 0.01))


def stop(service: ConnectorService, timeout_s: float = 30) -> None:
    """Ask the engine to stop and step it until it has (flush, checkpoint, last heartbeat)."""
    service.request_stop()
    deadline = time.monotonic() + timeout_s
    while not service.finished:
        assert time.monotonic() < deadline, "the engine did not stop"
        time.sleep(min(service.step(), 0.01))
