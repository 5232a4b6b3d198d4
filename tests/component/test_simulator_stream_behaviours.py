"""Stream behaviours the venue docs leave open, over gRPC: openings, backlog, overflow, sessions, snapshots.

Each behaviour is set through the control endpoint, the in-process API or the start configuration the
``simulator`` command builds from its flags.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests

from connector._pb.polymarket.v1 import trading_pb2
from connector.commands import simulator as command
from connector.simulator import FaultSettings, SimulatedVenue, SimulatorConfig
from tests.simulator_fixtures import HTTP_TIMEOUT_S, make_assertion, open_stream, request_token, wait_until

_KIND = "event"


@pytest.fixture
def channel(simulator: SimulatedVenue) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(simulator.endpoints.grpc_target) as chan:
        yield chan


def control(venue: SimulatedVenue, changes: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{venue.endpoints.control_url}/faults", json=changes, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def subscribed(venue: SimulatedVenue, count: int = 1) -> None:
    wait_until(lambda: venue.stats()["subscriptions"] == count)


def sent_at(message: trading_pb2.CreateOrderSubscriptionResponse) -> datetime:
    return message.processed_sent_time.ToDatetime(tzinfo=UTC)


def venue_config(*flags: str) -> SimulatorConfig:
    """What ``pmx-connector simulator FLAGS`` would start, on a paused flow with fast heartbeats."""
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    base = ("--rate", "0", "--warmup-updates", "60", "--heartbeat-interval", "0.2", "--no-rest-rate-limit")
    return command.config_from_args(parser.parse_args([*base, *flags]))


# ---------------------------------------------------------------------- openings


def test_heartbeat_first_set_over_the_control_endpoint(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    assert control(simulator, {"stream_opening": "heartbeat"})["stream_opening"] == "heartbeat"
    book = [order.id for order in simulator.open_orders()]
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    first, second = next(messages), next(messages)
    call.cancel()
    assert first.WhichOneof(_KIND) == "heartbeat"
    assert second.WhichOneof(_KIND) == "snapshot"
    assert [order.id for order in second.snapshot.orders] == book
    assert simulator.stats()["openings_heartbeat_total"] == 1


@pytest.mark.parametrize(
    "simulator_config", [venue_config("--stream-opening", "updates", "--opening-updates", "2")]
)
def test_updates_first_set_by_flags_then_the_snapshot_of_the_book_at_that_point(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    subscribed(simulator)
    first_two = simulator.advance(2)
    book = [order.id for order in simulator.open_orders()]
    third = simulator.advance(1)
    received = [next(messages) for _ in range(4)]
    call.cancel()
    assert [m.WhichOneof(_KIND) for m in received] == ["update", "update", "snapshot", "update"]
    assert [e.id for m in received[:2] for e in m.update.executions] == [
        e.id for u in first_two for e in u.executions
    ]
    assert [order.id for order in received[2].snapshot.orders] == book
    assert [e.id for e in received[3].update.executions] == [e.id for e in third[0].executions]


@pytest.mark.parametrize(
    "simulator_config",
    [venue_config("--stream-opening", "updates", "--opening-updates", "3", "--opening-wait", "0.4")],
)
def test_updates_first_on_a_quiet_venue_sends_the_snapshot_after_the_opening_wait(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    started = time.monotonic()
    call = open_stream(channel, simulator.endpoints, simulator_token)
    kinds = []
    for message in call:
        kinds.append(message.WhichOneof(_KIND))
        if kinds[-1] == "snapshot":
            break
    elapsed = time.monotonic() - started
    call.cancel()
    assert kinds[-1] == "snapshot" and set(kinds[:-1]) <= {"heartbeat"}
    assert 0.35 <= elapsed < 3.0


# ---------------------------------------------------------------------- a backlog behind a stall


def backlog_after_a_stall(
    venue: SimulatedVenue, token: str, channel: grpc.Channel, queueing: str
) -> tuple[list[trading_pb2.CreateOrderSubscriptionResponse], list[str], datetime]:
    """Stall the stream right after its snapshot, trade 5 updates meanwhile, return what follows."""
    venue.set_faults(heartbeat_queueing=queueing, stall_s=1.2, stall_after_messages=1)
    call = open_stream(channel, venue.endpoints, token)
    messages = iter(call)
    assert next(messages).HasField("snapshot")
    wait_until(lambda: venue.stats()["stalls_total"] == 1)
    produced = [e.id for u in venue.advance(5) for e in u.executions]
    traded_at = datetime.now(UTC)
    received: list[trading_pb2.CreateOrderSubscriptionResponse] = []
    while sum(len(m.update.executions) for m in received) < len(produced):
        received.append(next(messages))
    after = next(messages)
    call.cancel()
    assert after.HasField("heartbeat"), "then the next heartbeat (queued: one due during the stall)"
    assert sent_at(after) > traded_at
    return received, produced, traded_at


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(seed=7, rate=0.0, heartbeat_interval_s=0.5, rest_rate_limit=False)]
)
def test_a_jumping_heartbeat_stamped_at_send_goes_ahead_of_older_queued_fills(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    received, produced, traded_at = backlog_after_a_stall(simulator, simulator_token, channel, "jump")
    assert [m.WhichOneof(_KIND) for m in received] == ["heartbeat"] + ["update"] * 5
    assert sent_at(received[0]) > traded_at, "stamped when sent, after the queued fills happened"
    assert [e.id for m in received[1:] for e in m.update.executions] == produced
    assert simulator.stats()["heartbeats_jumped_total"] == 1


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(seed=7, rate=0.0, heartbeat_interval_s=0.5, rest_rate_limit=False)]
)
def test_a_queued_heartbeat_waits_behind_the_backlog(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    received, produced, traded_at = backlog_after_a_stall(simulator, simulator_token, channel, "queue")
    kinds = [m.WhichOneof(_KIND) for m in received]
    assert kinds == ["update"] * 5, "the heartbeats due during the stall were queued behind the fills"
    assert [e.id for m in received for e in m.update.executions] == produced
    assert simulator.stats()["heartbeats_jumped_total"] == 0
    assert all(sent_at(m) > traded_at for m in received)


# ---------------------------------------------------------------------- overflow under real backpressure


@pytest.mark.parametrize("simulator_config", [venue_config("--send-queue-capacity", "50")])
def test_a_client_that_does_not_read_fills_the_queue_and_the_venue_ends_the_stream(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    # No BDP probing: the client's HTTP/2 window stays at its initial size, so backpressure comes soon.
    with grpc.insecure_channel(
        simulator.endpoints.grpc_target, options=[("grpc.http2.bdp_probe", 0)]
    ) as chan:
        call = open_stream(chan, simulator.endpoints, simulator_token)
        messages = iter(call)
        assert next(messages).HasField("snapshot")
        produced = [e.id for u in simulator.advance(1500) for e in u.executions]  # the venue keeps trading
        received: list[str] = []
        with pytest.raises(grpc.RpcError) as caught:
            for message in messages:
                received.extend(e.id for e in message.update.executions)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "send queue of 50 messages is full" in (caught.value.details() or "")
    assert 0 < len(received) < len(produced)
    assert received == produced[: len(received)], "what arrived is a prefix: the rest was dropped"
    wait_until(lambda: simulator.stats()["streams_overflowed_total"] == 1)
    assert simulator.stats()["send_queue_max"] == 50


@pytest.mark.parametrize(
    "simulator_config", [venue_config("--send-queue-capacity", "5", "--queue-overflow-status", "unavailable")]
)
def test_the_overflow_status_is_configurable(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    simulator.set_faults(stall_s=0.6, stall_after_messages=1)
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    assert next(messages).HasField("snapshot")
    wait_until(lambda: simulator.stats()["stalls_total"] == 1)
    simulator.advance(10)
    with pytest.raises(grpc.RpcError) as caught:
        next(messages)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------------- sessions and snapshots mid-stream


def test_a_new_session_id_mid_stream_on_demand(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    first = next(messages)
    control(simulator, {"new_session": True})
    simulator.advance(1)
    later = next(messages)
    call.cancel()
    assert later.session_id != first.session_id
    assert later.session_id.startswith(first.session_id)
    assert simulator.stats()["sessions_changed_total"] == 1


@pytest.mark.parametrize("simulator_config", [venue_config("--new-session-every", "0.3")])
def test_new_session_ids_every_few_tenths_of_a_second(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(channel, simulator.endpoints, simulator_token)
    sessions = {next(iter(call)).session_id}
    deadline = time.monotonic() + 1.0
    for message in call:
        sessions.add(message.session_id)
        if time.monotonic() > deadline:
            break
    call.cancel()
    assert 2 <= len(sessions) <= 1 + 1.0 / 0.15 + 1


def test_a_second_snapshot_mid_stream_on_demand_shows_the_book_then(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(channel, simulator.endpoints, simulator_token)
    messages = iter(call)
    assert next(messages).HasField("snapshot")
    produced = simulator.advance(3)
    updates = []
    while len(updates) < 3:
        message = next(messages)
        if message.HasField("update"):
            updates.append(message)
    book = [order.id for order in simulator.open_orders()]
    control(simulator, {"send_snapshot": True})
    message = next(messages)
    while message.HasField("heartbeat"):
        message = next(messages)
    call.cancel()
    assert [e.id for m in updates for e in m.update.executions] == [
        e.id for u in produced for e in u.executions
    ]
    assert message.HasField("snapshot")
    assert [order.id for order in message.snapshot.orders] == book
    assert simulator.stats()["mid_stream_snapshots_total"] == 1


@pytest.mark.parametrize("simulator_config", [venue_config("--snapshot-every", "0.3")])
def test_periodic_snapshots_mid_stream(
    simulator: SimulatedVenue, simulator_token: str, channel: grpc.Channel
) -> None:
    call = open_stream(channel, simulator.endpoints, simulator_token)
    snapshots = 0
    deadline = time.monotonic() + 1.0
    for message in call:
        snapshots += message.HasField("snapshot")
        if time.monotonic() > deadline:
            break
    call.cancel()
    assert 2 <= snapshots <= 1 + 1.0 / 0.15 + 1


# ---------------------------------------------------------------------- hostile at random, with a seed


def openings_of(venue: SimulatedVenue, token: str, streams: int) -> list[str]:
    kinds = []
    with grpc.insecure_channel(venue.endpoints.grpc_target) as chan:
        for _ in range(streams):
            call = open_stream(chan, venue.endpoints, token)
            kinds.append(next(iter(call)).WhichOneof(_KIND))
            call.cancel()
            wait_until(lambda: venue.stats()["streams_open"] == 0)
    return kinds


@pytest.mark.parametrize(
    "simulator_config", [SimulatorConfig(seed=7, rate=200.0, heartbeat_interval_s=0.2, rest_rate_limit=False)]
)
def test_hostile_mode_with_a_seed_over_the_control_endpoint(
    simulator: SimulatedVenue, simulator_token: str
) -> None:
    settings = control(simulator, {"hostile": True, "fault_seed": 3})
    assert (
        settings
        == FaultSettings()
        .with_hostile()
        .with_changes({"fault_seed": 3, "rest_rate_limit_per_minute": 0})
        .to_json()
    )
    kinds = openings_of(simulator, simulator_token, 9)
    stats = simulator.stats()
    chosen = {
        "snapshot": stats["openings_snapshot_total"],
        "heartbeat": stats["openings_heartbeat_total"],
        "update": stats["openings_updates_total"],
    }
    assert sum(chosen.values()) == 9
    assert sum(1 for count in chosen.values() if count) >= 2, "several openings at random"
    assert all(chosen[kind] for kind in kinds), "the first messages follow the openings chosen"
    assert control(simulator, {"reset": True}) == simulator.baseline_faults().to_json()


# ---------------------------------------------------------------------- what was streamed


def test_the_journal_knows_what_was_ever_streamed(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    config = SimulatorConfig(
        seed=7,
        rate=0.0,
        warmup_updates=30,
        heartbeat_interval_s=0.2,
        journal_path=journal,
        journal_stream_sends=True,
    )
    with SimulatedVenue(config) as venue, grpc.insecure_channel(venue.endpoints.grpc_target) as chan:
        key = venue.generate_client_key()
        token = request_token(venue.endpoints, make_assertion(key, venue.endpoints)).json()["access_token"]
        before = [entry.execution.id for entry in venue.journal.executions()]
        call = open_stream(chan, venue.endpoints, token)
        messages = iter(call)
        subscribed(venue)
        produced = [e.id for u in venue.advance(4) for e in u.executions]
        kinds = []
        while "heartbeat" not in kinds or kinds.count("update") < 4:
            kinds.append(next(messages).WhichOneof(_KIND))
        call.cancel()
        assert all(venue.journal.was_streamed(i) for i in produced)
        assert not any(venue.journal.was_streamed(i) for i in before), "produced before the stream opened"
        assert venue.stats()["executions_streamed"] == len(produced)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    sends = [line for line in lines if line["kind"] == "stream_send"]
    assert [line["message"] for line in sends][: len(kinds)] == kinds
    assert [i for line in sends for i in line["execution_ids"]] == produced
    assert all(line["session_id"] and line["processed_sent_time"].endswith("Z") for line in sends)
    assert len([line for line in lines if line["kind"] == "execution"]) == len(before) + len(produced)
