"""Settings: file + environment, validated once, one clear line per mistake."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector.config import load_settings
from connector.errors import ConfigError

VALID: dict[str, Any] = {
    "venue": {
        "grpc_target": "grpc-api.preprod.polymarketexchange.com:443",
        "rest_url": "https://api.preprod.polymarketexchange.com",
        "participant_id": "firms/Acme/users/connector",
        "symbols": [],
        "accounts": [],
    },
    "auth": {
        "token_url": "https://pmx-preprod.us.auth0.com/oauth/token",
        "client_id": "abc123",
        "private_key_file": "/var/run/secrets/pmx/private-key.pem",
        "audience": "https://api.preprod.polymarketexchange.com",
    },
    "kafka": {
        "bootstrap_servers": "kafka-0:9092,kafka-1:9092",
        "properties": {"security.protocol": "SASL_SSL"},
    },
}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def with_change(dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


DELETE = object()


def test_valid_file_gives_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, VALID), environ={})
    assert settings.kafka.topic_prefix == "pmx"
    assert settings.kafka.topic(settings.kafka.topics.executions) == "pmx.orders.executions"
    assert settings.http.listen == "0.0.0.0:9400"
    assert settings.connector.name == "pmx-connector"
    assert settings.venue.insecure is False
    assert settings.schema_registry.url is None
    assert settings.venue.heartbeat_timeout_s == 90.0


def test_environment_overrides_nest_with_double_underscore(tmp_path: Path) -> None:
    environ = {
        "PMX_CONNECTOR_KAFKA__BOOTSTRAP_SERVERS": "other:9092",
        "PMX_CONNECTOR_VENUE__SYMBOLS": "[a, b]",
        "PMX_CONNECTOR_CONNECTOR__HEARTBEAT_INTERVAL_S": "2.5",
        "pmx_connector_kafka__properties__sasl.password": "hunter2",
        "UNRELATED": "x",
    }
    settings = load_settings(write(tmp_path, VALID), environ=environ)
    assert settings.kafka.bootstrap_servers == "other:9092"
    assert settings.venue.symbols == ("a", "b")
    assert settings.connector.heartbeat_interval_s == 2.5
    password = settings.kafka.properties["sasl.password"]
    assert "hunter2" not in repr(settings) and "hunter2" not in str(password)


def test_environment_alone_is_enough() -> None:
    environ = {}
    for section, values in VALID.items():
        for key, value in values.items():
            if not isinstance(value, (list, dict)):
                environ[f"PMX_CONNECTOR_{section.upper()}__{key.upper()}"] = str(value)
    settings = load_settings(None, environ=environ)
    assert settings.auth.client_id == "abc123"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            with_change("venue.grpc_targett", "x:1"),
            "venue.grpc_targett: unknown key; did you mean 'grpc_target'?",
        ),
        (with_change("kafka.bootstrap_servers", DELETE), "kafka.bootstrap_servers: required key is missing"),
        (with_change("venue.insecure", "perhaps"), "venue.insecure: Input should be a valid boolean"),
        (with_change("venue.grpc_target", "no-port"), "venue.grpc_target: must be host:port"),
        (with_change("venue.rest_url", "ftp://x"), "venue.rest_url: must be an http(s) URL"),
        (with_change("venue.participant_id", "Acme"), "venue.participant_id: String should match pattern"),
        (
            with_change("venue.heartbeat_timeout_s", 0),
            "venue.heartbeat_timeout_s: Input should be greater than 0",
        ),
        (with_change("kafka.partitions", "six"), "kafka.partitions: Input should be a valid integer"),
        (with_change("http.listen", "9400"), "http.listen: must be host:port"),
        (with_change("connector.name", "has space"), "connector.name: String should match pattern"),
        (
            with_change("auth.token_url", "pmx.auth0.com/oauth/token"),
            "auth.token_url: must be an http(s) URL",
        ),
        (with_change("schema_registry.subject_name_strategy", "x"), "schema_registry.subject_name_strategy:"),
        (with_change("kafak", {}), "kafak: unknown key; did you mean 'kafka'?"),
        (
            with_change("venue.insecure", True),
            "venue.insecure: plaintext is only allowed to loopback endpoints; venue.grpc_target is",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, data), environ={})
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_insecure_is_accepted_for_loopback(tmp_path: Path) -> None:
    data = with_change("venue.insecure", True)
    data["venue"]["grpc_target"] = "127.0.0.1:50051"
    data["venue"]["rest_url"] = "http://localhost:8080"
    data["auth"]["token_url"] = "http://[::1]:8080/oauth/token"
    assert load_settings(write(tmp_path, data), environ={}).venue.insecure


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("venue: [unclosed", "is not valid YAML at line 1"),
        ("- a\n- b\n", "must hold a mapping of sections"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_settings(write(tmp_path, text), environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*No such file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_secret_values_are_never_echoed(tmp_path: Path) -> None:
    data = with_change("kafka.properties", {"sasl.password": {"nested": "hunter2"}})
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, data), environ={})
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (with_change("kafka.bootstrap_servers", DELETE), "kafka.bootstrap_servers: required key is missing"),
        (with_change("venue.symbolz", ["a"]), "venue.symbolz: unknown key; did you mean 'symbols'?"),
        (with_change("http.listen", "everywhere"), "http.listen: must be host:port"),
        (with_change("venue.insecure", "yes please"), "venue.insecure: Input should be a valid boolean"),
    ],
)
def test_run_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any], expected: str
) -> None:
    from connector.cli import main

    code = main(["run", "--config", str(write(tmp_path, data))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"pmx-connector run: configuration error: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err
