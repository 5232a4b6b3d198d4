"""Pytest fixtures and client helpers for the venue simulator (register with ``pytest_plugins``).

Fixtures:
    simulator_config: the :class:`SimulatorConfig` of ``simulator`` (override it in a module to change it).
    simulator: a started in-process :class:`SimulatedVenue` (flow paused: drive it with ``advance``).
    simulator_client_key: a registered client's private key PEM.
    simulator_token: an access token from the venue's own token endpoint.

Helpers (plain functions, import them): :func:`make_assertion`, :func:`request_token`,
:func:`stream_metadata`, :func:`open_stream`, :func:`open_dropcopy`, :func:`search`, :func:`wait_until`; and
for the pure,
single-threaded simulator components: :class:`VirtualClock` and :func:`virtual_exchange`.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
import requests

from connector._pb.polymarket.v1 import dropcopy_pb2, dropcopy_pb2_grpc, trading_pb2, trading_pb2_grpc
from connector.simulator import SimulatedVenue, SimulatorConfig, VenueEndpoints
from connector.simulator.exchange import Exchange
from connector.simulator.journal import Journal
from connector.simulator.order_flow import FlowParams, OrderFlow
from connector.simulator.tokens import ASSERTION_TYPE
from connector.simulator.venue import DEFAULT_ACCOUNTS, DEFAULT_SYMBOLS

HTTP_TIMEOUT_S = 10.0


def make_assertion(
    private_pem: bytes,
    endpoints: VenueEndpoints,
    *,
    client_id: str | None = None,
    audience: str | None = None,
    issued_at: int | None = None,
    lifetime_s: int = 300,
    jti: str | None = None,
    algorithm: str = "RS256",
    key: Any = None,
) -> str:
    """Build a client assertion JWT as venue-api.md §4.1 describes (parameters bend it for negative tests)."""
    now = int(time.time()) if issued_at is None else issued_at
    client = client_id or endpoints.client_id
    claims = {
        "iss": client,
        "sub": client,
        "aud": audience or endpoints.token_url,
        "iat": now,
        "exp": now + lifetime_s,
        "jti": jti or str(uuid.uuid4()),
    }
    return jwt.encode(claims, private_pem if key is None else key, algorithm=algorithm)


def request_token(
    endpoints: VenueEndpoints, assertion: str, *, client_id: str | None = None, **overrides: Any
) -> requests.Response:
    """POST a token request to the venue's token endpoint and return the raw response."""
    body = {
        "client_id": client_id or endpoints.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "audience": endpoints.audience,
        "grant_type": "client_credentials",
    }
    body.update(overrides)
    return requests.post(endpoints.token_url, json=body, timeout=HTTP_TIMEOUT_S)


def stream_metadata(token: str | None, participant_id: str | None) -> list[tuple[str, str]]:
    """Metadata for CreateOrderSubscription (None leaves a header out)."""
    metadata = []
    if token is not None:
        metadata.append(("authorization", f"Bearer {token}"))
    if participant_id is not None:
        metadata.append(("x-participant-id", participant_id))
    return metadata


def open_stream(
    channel: grpc.Channel,
    endpoints: VenueEndpoints,
    token: str | None,
    request: trading_pb2.CreateOrderSubscriptionRequest | None = None,
    *,
    participant_id: str | None = "",
) -> Any:
    """Open CreateOrderSubscription; ``participant_id=""`` means the venue's own id."""
    stub = trading_pb2_grpc.OrderEntryAPIStub(channel)
    participant = endpoints.participant_id if participant_id == "" else participant_id
    return stub.CreateOrderSubscription(
        request or trading_pb2.CreateOrderSubscriptionRequest(),
        metadata=stream_metadata(token, participant),
    )


def open_dropcopy(
    channel: grpc.Channel,
    token: str | None,
    request: dropcopy_pb2.CreateDropCopySubscriptionRequest | None = None,
    *,
    participant_id: str | None = None,
    timeout_s: float = 20.0,
) -> Any:
    """Open CreateDropCopySubscription (firm-level: no ``x-participant-id`` unless given)."""
    stub = dropcopy_pb2_grpc.DropCopyAPIStub(channel)
    return stub.CreateDropCopySubscription(
        request or dropcopy_pb2.CreateDropCopySubscriptionRequest(),
        metadata=stream_metadata(token, participant_id),
        timeout=timeout_s,
    )


def search(
    endpoints: VenueEndpoints,
    token: str | None,
    kind: str,
    body: dict[str, Any],
    participant_id: str | None = "",
) -> requests.Response:
    """POST a report search (``kind`` is ``executions`` or ``orders``)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    participant = endpoints.participant_id if participant_id == "" else participant_id
    if participant is not None:
        headers["x-participant-id"] = participant
    return requests.post(
        f"{endpoints.rest_url}/v1/report/{kind}/search", json=body, headers=headers, timeout=HTTP_TIMEOUT_S
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, interval_s: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


class VirtualClock:
    """A clock that moves only when told (thread-safe): pass it as a simulator ``clock``."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward; return the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


def virtual_exchange(clock: VirtualClock, seed: int = 7) -> Exchange:
    """An exchange on the default accounts and symbols, stamped by ``clock``; drive it with ``advance``."""
    params = FlowParams(accounts=DEFAULT_ACCOUNTS, symbols=DEFAULT_SYMBOLS, id_prefix=f"SIM{seed}")
    return Exchange(OrderFlow(params, seed), Journal(), rate=0.0, clock=clock)


@pytest.fixture
def simulator_config() -> SimulatorConfig:
    """Fast heartbeats, paused flow (tests call ``advance``), no REST rate limit."""
    return SimulatorConfig(
        seed=7, rate=0.0, warmup_updates=60, heartbeat_interval_s=0.2, rest_rate_limit=False
    )


@pytest.fixture
def simulator(simulator_config: SimulatorConfig) -> Iterator[SimulatedVenue]:
    """A started in-process venue simulator."""
    with SimulatedVenue(simulator_config) as venue:
        yield venue


@pytest.fixture
def simulator_client_key(simulator: SimulatedVenue) -> bytes:
    """The private key PEM of a client registered with ``simulator``."""
    return simulator.generate_client_key()


@pytest.fixture
def simulator_token(simulator: SimulatedVenue, simulator_client_key: bytes) -> str:
    """An access token from ``simulator``'s token endpoint."""
    response = request_token(simulator.endpoints, make_assertion(simulator_client_key, simulator.endpoints))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
