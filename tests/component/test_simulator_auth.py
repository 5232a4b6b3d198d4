"""The simulator's OAuth token endpoint: RS256 client assertions in, access tokens out (venue-api.md §4)."""

from __future__ import annotations

import time

import jwt
import pytest
import requests

from connector.simulator import SimulatedVenue
from connector.simulator.tokens import generate_client_key
from tests.simulator_fixtures import HTTP_TIMEOUT_S, make_assertion, request_token


def assert_oauth_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]


def test_valid_assertion_gets_a_bearer_token(simulator: SimulatedVenue, simulator_client_key: bytes) -> None:
    endpoints = simulator.endpoints
    response = request_token(endpoints, make_assertion(simulator_client_key, endpoints))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 180
    assert body["scope"].split() == ["read:dropcopy", "read:orders", "read:reports"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == endpoints.client_id
    assert claims["scope"] == "read:orders read:reports read:dropcopy"
    assert claims["exp"] - claims["iat"] == 180


def test_a_second_registered_key_also_works(simulator: SimulatedVenue, simulator_client_key: bytes) -> None:
    rotated_private, rotated_public = generate_client_key()
    simulator.register_client_key(rotated_public)
    endpoints = simulator.endpoints
    assert request_token(endpoints, make_assertion(simulator_client_key, endpoints)).status_code == 200
    assert request_token(endpoints, make_assertion(rotated_private, endpoints)).status_code == 200


def test_wrong_key_is_invalid_client(simulator: SimulatedVenue, simulator_client_key: bytes) -> None:
    other_private, _ = generate_client_key()
    response = request_token(simulator.endpoints, make_assertion(other_private, simulator.endpoints))
    assert_oauth_error(response, 401, "invalid_client")


def test_unknown_client_is_invalid_client(simulator: SimulatedVenue, simulator_client_key: bytes) -> None:
    assertion = make_assertion(simulator_client_key, simulator.endpoints, client_id="someone-else")
    response = request_token(simulator.endpoints, assertion, client_id="someone-else")
    assert_oauth_error(response, 401, "invalid_client")


def test_wrong_audience_is_invalid_client_assertion(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    assertion = make_assertion(
        simulator_client_key, endpoints, audience=endpoints.rest_url
    )  # API URL, not token URL
    assert_oauth_error(request_token(endpoints, assertion), 401, "invalid_client_assertion")


def test_expired_assertion_is_invalid_client_assertion(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    assertion = make_assertion(
        simulator_client_key, endpoints, issued_at=int(time.time()) - 400, lifetime_s=300
    )
    assert_oauth_error(request_token(endpoints, assertion), 401, "invalid_client_assertion")


def test_too_long_assertion_is_invalid_client_assertion(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    assertion = make_assertion(simulator_client_key, endpoints, lifetime_s=301)
    assert_oauth_error(request_token(endpoints, assertion), 401, "invalid_client_assertion")


def test_reused_jti_is_invalid_client_assertion(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    assert (
        request_token(endpoints, make_assertion(simulator_client_key, endpoints, jti="once")).status_code
        == 200
    )
    again = make_assertion(simulator_client_key, endpoints, jti="once")
    assert_oauth_error(request_token(endpoints, again), 401, "invalid_client_assertion")


def test_wrong_algorithm_is_invalid_client_assertion(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    assertion = make_assertion(
        simulator_client_key, endpoints, algorithm="HS256", key="a-shared-secret-of-32-bytes-long!"
    )
    assert_oauth_error(request_token(endpoints, assertion), 401, "invalid_client_assertion")


def test_wrong_grant_type_is_unsupported_grant_type(
    simulator: SimulatedVenue, simulator_client_key: bytes
) -> None:
    endpoints = simulator.endpoints
    response = request_token(
        endpoints, make_assertion(simulator_client_key, endpoints), grant_type="password"
    )
    assert_oauth_error(response, 400, "unsupported_grant_type")


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_malformed_token_request_is_invalid_request(simulator: SimulatedVenue, body: bytes) -> None:
    response = requests.post(simulator.endpoints.token_url, data=body, timeout=HTTP_TIMEOUT_S)
    assert_oauth_error(response, 400, "invalid_request")


def test_health_needs_no_auth(simulator: SimulatedVenue) -> None:
    response = requests.get(f"{simulator.endpoints.rest_url}/v1/health", timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
