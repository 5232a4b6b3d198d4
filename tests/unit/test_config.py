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


def loopback_insecure_except(dotted: str, value: str) -> dict[str, Any]:
    """Plaintext settings with every venue endpoint on loopback except ``dotted``."""
    data = with_change("venue.insecure", True)
    data["venue"]["grpc_target"] = "127.0.0.1:50051"
    data["venue"]["rest_url"] = "http://127.0.0.1:8080"
    data["auth"]["token_url"] = "http://127.0.0.1:8080/oauth/token"
    section, key = dotted.split(".")
    data[section][key] = value
    return data


def registry(values: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    data["schema_registry"] = {"url": "https://registry.example.com", **values}
    return data


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
        # TLS policy: TLS unless venue.insecure, and insecure only for loopback endpoints
        (with_change("venue.rest_url", "http://api.example.com"), "venue.rest_url: must be https://"),
        (with_change("auth.token_url", "http://auth.example.com/t"), "auth.token_url: must be https://"),
        (
            loopback_insecure_except("auth.token_url", "http://auth.example.com/oauth/token"),
            "venue.insecure: plaintext is only allowed to loopback endpoints; auth.token_url is "
            "'auth.example.com'",
        ),
        (
            loopback_insecure_except("venue.rest_url", "http://10.0.0.8:8080"),
            "venue.insecure: plaintext is only allowed to loopback endpoints; venue.rest_url is '10.0.0.8'",
        ),
        (
            with_change("venue.tls_ca_file", "/nonexistent/ca.pem"),
            "venue.tls_ca_file: cannot read '/nonexistent/ca.pem': No such file or directory",
        ),
        (
            with_change("kafka.properties", {"ssl.ca.location": "/nonexistent/ca.pem"}),
            "kafka.properties.ssl.ca.location: cannot read '/nonexistent/ca.pem': No such file",
        ),
        (
            with_change("kafka.properties", {"ssl.certificate.location": "/"}),
            "kafka.properties.ssl.certificate.location: '/' is a directory, not a file",
        ),
        (
            with_change("kafka.properties", {"ssl.key.location": "/nonexistent/client.key"}),
            "kafka.properties.ssl.key.location: cannot read '/nonexistent/client.key'",
        ),
        (
            with_change("kafka.bootstrap_servers", "kafka-0:9092,kafka-1"),
            "kafka.bootstrap_servers: 'kafka-1' is not host:port",
        ),
        (
            with_change("schema_registry.url", "schema-registry:8081"),
            "schema_registry.url: must be an http(s) URL",
        ),
        (
            with_change("schema_registry.ssl_ca_location", "/nonexistent/registry-ca.pem"),
            "schema_registry.ssl_ca_location: cannot read '/nonexistent/registry-ca.pem'",
        ),
        (
            registry({"ssl_certificate_location": "/etc/hostname"}),
            "schema_registry.ssl_certificate_location and ssl_key_location: set both or neither",
        ),
        (
            registry({"basic_auth_user_info": "user:s3cret", "url": "http://registry.example.com:8081"}),
            "schema_registry.basic_auth_user_info: credentials would travel in plaintext to "
            "'registry.example.com'",
        ),
        # pinned schema IDs
        (
            registry({"auto_register": False, "pinned_ids": {"ExecutionEvnt": 12}}),
            "schema_registry.pinned_ids.ExecutionEvnt: unknown record type; did you mean 'ExecutionEvent'?",
        ),
        (
            registry({"auto_register": False, "pinned_ids": {"ExecutionEvent": 0}}),
            "schema_registry.pinned_ids.ExecutionEvent: must be a schema ID between 1 and 2147483647",
        ),
        (
            registry({"auto_register": False, "pinned_ids": {"ExecutionEvent": "twelve"}}),
            "schema_registry.pinned_ids.ExecutionEvent: Input should be a valid integer",
        ),
        (
            registry({"pinned_ids": {"ExecutionEvent": 12}}),
            "schema_registry.pinned_ids: pinned IDs need schema_registry.auto_register: false",
        ),
        # wrong types
        (with_change("venue.symbols", 5), "venue.symbols: Input should be a valid tuple"),
        (with_change("kafka.properties", ["a", "b"]), "kafka.properties: Input should be a valid dictionary"),
        (
            with_change("schema_registry", "http://r:8081"),
            "schema_registry: Input should be a valid dictionary",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, data), environ={})
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_tls_files_and_pinned_ids_are_accepted(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    data = registry(
        {
            "auto_register": False,
            "pinned_ids": {"ExecutionEvent": 12, "ConnectorHeartbeat": 3},
            "ssl_ca_location": str(ca),
            "ssl_certificate_location": str(cert),
            "ssl_key_location": str(key),
            "basic_auth_user_info": "user:s3cret",
        }
    )
    data["venue"]["tls_ca_file"] = str(ca)
    data["kafka"]["properties"] = {
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
        "ssl.key.password": "k3y-pass",
    }
    settings = load_settings(write(tmp_path, data), environ={})
    assert settings.schema_registry.pinned_ids == {"ExecutionEvent": 12, "ConnectorHeartbeat": 3}
    assert settings.schema_registry.client_conf() == {
        "url": "https://registry.example.com",
        "basic.auth.user.info": "user:s3cret",
        "ssl.ca.location": str(ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }
    assert "s3cret" not in repr(settings) and "k3y-pass" not in repr(settings)
    assert settings.venue.tls_ca_file == ca
    probe = with_change("kafka.properties", {"ssl.ca.location": "probe"})
    assert load_settings(write(tmp_path, probe), environ={}).kafka.properties["ssl.ca.location"] == "probe"


def test_plaintext_registry_with_credentials_is_fine_on_loopback(tmp_path: Path) -> None:
    data = registry({"url": "http://127.0.0.1:8081", "basic_auth_user_info": "user:s3cret"})
    assert load_settings(write(tmp_path, data), environ={}).schema_registry.url == "http://127.0.0.1:8081"


def test_registry_credentials_are_not_echoed_in_errors(tmp_path: Path) -> None:
    data = registry({"basic_auth_user_info": "user:s3cret", "url": "http://registry.example.com"})
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, data), environ={})
    assert "s3cret" not in str(caught.value)


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
        ("venue: {grpc_target: [unclosed\n", "config file"),  # bad YAML: names the file, line, column
        (with_change("kafka.partitions", [6]), "kafka.partitions: Input should be a valid integer"),
        (
            with_change("auth.private_key_file", "/nonexistent/key.pem"),
            "auth.private_key_file: cannot read '/nonexistent/key.pem': No such file or directory",
        ),
        (with_change("venue.rest_url", "http://api.example.com"), "venue.rest_url: must be https://"),
        (
            with_change("kafka.properties", {"ssl.ca.location": "/nonexistent/ca.pem"}),
            "kafka.properties.ssl.ca.location: cannot read '/nonexistent/ca.pem'",
        ),
        (
            registry({"auto_register": False, "pinned_ids": {"Checkpiont": 4}}),
            "schema_registry.pinned_ids.Checkpiont: unknown record type; did you mean 'Checkpoint'?",
        ),
    ],
)
def test_run_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, Any] | str, expected: str
) -> None:
    assert_run_exits_2(write(tmp_path, data), capsys, expected)


