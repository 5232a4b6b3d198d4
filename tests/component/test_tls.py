"""TLS policy against real TLS endpoints on loopback, with a private CA made by the test.

- venue gRPC: a TLS gRPC server; the connector trusts it through ``venue.tls_ca_file`` and refuses
  it without (the system's CAs do not know our CA);
- token endpoint: a tiny HTTPS server; same rule, and the failure is one clear line;
- Schema Registry: the fake registry over HTTPS requiring a client certificate (mTLS), reached
  through ``schema_registry.ssl_ca_location`` / ``ssl_certificate_location`` / ``ssl_key_location``;
- Kafka: the SSL file properties reach librdkafka, which loads them when the client is built.
"""

from __future__ import annotations

import copy
import json
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from confluent_kafka import KafkaException
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.cli import main
from connector.config import VenueSettings, load_settings
from connector.kafka.publisher import build_producer, client_config
from connector.venue.auth import TokenEndpointUnavailable, TokenProvider
from connector.venue.stream import OrderStreamClient, StreamEndedError, open_channel, read
from tests.pki import Pki, make_pki
from tests.registry_fixtures import FakeSchemaRegistry
from tests.unit.test_config import VALID, write

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def server_context(pki: Pki, *, require_client_cert: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return context


# --------------------------------------------------------------------------- venue gRPC


@pytest.fixture
def tls_venue(pki: Pki) -> Iterator[int]:
    response = b"\x22\x01s"  # CreateOrderSubscriptionResponse(session_id="s"), by hand
    handler = grpc.unary_stream_rpc_method_handler(lambda _request, _context: iter([response]))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "polymarket.v1.OrderEntryAPI", {"CreateOrderSubscription": handler}
            ),
        )
    )
    credentials = grpc.ssl_server_credentials([(pki.server_key.read_bytes(), pki.server_cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def venue_settings(port: int, ca: Path | None) -> VenueSettings:
    return VenueSettings(
        grpc_target=f"localhost:{port}",
        rest_url="https://localhost:1",
        participant_id="firms/F/users/u",
        tls_ca_file=ca,
    )


def test_grpc_over_tls_with_the_configured_ca(tls_venue: int, pki: Pki) -> None:
    channel = open_channel(venue_settings(tls_venue, pki.ca))
    try:
        responses = []
        with pytest.raises(StreamEndedError) as ended:
            for response in read(
                OrderStreamClient(channel, venue_settings(tls_venue, pki.ca), lambda: "t").call()
            ):
                responses.append(response)
    finally:
        channel.close()
    assert [r.session_id for r in responses] == ["s"]
    assert ended.value.end.status == "EOF"


def test_grpc_refuses_a_server_the_system_cas_do_not_know(tls_venue: int) -> None:
    settings = venue_settings(tls_venue, None)
    channel = open_channel(settings)
    try:
        with pytest.raises(StreamEndedError) as ended:
            list(read(OrderStreamClient(channel, settings, lambda: "t").call()))
    finally:
        channel.close()
    assert ended.value.end.status == "UNAVAILABLE"


# --------------------------------------------------------------------------- token endpoint


@pytest.fixture
def https_token_endpoint(pki: Pki) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(
                {"access_token": "tls-token", "expires_in": 180, "scope": "read:orders"}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(pki).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://localhost:{server.server_address[1]}/oauth/token"
    finally:
        server.shutdown()
        server.server_close()


def tokens(url: str, ca: Path | None) -> TokenProvider:
    return TokenProvider(key=KEY, client_id="c", token_url=url, audience="https://api", ca_file=ca)


def test_token_over_https_with_the_configured_ca(
    https_token_endpoint: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a session's CA: the configured one must still win
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert tokens(https_token_endpoint, pki.ca).token() == "tls-token"


def test_token_endpoint_with_an_unknown_ca_is_one_clear_line(https_token_endpoint: str) -> None:
    with pytest.raises(TokenEndpointUnavailable) as caught:
        tokens(https_token_endpoint, None).token()
    assert str(caught.value) == (
        f"token endpoint {https_token_endpoint} unreachable: TLS handshake failed "
        "(is the certificate signed by a CA in venue.tls_ca_file or the system's?)"
    )


# --------------------------------------------------------------------------- Schema Registry (mTLS)


def test_registry_over_mutual_tls(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    registry = FakeSchemaRegistry(tls=server_context(pki, require_client_cert=True)).start()
    url = registry.url.replace("127.0.0.1", "localhost")
    try:
        data = copy.deepcopy(VALID)
        data["schema_registry"] = {"url": url, "ssl_ca_location": str(pki.ca)}
        without_client_cert = write(tmp_path, data)
        assert (
            main(["schemas", "--check", "--record", "Checkpoint", "--config", str(without_client_cert)]) == 1
        )
        err = capsys.readouterr().err
        assert err.startswith(f"pmx-connector schemas: schema registry {url} unreachable"), err
        data["schema_registry"] |= {
            "ssl_certificate_location": str(pki.client_cert),
            "ssl_key_location": str(pki.client_key),
        }
        assert (
            main(["schemas", "--register", "--record", "Checkpoint", "--config", str(write(tmp_path, data))])
            == 0
        )
        assert "✓ Checkpoint: registered" in capsys.readouterr().out
    finally:
        registry.stop()
    assert list(registry.state.versions) == ["pmx.connector.checkpoints-value"]


# --------------------------------------------------------------------------- Kafka


def test_kafka_ssl_files_reach_librdkafka(tmp_path: Path, pki: Pki) -> None:
    data = copy.deepcopy(VALID)
    data["kafka"]["properties"] = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
    }
    settings = load_settings(write(tmp_path, data), environ={})
    config = client_config(settings.kafka.bootstrap_servers, settings.kafka.properties)
    assert config["ssl.ca.location"] == str(pki.ca) and config["ssl.key.location"] == str(pki.client_key)
    build_producer(settings.kafka.bootstrap_servers, settings.kafka.properties)  # librdkafka loads them

    (tmp_path / "not-a-ca.pem").write_text("not a certificate")
    data["kafka"]["properties"]["ssl.ca.location"] = str(tmp_path / "not-a-ca.pem")
    broken = load_settings(write(tmp_path, data), environ={})  # readable: the settings accept it
    with pytest.raises(KafkaException, match=r"ssl\.ca\.location"):
        build_producer(broken.kafka.bootstrap_servers, broken.kafka.properties)
