"""The simulator's gRPC order stream seen by a plain grpcio client: shapes, consistency, error statuses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from connector._pb.polymarket.v1 import trading_pb2
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.simulator.order_flow import TERMINAL_STATES
from tests.simulator_fixtures import open_stream


@pytest.fixture
def channel(simulator: SimulatedVenue) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(simulator.endpoints.grpc_target) as chan:
        yield chan


def test_stream_sends_snapshot_then_updates_and_heartbeats(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    open_ids = [order.id for order in simulator.open_orders()]
    assert open_ids, "the warm-up leaves open orders"
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    first = next(messages)
    assert first.WhichOneof("event") == "snapshot"
    assert [order.id for order in first.snapshot.orders] == open_ids
    assert all(order.state not in TERMINAL_STATES for order in first.snapshot.orders)
    session = first.session_id
    assert session
    sent = first.processed_sent_time.ToDatetime(tzinfo=UTC)
    assert abs(datetime.now(UTC) - sent) < timedelta(seconds=5)

    produced = simulator.advance(5)
    produced_ids = [e.id for u in produced for e in u.executions]
    seen_ids: list[str] = []
    heartbeats = 0
    deadline = time.monotonic() + 10
    while (len(seen_ids) < len(produced_ids) or heartbeats < 2) and time.monotonic() < deadline:
        message = next(messages)
        assert message.session_id == session
        assert message.HasField("processed_sent_time")
        kind = message.WhichOneof("event")
        if kind == "heartbeat":
            heartbeats += 1
        else:
            assert kind == "update"
            assert message.update.executions or message.update.HasField("cancel_reject")
            seen_ids.extend(e.id for e in message.update.executions)
    call.cancel()
    assert seen_ids == produced_ids
    assert heartbeats >= 2


def test_each_stream_has_its_own_session_id(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    request = trading_pb2.CreateOrderSubscriptionRequest(snapshot_only=True)
    sessions = {
        next(iter(open_stream(channel, simulator.endpoints, simulator_token, request))).session_id
        for _ in range(3)
    }
    assert len(sessions) == 3


def test_snapshot_only_ends_with_ok_after_the_snapshot(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(
        channel,
        simulator.endpoints,
        simulator_token,
        trading_pb2.CreateOrderSubscriptionRequest(snapshot_only=True),
    )
    messages = list(call)
    assert [m.WhichOneof("event") for m in messages] == ["snapshot"]
    assert call.code() == grpc.StatusCode.OK


def test_empty_snapshot_is_still_sent(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    request = trading_pb2.CreateOrderSubscriptionRequest(symbols=["NO-SUCH-SYMBOL"], snapshot_only=True)
    messages = list(open_stream(channel, simulator.endpoints, simulator_token, request))
    assert len(messages) == 1
    assert messages[0].HasField("snapshot")
    assert len(messages[0].snapshot.orders) == 0


def test_filters_apply_to_snapshot_and_updates(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    symbol = simulator.config.symbols[0]
    account = simulator.config.accounts[1]
    request = trading_pb2.CreateOrderSubscriptionRequest(symbols=[symbol], accounts=[account])
    call = open_stream(channel, simulator.endpoints, simulator_token, request)
    messages = iter(call)
    snapshot = next(messages).snapshot
    expected = [o.id for o in simulator.open_orders() if o.symbol == symbol and o.account == account]
    assert [o.id for o in snapshot.orders] == expected
    produced = simulator.advance(400)
    wanted = [
        e.id
        for u in produced
        for e in u.executions
        if e.order.symbol == symbol and e.order.account == account
    ]
    assert wanted
    seen: list[str] = []
    while len(seen) < len(wanted):
        message = next(messages)
        for execution in message.update.executions:
            assert (execution.order.symbol, execution.order.account) == (symbol, account)
            seen.append(execution.id)
        if message.update.HasField("cancel_reject"):
            assert message.update.cancel_reject.order_id
    call.cancel()
    assert seen == wanted


@pytest.mark.parametrize("simulator_config", [SimulatorConfig(seed=3, rate=3000.0, heartbeat_interval_s=1.0)])
def test_snapshot_and_update_feed_are_consistent_under_load(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    """No execution is lost or doubled between the snapshot and the first update."""
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    snapshot_ids = {o.id for o in next(messages).snapshot.orders}
    received: list[str] = []
    while len(received) < 500:
        received.extend(e.id for e in next(messages).update.executions)
    call.cancel()
    journal = [entry.execution for entry in simulator.journal.executions()]
    ids = [e.id for e in journal]
    start = ids.index(received[0])
    assert ids[start : start + len(received)] == received
    latest: dict[str, trading_pb2.Execution] = {}
    for execution in journal[:start]:
        latest[execution.order.id] = execution
    open_before = {oid for oid, e in latest.items() if e.order.state not in TERMINAL_STATES}
    assert snapshot_ids == open_before


def test_the_venue_trades_while_no_stream_is_connected() -> None:
    with SimulatedVenue(SimulatorConfig(rate=500.0, warmup_updates=0)) as venue:
        deadline = time.monotonic() + 10
        while venue.stats()["executions_produced"] < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert venue.stats()["executions_produced"] >= 50
        assert venue.stats()["streams_opened_total"] == 0


# ---------------------------------------------------------------------- error statuses


def first_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        for _ in call:  # type: ignore[attr-defined]
            pass
    return caught.value


def test_missing_token_is_unauthenticated(simulator: SimulatedVenue, channel: grpc.Channel) -> None:
    error = first_error(open_stream(channel, simulator.endpoints, None))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_expired_token_is_unauthenticated(simulator: SimulatedVenue, channel: grpc.Channel) -> None:
    expired = simulator.issue_token(lifetime_s=-5)
    error = first_error(open_stream(channel, simulator.endpoints, expired))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in error.details()


def test_forged_token_is_unauthenticated(simulator: SimulatedVenue, channel: grpc.Channel) -> None:
    error = first_error(open_stream(channel, simulator.endpoints, "not-a-jwt"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_missing_scope_is_permission_denied(simulator: SimulatedVenue, channel: grpc.Channel) -> None:
    token = simulator.issue_token(scopes=["read:reports"])
    error = first_error(open_stream(channel, simulator.endpoints, token))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "permission denied: missing required scope read:orders"


@pytest.mark.parametrize("participant", [None, "firms/OTHER/users/connector"])
def test_bad_participant_is_permission_denied(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel, participant: str | None
) -> None:
    error = first_error(
        open_stream(channel, simulator.endpoints, simulator_token, participant_id=participant)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "request_",
    [
        trading_pb2.CreateOrderSubscriptionRequest(symbols=[""]),
        trading_pb2.CreateOrderSubscriptionRequest(accounts=["A1"]),
        trading_pb2.CreateOrderSubscriptionRequest(accounts=["firms/SIM/users/x"]),
    ],
    ids=["empty-symbol", "bare-account", "not-an-account"],
)
def test_bad_filter_is_invalid_argument(
    simulator: SimulatedVenue,
    simulator_token: str,
    channel: grpc.Channel,
    request_: trading_pb2.CreateOrderSubscriptionRequest,
) -> None:
    error = first_error(open_stream(channel, simulator.endpoints, simulator_token, request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(rate=0.0, stream_limit=2, heartbeat_interval_s=0.2)]
)
def test_over_the_stream_limit_is_resource_exhausted(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    calls = [open_stream(channel, simulator.endpoints, simulator_token) for _ in range(2)]
    for call in calls:
        assert next(iter(call)).HasField("snapshot")
    error = first_error(open_stream(channel, simulator.endpoints, simulator_token))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    calls[0].cancel()
    # A freed slot can be taken again.
    deadline = time.monotonic() + 5
    while simulator.stats()["streams_open"] > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    again = open_stream(channel, simulator.endpoints, simulator_token)
    assert next(iter(again)).HasField("snapshot")
    again.cancel()
    calls[1].cancel()