def assert_run_exits_2(config: Path, capsys: pytest.CaptureFixture[str], expected: str) -> None:
    from connector.cli import main

    code = main(["run", "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"pmx-connector run: configuration error: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


def _pem(key: Any, password: bytes | None = None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def _private_key_file(tmp_path: Path, kind: str) -> Path:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    path = tmp_path / "key.pem"
    if kind == "unreadable":  # (root reads a chmod 000 file; a file used as a directory fails for anyone)
        (tmp_path / "secrets").write_text("a file, not a directory")
        path = tmp_path / "secrets" / "key.pem"
    elif kind == "garbled":
        pem = _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        path.write_bytes(pem[:200] + b"#%&" + pem[203:])
    elif kind == "encrypted":
        path.write_bytes(_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048), b"pass-w0rd"))
    elif kind == "ec key":
        path.write_bytes(_pem(ec.generate_private_key(ec.SECP256R1())))
    elif kind == "ed25519 key":
        path.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    elif kind == "a certificate, not a key":
        path.write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    elif kind == "a directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("unreadable", "auth.private_key_file: cannot read '{path}': Not a directory"),
        ("garbled", "auth.private_key_file: '{path}' is not a PEM private key"),
        ("encrypted", "auth.private_key_file: '{path}' is encrypted; provide an unencrypted PEM key"),
        ("ec key", "auth.private_key_file: '{path}' is not an RSA key; the venue signs with RS256"),
        ("ed25519 key", "auth.private_key_file: '{path}' is not an RSA key"),
        ("a certificate, not a key", "auth.private_key_file: '{path}' is not a PEM private key"),
        ("a directory", "auth.private_key_file: cannot read '{path}': Is a directory"),
    ],
)
def test_run_exits_2_for_a_bad_private_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, expected: str
) -> None:
    key = _private_key_file(tmp_path, kind)
    assert_run_exits_2(
        write(tmp_path, with_change("auth.private_key_file", str(key))), capsys, expected.format(path=key)
    )
    assert "pass-w0rd" not in capsys.readouterr().err


def test_registry_credentials_in_the_url_move_out_of_it(tmp_path: Path) -> None:
    data = registry({"url": "https://us%40r:s3cr%3At@registry.example.com:8081/apis/ccompat/v7"})
    settings = load_settings(write(tmp_path, data), environ={}).schema_registry
    assert settings.url == "https://registry.example.com:8081/apis/ccompat/v7"
    assert settings.client_conf()["basic.auth.user.info"] == "us@r:s3cr:t"
    assert "s3cr" not in repr(settings) and "s3cr" not in str(settings.url)


def test_registry_credentials_in_the_url_and_the_key_are_refused(tmp_path: Path) -> None:
    data = registry({"url": "https://user:s3cret@registry.example.com", "basic_auth_user_info": "u:p"})
    with pytest.raises(ConfigError, match=r"schema_registry\.url: credentials are both") as caught:
        load_settings(write(tmp_path, data), environ={})
    assert "s3cret" not in str(caught.value)
