"""The simulated OAuth authority: checks RS256 client assertions and issues and verifies access tokens.

Client assertions are checked as venue-api.md §4.1 says: RS256 only, signed by a registered public key
of the client, ``iss`` = ``sub`` = client id, ``aud`` = the token URL, ``exp`` present, not passed and at
most 5 minutes after ``iat``, and a ``jti`` never seen before. Access tokens are HS256 JWTs signed with
a random per-process secret, carrying ``sub``, ``scope`` (space separated), ``iat``, ``exp``, ``jti`` and
``gen``: :meth:`TokenAuthority.expire_issued_tokens` bumps the generation, which makes every token issued
before it invalid at once (the "expire tokens early" fault).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connector.simulator.clock import Clock, utc_now

__all__ = [
    "ASSERTION_TYPE",
    "INVALID_ASSERTION",
    "INVALID_CLIENT",
    "AccessTokenClaims",
    "AssertionRejectedError",
    "TokenAuthority",
    "TokenInvalidError",
    "generate_client_key",
]

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME_S: Final = 300
_ACCESS_TOKEN_ALGORITHM: Final = "HS256"  # noqa: S105 - an algorithm name, not a secret
_CLIENT_ALGORITHM: Final = "RS256"
INVALID_CLIENT: Final = "invalid_client"
INVALID_ASSERTION: Final = "invalid_client_assertion"


class AssertionRejectedError(Exception):
    """A token request was refused; carries the OAuth error code, description and HTTP status."""

    def __init__(self, error: str, description: str, status: int = 401) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


class TokenInvalidError(Exception):
    """An access token is missing, malformed, badly signed, expired or revoked."""


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    """The claims of a verified access token."""

    subject: str
    scopes: frozenset[str]
    issued_at: int
    expires_at: int


def generate_client_key() -> tuple[bytes, bytes]:
    """Generate an RSA-2048 client key pair.

    Returns:
        The private key (PKCS#8 PEM, unencrypted) and the public key (SubjectPublicKeyInfo PEM).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


class TokenAuthority:
    """Registered client keys, assertion checks, and access tokens; thread-safe."""

    def __init__(
        self,
        *,
        token_url: str,
        audience: str,
        scopes: Sequence[str],
        lifetime_s: int,
        clock: Clock = utc_now,
    ) -> None:
        self._token_url = token_url
        self._audience = audience
        self._scopes = tuple(scopes)
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._keys: dict[str, list[rsa.RSAPublicKey]] = {}
        self._seen_jti: dict[str, int] = {}
        self._generation = 0
        self._issued = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ configuration

    def register_client_key(self, client_id: str, public_key_pem: bytes) -> None:
        """Register a public key for a client; several keys may be registered (key rotation).

        Args:
            client_id: The client's id.
            public_key_pem: The RSA public key, PEM.

        Raises:
            ValueError: The PEM is not an RSA public key.
        """
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, rsa.RSAPublicKey):
            msg = "the client key must be an RSA public key"
            raise ValueError(msg)
        with self._lock:
            self._keys.setdefault(client_id, []).append(key)

    @property
    def lifetime_s(self) -> int:
        """Lifetime of newly issued access tokens, in seconds."""
        return self._lifetime_s

    def set_lifetime(self, lifetime_s: int) -> None:
        """Change the lifetime of access tokens issued from now on."""
        self._lifetime_s = lifetime_s

    def set_scopes(self, scopes: Sequence[str]) -> None:
        """Change the scopes granted to tokens issued from now on."""
        self._scopes = tuple(scopes)

    @property
    def scopes(self) -> tuple[str, ...]:
        """Scopes granted to newly issued tokens."""
        return self._scopes

    @property
    def issued(self) -> int:
        """How many access tokens were issued."""
        return self._issued

    def expire_issued_tokens(self) -> None:
        """Make every access token issued so far invalid."""
        with self._lock:
            self._generation += 1

    # ------------------------------------------------------------------ the token endpoint

    def exchange_assertion(self, client_id: str, assertion: str) -> tuple[str, AccessTokenClaims]:
        """Check a client assertion and issue an access token for it.

        Args:
            client_id: The ``client_id`` of the token request.
            assertion: The ``client_assertion`` JWT.

        Returns:
            The access token and its claims.

        Raises:
            AssertionRejectedError: ``invalid_client`` (unknown client, bad signature) or
                ``invalid_client_assertion`` (bad header or claims, wrong audience, expired, reused jti).
        """
        with self._lock:
            keys = list(self._keys.get(client_id, ()))
        if not keys:
            raise AssertionRejectedError(INVALID_CLIENT, f"unknown client {client_id!r}")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.InvalidTokenError as exc:
            raise AssertionRejectedError(INVALID_ASSERTION, f"malformed assertion: {exc}") from exc
        if header.get("alg") != _CLIENT_ALGORITHM:
            raise AssertionRejectedError(
                INVALID_ASSERTION, f"algorithm {header.get('alg')!r} not allowed; use RS256"
            )
        claims = self._verify_assertion(keys, client_id, assertion)
        iat, exp, jti = claims["iat"], claims["exp"], claims["jti"]
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > MAX_ASSERTION_LIFETIME_S:
            raise AssertionRejectedError(INVALID_ASSERTION, "exp must be at most 300 seconds after iat")
        if not isinstance(jti, str) or not jti:
            raise AssertionRejectedError(INVALID_ASSERTION, "jti must be a non-empty string")
        now_s = int(self._clock().timestamp())
        with self._lock:
            self._seen_jti = {key: until for key, until in self._seen_jti.items() if until >= now_s}
            if jti in self._seen_jti:
                raise AssertionRejectedError(INVALID_ASSERTION, f"jti {jti!r} was already used")
            self._seen_jti[jti] = exp
        token = self.issue(client_id)
        return token, self.verify(token)

    def _verify_assertion(
        self, keys: list[rsa.RSAPublicKey], client_id: str, assertion: str
    ) -> dict[str, object]:
        now_s = self._clock().timestamp()
        last_error: jwt.InvalidTokenError | None = None
        for key in keys:
            try:
                claims: dict[str, object] = jwt.decode(
                    assertion,
                    key=key,
                    algorithms=[_CLIENT_ALGORITHM],
                    audience=self._token_url,
                    issuer=client_id,
                    options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"], "verify_exp": False},
                )
            except jwt.InvalidSignatureError as exc:
                last_error = exc
                continue
            except jwt.InvalidTokenError as exc:
                raise AssertionRejectedError(INVALID_ASSERTION, str(exc)) from exc
            if claims.get("sub") != client_id:
                raise AssertionRejectedError(INVALID_ASSERTION, "sub must equal the client id")
            exp = claims["exp"]
            if not isinstance(exp, int | float) or exp <= now_s:
                raise AssertionRejectedError(INVALID_ASSERTION, "the assertion has expired")
            return claims
        raise AssertionRejectedError(
            INVALID_CLIENT, f"signature does not match a registered key: {last_error}"
        )

    # ------------------------------------------------------------------ access tokens

    def issue(
        self, subject: str, *, scopes: Sequence[str] | None = None, lifetime_s: int | None = None
    ) -> str:
        """Issue an access token (also used directly by tests).

        Args:
            subject: The ``sub`` claim (the client id).
            scopes: Scopes to grant; the configured ones when omitted.
            lifetime_s: Lifetime in seconds (may be negative, for an already expired token); the
                configured lifetime when omitted.

        Returns:
            The signed token.
        """
        now_s = int(self._clock().timestamp())
        lifetime = self._lifetime_s if lifetime_s is None else lifetime_s
        granted = self._scopes if scopes is None else tuple(scopes)
        with self._lock:
            generation = self._generation
            self._issued += 1
        claims = {
            "sub": subject,
            "scope": " ".join(granted),
            "iat": now_s,
            "exp": now_s + lifetime,
            "jti": str(uuid.uuid4()),
            "aud": self._audience,
            "gen": generation,
        }
        return jwt.encode(claims, self._secret, algorithm=_ACCESS_TOKEN_ALGORITHM)

    def verify(self, token: str) -> AccessTokenClaims:
        """Verify an access token the authority issued.

        Args:
            token: The bearer token.

        Returns:
            Its claims.

        Raises:
            TokenInvalidError: The token is malformed, badly signed, expired or was revoked.
        """
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[_ACCESS_TOKEN_ALGORITHM],
                audience=self._audience,
                options={"require": ["sub", "exp", "iat", "scope"], "verify_exp": False},
            )
        except jwt.InvalidTokenError as exc:
            msg = f"invalid access token: {exc}"
            raise TokenInvalidError(msg) from exc
        now_s = self._clock().timestamp()
        if claims["exp"] <= now_s:
            msg = "access token expired"
            raise TokenInvalidError(msg)
        if claims.get("gen", -1) < self._generation:
            msg = "access token revoked (expired early)"
            raise TokenInvalidError(msg)
        return AccessTokenClaims(
            subject=str(claims["sub"]),
            scopes=frozenset(str(claims["scope"]).split()),
            issued_at=int(claims["iat"]),
            expires_at=int(claims["exp"]),
        )

    def is_revoked(self, token: str) -> bool:
        """Tell whether a token the authority issued is now invalid (expired or revoked)."""
        try:
            self.verify(token)
        except TokenInvalidError:
            return True
        return False
