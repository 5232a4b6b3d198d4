"""``pmx-connector check`` against the simulator and the embedded Kafka: a ✓/✗ line per step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.cli import main
from connector.commands.demo import settings_for_simulator
from connector.config import Settings
from connector.embedded import EmbeddedKafka
from connector.kafka.topics import topic_names
from connector.simulator import SimulatedVenue


@pytest.fixture
def setup(simulator: SimulatedVenue, embedded_kafka: EmbeddedKafka, tmp_path: Path) -> dict[str, Any]:
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(simulator.generate_client_key())
    document = settings_for_simulator(simulator.endpoints, embedded_kafka.bootstrap_servers, key_file)
    for topic in topic_names(Settings.model_validate(document)).values():
        embedded_kafka.create_topic(topic, partitions=1, replication_factor=1)
    return {"document": document, "tmp": tmp_path}


def run_check(setup: dict[str, Any], capsys: pytest.CaptureFixture[str], **changes: Any) -> tuple[int, str]:
    document = json.loads(json.dumps(setup["document"]))
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        document[section][key] = value
    path = setup["tmp"] / "config.yaml"
    path.write_text(json.dumps(document))
    code = main(["check", "--config", str(path)])
    return code, capsys.readouterr().out


def test_everything_passes(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(setup, capsys)
    assert code == 0, out
    assert out.count("✓") == 5 and "✗" not in out
    assert "sent a snapshot of" in out and "has all 6 topics" in out


def test_a_key_the_venue_does_not_know(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = setup["tmp"] / "stranger.pem"
    stranger.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    code, out = run_check(setup, capsys, auth__private_key_file=str(stranger))
    assert code == 1
    assert "✗ token: token endpoint refused client 'pmx-sim-client': invalid_client" in out
    assert "- venue stream: skipped" in out


def test_a_client_the_token_endpoint_refuses(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(setup, capsys, auth__client_id="nobody")
    assert code == 1
    assert "✗ token: token endpoint refused client 'nobody': invalid_client" in out


def test_a_wrong_bootstrap_server(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(setup, capsys, kafka__bootstrap_servers="127.0.0.1:1")
    assert code == 1
    assert "✓ venue" in out
    assert "✗ kafka: cannot reach Kafka at 127.0.0.1:1" in out


def test_missing_topics(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_check(setup, capsys, kafka__topic_prefix="other")
    assert code == 1
    assert "✗ kafka: topics missing: other.orders.executions" in out


def test_bad_settings_exit_2(setup: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    code = run_check(setup, capsys, kafka__partitions="six")[0]
    assert code == 2


def test_drop_copy_is_checked_when_it_is_a_source(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(setup, capsys, venue__sources=["order_stream", "drop_copy"])
    assert code == 0, out
    assert out.count("✓") == 6 and "accepted the drop copy subscription" in out


def test_drop_copy_alone_skips_the_order_stream_and_a_bad_firm_is_named(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_check(setup, capsys, venue__sources=["drop_copy"], venue__drop_copy_firms=["OTHER-FIRM"])
    assert code == 1, out
    assert "venue stream" not in out
    assert "✗ drop copy stream: " in out and "PERMISSION_DENIED" in out, out
    assert "- kafka: skipped" in out
