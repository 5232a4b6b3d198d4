"""Behaviour settings: validation, the hostile preset, and the simulator command's flags that set them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from connector.commands import simulator as command
from connector.simulator.faults import HOSTILE, FaultSettings


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    command.add_arguments(parser)
    return parser.parse_args(list(flags))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"stream_opening": "sideways"}, "stream_opening"),
        ({"heartbeat_queueing": "never"}, "heartbeat_queueing"),
        ({"rest_result_order": "by_price"}, "rest_result_order"),
        ({"send_queue_capacity": 0}, "send_queue_capacity"),
        ({"queue_overflow_status": "NOPE"}, "NOPE"),
        ({"opening_updates": 0}, "opening_updates"),
        ({"rest_no_token_rate": 1.5}, "rest_no_token_rate"),
        ({"rest_default_page_size": 0}, "rest_default_page_size"),
        ({"rest_rate_limit_per_minute": -1}, "rest_rate_limit_per_minute"),
        ({"new_session_every_s": 0}, "new_session_every_s"),
        ({"rest_indexing_delay_s": "soon"}, "rest_indexing_delay_s"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        FaultSettings().with_changes(changes)


def test_choices_and_statuses_are_normalised() -> None:
    settings = FaultSettings().with_changes(
        {"stream_opening": "Heartbeat", "queue_overflow_status": "unavailable", "send_queue_capacity": None}
    )
    assert settings.stream_opening == "heartbeat"
    assert settings.queue_overflow_status == "UNAVAILABLE"
    assert settings.send_queue_capacity is None


def test_the_defaults_are_the_kind_venue_with_a_bounded_queue() -> None:
    settings = FaultSettings()
    assert (settings.stream_opening, settings.heartbeat_queueing, settings.rest_result_order) == (
        "snapshot",
        "jump",
        "oldest_first",
    )
    assert settings.send_queue_capacity == 100_000
    assert settings.rest_max_page_size == 1000
    assert settings.rest_rate_limit_per_minute == 12


def test_the_hostile_preset_randomises_every_variant_and_leaves_scheduled_faults_alone() -> None:
    hostile = FaultSettings().with_hostile()
    assert set(HOSTILE) <= {field.name for field in dataclasses.fields(FaultSettings)}
    assert (hostile.stream_opening, hostile.heartbeat_queueing, hostile.rest_result_order) == (
        "random",
        "random",
        "random",
    )
    assert hostile.send_queue_capacity is not None
    assert hostile.rest_indexing_delay_s > 0 and hostile.rest_no_token_rate > 0
    assert hostile.new_session_every_s is not None and hostile.snapshot_every_s is not None
    for untouched in ("end_stream_every_s", "stall_s", "refuse_streams_status", "rest_rate_limit_per_minute"):
        assert getattr(hostile, untouched) == getattr(FaultSettings(), untouched)


# ---------------------------------------------------------------------- the command's flags


def test_without_flags_the_command_starts_from_the_defaults() -> None:
    assert command.settings_from_args(parse()) == FaultSettings()


def test_every_setting_flag_sets_its_field() -> None:
    args = parse(
        "--stream-opening", "updates", "--opening-updates", "4", "--opening-wait", "0.5",
        "--heartbeat-queueing", "queue", "--send-queue-capacity", "50",
        "--queue-overflow-status", "unavailable",
        "--new-session-every", "7", "--snapshot-every", "9", "--rest-result-order", "shuffled",
        "--rest-indexing-delay", "1.5", "--rest-indexing-jitter", "0.5", "--rest-max-page-size", "200",
        "--rest-default-page-size", "20", "--rest-rate-limit-per-minute", "6",
        "--fault-rest-no-token-rate", "0.2",
        "--fault-seed", "42", "--fault-duplicate-rate", "0.1", "--fault-end-streams-on-token-expiry",
        "--fault-unknown-enum-value", "55",
    )  # fmt: skip
    settings = command.settings_from_args(args)
    assert settings == FaultSettings(
        stream_opening="updates",
        opening_updates=4,
        opening_wait_s=0.5,
        heartbeat_queueing="queue",
        send_queue_capacity=50,
        queue_overflow_status="UNAVAILABLE",
        new_session_every_s=7.0,
        snapshot_every_s=9.0,
        rest_result_order="shuffled",
        rest_indexing_delay_s=1.5,
        rest_indexing_jitter_s=0.5,
        rest_max_page_size=200,
        rest_default_page_size=20,
        rest_rate_limit_per_minute=6,
        rest_no_token_rate=0.2,
        fault_seed=42,
        duplicate_rate=0.1,
        end_streams_on_token_expiry=True,
        unknown_enum_value=55,
    )


def test_each_setting_has_one_flag() -> None:
    fields = [spec.field for spec in command.SETTING_FLAGS]
    assert len(fields) == len(set(fields))
    assert set(fields) == {field.name for field in dataclasses.fields(FaultSettings)} - {"token_lifetime_s"}


def test_hostile_then_the_explicit_flags_override_it() -> None:
    settings = command.settings_from_args(
        parse("--hostile", "--fault-seed", "9", "--stream-opening", "heartbeat")
    )
    assert settings == FaultSettings().with_hostile().with_changes(
        {"fault_seed": 9, "stream_opening": "heartbeat"}
    )


def test_send_queue_capacity_zero_means_unbounded() -> None:
    assert command.settings_from_args(parse("--send-queue-capacity", "0")).send_queue_capacity is None


def test_no_rest_rate_limit_reaches_the_config() -> None:
    config = command.config_from_args(parse("--no-rest-rate-limit", "--journal-stream-sends"))
    assert config.rest_rate_limit is False
    assert config.journal_stream_sends is True


@pytest.mark.parametrize(
    "flags",
    [
        ("--stream-opening", "sideways"),
        ("--heartbeat-queueing", "x"),
        ("--rest-result-order", "x"),
        ("--send-queue-capacity", "-1"),
        ("--fault-rest-no-token-rate", "2"),
        ("--queue-overflow-status", "NOPE"),
        ("--new-session-every", "0"),
    ],
)
def test_bad_flag_values_are_usage_errors(flags: tuple[str, ...]) -> None:
    with pytest.raises(argparse.ArgumentError, match=flags[0]):
        parse(*flags)
