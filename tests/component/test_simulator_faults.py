"""Each simulator fault does what its setting says, set in-process, by CLI-equivalent config or over HTTP."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import requests
from google.protobuf import unknown_fields

from connector._pb.polymarket.v1 import enums_pb2, trading_pb2
from connector.simulator import FaultSettings, SimulatedVenue, SimulatorConfig
from connector.simulator.stream_behaviour import UNKNOWN_FIELD_NUMBER
from tests.simulator_fixtures import (
    HTTP_TIMEOUT_S,
    make_assertion,
    open_stream,
    request_token,
    search,
    wait_until,
)


@pytest.fixture
def channel(simulator: SimulatedVenue) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(simulator.endpoints.grpc_target) as chan:
        yield chan


def control(venue: SimulatedVenue, changes: dict[str, Any]) -> requests.Response:
    return requests.post(f"{venue.endpoints.control_url}/faults", json=changes, timeout=HTTP_TIMEOUT_S)


def drain_until_error(messages: Iterator[Any], limit: int = 10_000) -> tuple[list[Any], grpc.RpcError]:
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for message in messages:
            received.append(message)
            assert len(received) < limit
    return received, caught.value


# ---------------------------------------------------------------------- control endpoint


def test_control_endpoint_reads_changes_and_resets_faults(simulator: SimulatedVenue) -> None:
    url = f"{simulator.endpoints.control_url}/faults"
    assert requests.get(url, timeout=HTTP_TIMEOUT_S).json() == simulator.baseline_faults().to_json()
    changed = control(simulator, {"duplicate_rate": 0.5, "end_stream_status": "internal", "stall_s": 2})
    assert changed.status_code == 200
    assert changed.json()["duplicate_rate"] == 0.5
    assert changed.json()["end_stream_status"] == "INTERNAL"
    assert simulator.faults.stall_s == 2.0
    assert requests.get(url, timeout=HTTP_TIMEOUT_S).json()["duplicate_rate"] == 0.5
    for bad in ({"no_such_fault": 1}, {"duplicate_rate": 2}, {"end_stream_status": "NOPE"}, {"stall_s": "x"}):
        response = control(simulator, bad)
        assert response.status_code == 400
        assert response.json()["error"]
    assert control(simulator, {"reset": True}).json() == simulator.baseline_faults().to_json()
    assert simulator.baseline_faults() == FaultSettings(rest_rate_limit_per_minute=0)  # the fixture's


def test_control_endpoint_is_loopback_only(simulator: SimulatedVenue) -> None:
    handle = (
        simulator._handle_http
    )  # the transport-free entry point; a remote client cannot be faked over TCP
    refused = handle("GET", "/control/stats", {}, b"", "10.1.2.3")
    assert refused.status == 403
    assert handle("GET", "/control/stats", {}, b"", "127.0.0.1").status == 200


def test_control_stats_count_what_happened(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    before = requests.get(f"{simulator.endpoints.control_url}/stats", timeout=HTTP_TIMEOUT_S).json()
    call = open_stream(channel, simulator.endpoints, simulator_token)
    next(iter(call))
    simulator.advance(10)
    stats = requests.get(f"{simulator.endpoints.control_url}/stats", timeout=HTTP_TIMEOUT_S).json()
    assert stats["executions_produced"] > before["executions_produced"]
    assert stats["streams_open"] == 1
    assert stats["streams_opened_total"] == 1
    assert stats["tokens_issued_total"] >= 1
    call.cancel()
    wait_until(lambda: simulator.stats()["streams_open"] == 0)


# ---------------------------------------------------------------------- stream faults


def test_end_stream_after_n_messages_with_chosen_status(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(end_stream_after_messages=4, end_stream_status="INTERNAL")
    received, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    assert len(received) == 4
    assert error.code() == grpc.StatusCode.INTERNAL
    assert simulator.stats()["streams_ended_by_fault_total"] == 1


def test_end_stream_every_t_seconds(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    control(simulator, {"end_stream_every_s": 0.6})
    started = time.monotonic()
    received, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    elapsed = time.monotonic() - started
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert 0.55 <= elapsed < 3.0
    assert [m.WhichOneof("event") for m in received][:2] == ["snapshot", "heartbeat"]


def test_stall_sends_nothing_not_even_heartbeats(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(stall_s=1.0, stall_after_messages=2)
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    arrivals = []
    for _ in range(5):
        next(messages)
        arrivals.append(time.monotonic())
    call.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert gaps[0] < 0.5  # snapshot, then the first heartbeat (interval 0.2 s)
    assert gaps[1] >= 0.95  # the stall: nothing for a second, heartbeats included
    assert all(gap < 0.5 for gap in gaps[2:])
    assert simulator.stats()["stalls_total"] == 1


def test_refuse_new_streams_with_chosen_status(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    control(simulator, {"refuse_streams_status": "UNAVAILABLE"})
    _, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    control(simulator, {"refuse_streams_status": "RESOURCE_EXHAUSTED"})
    _, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    control(simulator, {"refuse_streams_status": None})
    assert next(iter(open_stream(channel, simulator.endpoints, simulator_token))).HasField("snapshot")


def test_expire_issued_tokens_ends_streams_and_refuses_the_old_token(
    simulator: SimulatedVenue, simulator_token: str, simulator_client_key: bytes, channel: grpc.Channel
) -> None:
    simulator.set_faults(end_streams_on_token_expiry=True)
    messages = iter(open_stream(channel, simulator.endpoints, simulator_token))
    assert next(messages).HasField("snapshot")
    assert control(simulator, {"expire_issued_tokens": True}).status_code == 200
    _, error = drain_until_error(messages)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    _, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert search(simulator.endpoints, simulator_token, "executions", {}).status_code == 401
    fresh = request_token(simulator.endpoints, make_assertion(simulator_client_key, simulator.endpoints))
    assert search(simulator.endpoints, fresh.json()["access_token"], "executions", {}).status_code == 200


def test_shorter_token_lifetime(simulator: SimulatedVenue, simulator_client_key: bytes) -> None:
    control(simulator, {"token_lifetime_s": 2})
    response = request_token(simulator.endpoints, make_assertion(simulator_client_key, simulator.endpoints))
    assert response.json()["expires_in"] == 2


def test_duplicates_resend_already_sent_executions(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(duplicate_rate=1.0)
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    next(messages)
    produced = simulator.advance(10)
    produced_ids = {e.id for u in produced for e in u.executions}
    counts: Counter[str] = Counter()
    while set(counts) < produced_ids:
        counts.update(e.id for e in next(messages).update.executions)
    call.cancel()
    assert set(counts) == produced_ids  # duplicates are of real, already sent executions only
    assert any(count > 1 for count in counts.values())
    assert simulator.stats()["duplicates_sent_total"] >= 1


def test_unknown_enum_numbers_on_the_stream_not_in_the_journal(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(unknown_enum_rate=1.0, unknown_enum_value=99)
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    next(messages)
    produced = simulator.advance(5)
    wanted = sum(len(u.executions) for u in produced)
    received: list[trading_pb2.Execution] = []
    while len(received) < wanted:
        received.extend(next(messages).update.executions)
    call.cancel()
    assert {e.type for e in received} == {99}
    assert all(e.type in enums_pb2.ExecutionType.values() for u in produced for e in u.executions)


def test_unknown_fields_are_appended(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(unknown_field_rate=1.0)
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    snapshot = next(messages)
    assert [f.field_number for f in unknown_fields.UnknownFieldSet(snapshot)] == [UNKNOWN_FIELD_NUMBER]
    assert [f.field_number for f in unknown_fields.UnknownFieldSet(snapshot.snapshot.orders[0])] == [
        UNKNOWN_FIELD_NUMBER
    ]
    heartbeat = next(messages)
    assert heartbeat.HasField("heartbeat")
    assert [f.field_number for f in unknown_fields.UnknownFieldSet(heartbeat)] == [UNKNOWN_FIELD_NUMBER]
    call.cancel()


def test_extra_synthetic_snapshot_orders(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    real = len(simulator.open_orders())
    simulator.set_faults(extra_snapshot_orders=2500)
    request = trading_pb2.CreateOrderSubscriptionRequest(snapshot_only=True)
    snapshot = next(iter(open_stream(channel, simulator.endpoints, simulator_token, request))).snapshot
    assert len(snapshot.orders) == real + 2500
    assert len({o.id for o in snapshot.orders}) == len(snapshot.orders)
    assert all(o.state == enums_pb2.ORDER_STATE_NEW for o in snapshot.orders[real:])


def test_oversize_snapshot_exceeds_the_default_client_message_limit(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(extra_snapshot_orders=60_000)  # about 8 MB, over grpcio's default 4 MB receive limit
    request = trading_pb2.CreateOrderSubscriptionRequest(snapshot_only=True)
    _, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token, request)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---------------------------------------------------------------------- REST faults


def test_rest_429_fault(simulator: SimulatedVenue, simulator_token: str) -> None:
    control(simulator, {"rest_429_rate": 1.0})
    response = search(simulator.endpoints, simulator_token, "executions", {})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "1"
    assert response.json()["code"] == 8
    control(simulator, {"rest_429_rate": 0.0})
    assert search(simulator.endpoints, simulator_token, "executions", {}).status_code == 200


@pytest.mark.parametrize("status", [500, 503])
def test_rest_5xx_fault(simulator: SimulatedVenue, simulator_token: str, status: int) -> None:
    control(simulator, {"rest_5xx_rate": 1.0, "rest_5xx_status": status})
    response = search(simulator.endpoints, simulator_token, "orders", {})
    assert response.status_code == status
    assert response.json()["message"].startswith("simulated fault")


@pytest.mark.parametrize(
    "simulator_config",
    [SimulatorConfig(rate=0.0, heartbeat_interval_s=0.2, faults=FaultSettings(end_stream_after_messages=2))],
)
def test_faults_can_be_set_at_start(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    received, error = drain_until_error(iter(open_stream(channel, simulator.endpoints, simulator_token)))
    assert len(received) == 2
    assert error.code() == grpc.StatusCode.UNAVAILABLE
