"""Venue authentication: the RS256 client assertion, the access token cache, and its renewal.

venue-api.md §4: the client signs a short JWT (``iss`` = ``sub`` = client id, ``aud`` = the token
URL, ``exp`` ≤ 5 minutes, a fresh ``jti``) with its RSA private key, and exchanges it at the token
endpoint for a bearer token that lives 180 s. There is no refresh token: renewing is the same
exchange again. :class:`TokenProvider` caches the token and renews it when less than the margin
(≥ 30 s) remains, on demand and from a background thread, so a reconnect never waits for it.

The private key is read once from a file (a mounted Secret). Neither the key, the assertion nor the
token is ever logged or put in an exception message. The token endpoint is reached over TLS, checked
against the system's CAs or ``venue.tls_ca_file``. A refusal that smells of a wrong clock (an expired
or not-yet-valid assertion) says so, with the offset from the endpoint's ``Date`` header when it
answers one: the assertion's ``iat``/``exp`` come from this machine's clock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.errors import ConfigError, CredentialsRefused, TokenEndpointUnavailable

_LOG: Final = logging.getLogger(__name__)

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S: Final = 300
TOKEN_REQUEST_TIMEOUT_S: Final = 15.0
RETRY_AFTER_FAILURE_S: Final = 5.0
NOT_RETRYABLE_ERRORS: Final = frozenset({"invalid_client", "invalid_client_assertion", "unauthorized_client"})
# Words of a refusal caused by the assertion's times, i.e. most likely by this machine's clock.
CLOCK_WORDS: Final = ("expired", "not yet valid", "iat", "nbf", "exp ", "future", "clock")
CLOCK_SKEW_REPORTED_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token and the monotonic time at which it expires."""

    value: str
    expires_at_monotonic: float
    scope: str

    def __repr__(self) -> str:
        return f"AccessToken(value=<hidden>, scope={self.scope!r})"


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    """Read the client's RSA private key from a PEM file.

    Raises:
        ConfigError: unreadable, not PEM, encrypted, or not an RSA key; names ``auth.private_key_file``.
    """
    key_name = "auth.private_key_file"
    try:
        pem = path.read_bytes()
    except OSError as exc:
        msg = f"{key_name}: cannot read {str(path)!r}: {exc.strerror}"
        raise ConfigError(msg) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        msg = f"{key_name}: {str(path)!r} is encrypted; provide an unencrypted PEM key (mount it as a Secret)"
        raise ConfigError(msg) from None
    except ValueError:
        msg = f"{key_name}: {str(path)!r} is not a PEM private key"
        raise ConfigError(msg) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        msg = f"{key_name}: {str(path)!r} is not an RSA key; the venue signs with RS256 and needs one"
        raise ConfigError(msg)
    return key


def build_client_assertion(key: rsa.RSAPrivateKey, client_id: str, token_url: str, now: float) -> str:
    """Sign the RS256 client assertion for one token request."""
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME_S,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="RS256")


