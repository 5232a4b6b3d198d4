"""The simulator's Drop Copy stream seen by a plain grpcio client: live, resume, refusals, cap, journal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import pytest

from connector._pb.polymarket.v1 import dropcopy_pb2
from connector.simulator import SimulatedVenue, SimulatorConfig
from connector.simulator.dropcopy import ResumeTokens
from tests.simulator_fixtures import open_dropcopy, open_stream, wait_until

Request = dropcopy_pb2.CreateDropCopySubscriptionRequest


@pytest.fixture
def simulator_config(tmp_path: Path) -> SimulatorConfig:
    return SimulatorConfig(
        seed=7,
        rate=0.0,
        warmup_updates=40,
        heartbeat_interval_s=0.2,
        rest_rate_limit=False,
        firm_users=2,
        firm_flow_ratio=1.0,
        journal_path=tmp_path / "journal.jsonl",
        journal_dropcopy=True,
    )


@pytest.fixture
def channel(simulator: SimulatedVenue) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(simulator.endpoints.grpc_target) as chan:
        yield chan


def joined(venue: SimulatedVenue, subscriptions: int = 1) -> None:
    wait_until(lambda: venue.stats()["firm_subscriptions"] == subscriptions)


def read_until(call: Any, position: int) -> list[dropcopy_pb2.CreateDropCopySubscriptionResponse]:
    """Read responses until one's resume token reaches ``position``."""
    batches = []
    for response in call:
        batches.append(response)
        if ResumeTokens.position_of(response.resume_token) >= position:
            return batches
    pytest.fail("the stream ended early")


def ids(batches: list[dropcopy_pb2.CreateDropCopySubscriptionResponse]) -> list[str]:
    return [execution.id for batch in batches for execution in batch.executions]


def test_live_start_sends_every_firm_execution_after_joining(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    head = len(simulator.firm_executions())
    call = open_dropcopy(channel, simulator_token)
    joined(simulator)
    simulator.advance(15)
    firm = simulator.firm_executions()
    batches = read_until(call, len(firm))
    call.cancel()
    assert ids(batches) == [entry.execution.id for entry in firm[head:]]
    participants = {entry.participant for entry in firm[head:]}
    assert simulator.config.participant_id in participants and len(participants) == 3
    positions = [ResumeTokens.position_of(batch.resume_token) for batch in batches]
    assert positions == sorted(positions) and positions[-1] == len(firm)


def test_the_order_stream_shows_only_the_configured_users_orders(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    me = simulator.config.participant_id
    assert len(simulator.participants) == 3
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    snapshot = next(messages)
    assert {order.participant for order in snapshot.snapshot.orders} == {me}
    produced = simulator.advance(10)
    expected = [e.id for u in produced for e in u.executions]
    seen: list[str] = []
    while len(seen) < len(expected):
        message = next(messages)
        if message.WhichOneof("event") == "update":
            assert {e.order.participant for e in message.update.executions} <= {me}
            seen.extend(e.id for e in message.update.executions)
    call.cancel()
    assert seen == expected
    assert {entry.execution.order.participant for entry in simulator.journal.executions()} == {me}
    others = [e for e in simulator.firm_executions() if e.participant != me]
    assert others, "the other users traded too"


def test_resume_from_a_token_replays_just_after_it(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    first = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    firm = simulator.firm_executions()
    batches = read_until(first, len(firm))
    first.cancel()
    middle = batches[len(batches) // 2]
    token, position = middle.resume_token, ResumeTokens.position_of(middle.resume_token)
    simulator.advance(10)  # the venue trades while we are away
    firm = simulator.firm_executions()
    again = open_dropcopy(channel, simulator_token, Request(resume_token=token))
    replayed = read_until(again, len(firm))
    again.cancel()
    assert ids(replayed) == [entry.execution.id for entry in firm[position:]], (
        "nothing missing, nothing twice"
    )
    stats = simulator.stats()
    assert stats["dropcopy_resumed_by_token_total"] == 1
    assert stats["dropcopy_resent_total"] == 0


def test_resume_resends_the_configured_executions_before_the_token(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(dropcopy_resend_on_resume=3, dropcopy_batch_size=5)
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    batches = read_until(call, 20)
    call.cancel()
    token = batches[-1].resume_token
    position = ResumeTokens.position_of(token)
    firm = simulator.firm_executions()
    again = open_dropcopy(channel, simulator_token, Request(resume_token=token))
    replayed = read_until(again, len(firm))
    again.cancel()
    assert ids(replayed) == [entry.execution.id for entry in firm[position - 3 :]]
    assert simulator.stats()["dropcopy_resent_total"] == 3
    assert all(len(batch.executions) <= 5 for batch in replayed)


def test_duplicates_within_a_stream_only_resend_what_was_sent(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(duplicate_rate=1.0, stream_faults_apply_to="dropcopy")
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    firm = simulator.firm_executions()
    batches = read_until(call, len(firm))
    call.cancel()
    seen: set[str] = set()
    distinct: list[str] = []
    for batch in batches:
        for execution in batch.executions:
            if execution.id not in seen:
                seen.add(execution.id)
                distinct.append(execution.id)
    assert distinct == [entry.execution.id for entry in firm]
    assert len(ids(batches)) > len(distinct), "duplicates were sent"
    positions = [ResumeTokens.position_of(batch.resume_token) for batch in batches]
    assert positions == sorted(positions), "a token never moves backwards"
    kinds = {d.batch for d in simulator.journal.dropcopy_deliveries()}
    assert kinds == {"replay", "duplicate"}


def test_resume_time_replays_from_that_time(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    firm = simulator.firm_executions()
    moment = firm[len(firm) // 2].execution.transact_time
    expected = [e.execution.id for e in firm if e.execution.transact_time.ToDatetime() >= moment.ToDatetime()]
    call = open_dropcopy(channel, simulator_token, Request(resume_time=moment))
    batches = read_until(call, len(firm))
    call.cancel()
    assert ids(batches) == expected
    assert simulator.stats()["dropcopy_resumed_by_time_total"] == 1


def test_replay_is_paced(simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel) -> None:
    simulator.set_faults(dropcopy_replay_rate=1000.0, dropcopy_batch_size=10)
    firm = simulator.firm_executions()
    started = time.monotonic()
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    read_until(call, len(firm))
    call.cancel()
    assert time.monotonic() - started >= 0.8 * (len(firm) - 10) / 1000.0


def refusal(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        next(iter(call))
    return caught.value


def test_unknown_and_expired_tokens_are_refused_with_the_configured_status(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    error = refusal(open_dropcopy(channel, simulator_token, Request(resume_token=b"not-ours")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    simulator.set_faults(dropcopy_unknown_token_status="not_found")
    error = refusal(open_dropcopy(channel, simulator_token, Request(resume_token=b"not-ours")))
    assert error.code() == grpc.StatusCode.NOT_FOUND

    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    token = next(iter(call)).resume_token
    call.cancel()
    simulator.set_faults(expire_dropcopy_tokens=True)
    error = refusal(open_dropcopy(channel, simulator_token, Request(resume_token=token)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expired" in (error.details() or "")

    simulator.set_faults(dropcopy_token_lifetime_s=0.05, dropcopy_expired_token_status="FAILED_PRECONDITION")
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    token = next(iter(call)).resume_token
    call.cancel()
    time.sleep(0.1)
    error = refusal(open_dropcopy(channel, simulator_token, Request(resume_token=token)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert simulator.stats()["dropcopy_tokens_refused_total"] == 4


def test_missing_scope_or_another_firm_is_refused(simulator: SimulatedVenue, channel: grpc.Channel) -> None:
    orders_only = simulator.issue_token(scopes=["read:orders", "read:reports"])
    error = refusal(open_dropcopy(channel, orders_only))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == "permission denied: missing required scope read:dropcopy"
    token = simulator.issue_token()
    error = refusal(open_dropcopy(channel, token, Request(firms=["OTHER"])))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = refusal(open_dropcopy(channel, token, participant_id="firms/OTHER/users/x"))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = refusal(open_dropcopy(channel, None))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_stream_cap_is_shared_with_the_order_stream(channel: grpc.Channel) -> None:
    del channel  # the default venue is not used here
    config = SimulatorConfig(seed=3, rate=0.0, warmup_updates=10, heartbeat_interval_s=0.2, stream_limit=3)
    with SimulatedVenue(config) as venue, grpc.insecure_channel(venue.endpoints.grpc_target) as chan:
        token = venue.issue_token()
        calls = [open_stream(chan, venue.endpoints, token) for _ in range(2)]
        calls.append(open_dropcopy(chan, token))
        wait_until(lambda: venue.stats()["streams_open_firm"] == 3)
        assert refusal(open_dropcopy(chan, token)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        order_call = open_stream(chan, venue.endpoints, token)
        assert refusal(order_call).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        calls[0].cancel()
        wait_until(lambda: venue.stats()["streams_open_firm"] == 2)
        again = open_dropcopy(chan, token)
        wait_until(lambda: venue.stats()["streams_open_firm"] == 3)
        for call in (*calls, again):
            call.cancel()


def test_stream_faults_can_aim_at_drop_copy_only(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(
        end_stream_after_messages=2, stream_faults_apply_to="dropcopy", dropcopy_batch_size=5
    )
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        received.extend(call)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(received) == 2
    orders = iter(open_stream(channel, simulator.endpoints, simulator_token))
    kinds = [next(orders).WhichOneof("event") for _ in range(3)]
    assert kinds == ["snapshot", "heartbeat", "heartbeat"], "the order stream goes on"


def test_the_journal_records_each_delivery_with_its_token_position(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel, tmp_path: Path
) -> None:
    call = open_dropcopy(channel, simulator_token, Request(resume_time={"seconds": 0}))
    firm = simulator.firm_executions()
    batches = read_until(call, len(firm))
    call.cancel()
    deliveries = simulator.journal.dropcopy_deliveries()
    assert [d.execution_ids for d in deliveries] == [tuple(e.id for e in b.executions) for b in batches]
    assert [d.token_position for d in deliveries] == [
        ResumeTokens.position_of(b.resume_token) for b in batches
    ]
    delivered = {i for d in deliveries for i in d.execution_ids}
    assert delivered == {entry.execution.id for entry in firm}, "nothing missing"
    assert all(d.sent_at.tzinfo is UTC for d in deliveries)
    simulator.stop()
    lines = [json.loads(line) for line in (tmp_path / "journal.jsonl").read_text().splitlines()]
    firm_lines = [line for line in lines if line["kind"] == "firm_execution"]
    assert [line["position"] for line in firm_lines] == list(range(1, len(firm) + 1))
    assert {line["participant"] for line in firm_lines} == set(simulator.participants)
    sends = [line for line in lines if line["kind"] == "dropcopy_send"]
    assert [line["token_position"] for line in sends] == [d.token_position for d in deliveries]
    assert [line["execution_id"] for line in lines if line["kind"] == "execution"] == [
        entry.execution.id for entry in simulator.journal.executions()
    ]