class TokenProvider:
    """Caches the venue access token and renews it before it expires."""

    def __init__(
        self,
        *,
        key: rsa.RSAPrivateKey,
        client_id: str,
        token_url: str,
        audience: str,
        refresh_margin_s: float = 30.0,
        session: requests.Session | None = None,
        ca_file: Path | None = None,
        on_refresh: Callable[[str], None] = lambda _result: None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Hold the credentials; no network I/O happens until a token is asked for.

        Args:
            key: the client's RSA private key.
            client_id: the client id issued at onboarding.
            token_url: the OAuth token endpoint (also the assertion's ``aud``).
            audience: the API audience (the REST base URL).
            refresh_margin_s: renew when less than this remains (at least 30 s is recommended).
            session: HTTP session to use.
            ca_file: PEM CA bundle to verify the endpoint's certificate (default: the system's CAs).
            on_refresh: called with ``"success"``, ``"refused"`` or ``"error"`` after each attempt.
            wall_clock: seconds since the epoch (for the assertion's claims).
            monotonic: a monotonic clock (for expiry).
        """
        self._key = key
        self._client_id = client_id
        self._token_url = token_url
        self._audience = audience
        self._margin_s = refresh_margin_s
        self._session = session or requests.Session()
        # Passed with each request: requests lets REQUESTS_CA_BUNDLE override a session's verify.
        self._verify: str | bool = str(ca_file) if ca_file is not None else True
        self._on_refresh = on_refresh
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def token(self) -> str:
        """Return a token with more than the margin left, fetching a new one if needed.

        Raises:
            CredentialsRefused: the endpoint refused the client (not retryable).
            TokenEndpointUnavailable: the endpoint could not be reached (retryable).
        """
        with self._lock:
            current = self._token
            if current is None or current.expires_at_monotonic - self._monotonic() <= self._margin_s:
                current = self._fetch()
                self._token = current
            return current.value

    def invalidate(self) -> None:
        """Forget the cached token (after the venue answered UNAUTHENTICATED)."""
        with self._lock:
            self._token = None

    def seconds_left(self) -> float | None:
        """Seconds until the cached token expires, or None when there is none."""
        current = self._token
        return None if current is None else current.expires_at_monotonic - self._monotonic()

    def start(self) -> None:
        """Start renewing the token in the background before it expires."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._renew_forever, name="token-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the background renewal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _renew_forever(self) -> None:
        while not self._stop.is_set():
            left = self.seconds_left()
            wait_s = RETRY_AFTER_FAILURE_S if left is None else max(0.5, left - self._margin_s)
            if self._stop.wait(wait_s):
                return
            try:
                self.token()
            except CredentialsRefused as exc:
                _LOG.error("token renewal refused: %s", exc)
            except TokenEndpointUnavailable:
                pass  # logged by _fetch; the next attempt comes after RETRY_AFTER_FAILURE_S

    def _fetch(self) -> AccessToken:
        body = {
            "client_id": self._client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": build_client_assertion(
                self._key, self._client_id, self._token_url, self._wall_clock()
            ),
            "audience": self._audience,
            "grant_type": "client_credentials",
        }
        started = self._monotonic()
        try:
            response = self._session.post(
                self._token_url, json=body, timeout=TOKEN_REQUEST_TIMEOUT_S, verify=self._verify
            )
        except requests.RequestException as exc:
            self._on_refresh("error")
            msg = f"token endpoint {self._token_url} unreachable: {_connection_problem(exc)}"
            _LOG.warning("%s", msg)
            raise TokenEndpointUnavailable(msg) from None
        payload = _json_or_empty(response)
        if response.status_code in {400, 401, 403}:
            self._on_refresh("refused")
            error = str(payload.get("error", f"HTTP {response.status_code}"))
            description = " ".join(str(payload.get("error_description", "")).split())[:300]
            detail = f"{error}: {description}" if description else error
            msg = f"token endpoint refused client {self._client_id!r}: {detail}"
            if any(word in description.lower() for word in CLOCK_WORDS):
                msg += f"; {self._clock_hint(response)}"
            if error in NOT_RETRYABLE_ERRORS or response.status_code == 403:
                raise CredentialsRefused(msg)  # fatal: the caller reports it once
            _LOG.warning("%s", msg)
            raise TokenEndpointUnavailable(msg)
        if response.status_code != 200 or "access_token" not in payload:
            self._on_refresh("error")
            msg = f"token endpoint {self._token_url} answered HTTP {response.status_code}"
            _LOG.warning("%s", msg)
            raise TokenEndpointUnavailable(msg)
        self._on_refresh("success")
        lifetime_s = float(payload.get("expires_in", 180))
        _LOG.info("obtained a venue access token valid for %.0f s", lifetime_s)
        return AccessToken(
            value=str(payload["access_token"]),
            expires_at_monotonic=started + lifetime_s,
            scope=str(payload.get("scope", "")),
        )

    def _clock_hint(self, response: requests.Response) -> str:
        """Say how far this machine's clock is from the endpoint's, when its Date header tells."""
        hint = "the assertion's iat/exp come from this machine's clock: check that it is synchronised (NTP)"
        try:
            server_s = parsedate_to_datetime(response.headers["Date"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return hint
        offset_s = self._wall_clock() - server_s
        if abs(offset_s) < CLOCK_SKEW_REPORTED_S:
            return hint
        direction = "ahead of" if offset_s > 0 else "behind"
        return f"this machine's clock is {abs(offset_s):.0f} s {direction} the token endpoint's; {hint}"


def _connection_problem(error: requests.RequestException) -> str:
    """Name a connection failure without echoing the request (which carries the assertion)."""
    if isinstance(error, requests.exceptions.SSLError):
        return (
            "TLS handshake failed (is the certificate signed by a CA in venue.tls_ca_file or the system's?)"
        )
    if isinstance(error, requests.exceptions.Timeout):
        return f"no answer within {TOKEN_REQUEST_TIMEOUT_S:.0f} s"
    if isinstance(error, requests.exceptions.ConnectionError):
        return "cannot connect (wrong host or port, DNS, or a firewall?)"
    return type(error).__name__


def _json_or_empty(response: requests.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
