"""Reading the client's private key: every operator mistake is one clear line naming the key."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.errors import ConfigError
from connector.venue.auth import AccessToken, build_client_assertion, load_private_key

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def test_a_valid_rsa_key_loads(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(pem(RSA_KEY))
    assert load_private_key(path).private_numbers() == RSA_KEY.private_numbers()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "auth.private_key_file: cannot read .*No such file"),
        (b"-----BEGIN PRIVATE KEY-----\ngarbled\n-----END PRIVATE KEY-----\n", "is not a PEM private key"),
        (pem(RSA_KEY, b"secret-pass"), "is encrypted; provide an unencrypted PEM key"),
        (
            pem(ec.generate_private_key(ec.SECP256R1())),
            "is not an RSA key; the venue signs with RS256",
        ),
    ],
)
def test_bad_keys(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "key.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=expected) as caught:
        load_private_key(path)
    assert "secret-pass" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_assertion_claims_follow_the_venue_rules() -> None:
    assertion = build_client_assertion(
        RSA_KEY, "client-1", "https://auth.example/oauth/token", 1_700_000_000.7
    )
    header = jwt.get_unverified_header(assertion)
    claims = jwt.decode(
        assertion,
        RSA_KEY.public_key(),
        algorithms=["RS256"],
        audience="https://auth.example/oauth/token",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert header["alg"] == "RS256"
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == 1_700_000_000
    other = build_client_assertion(RSA_KEY, "client-1", "https://auth.example/oauth/token", 1_700_000_000)
    assert jwt.decode(other, options={"verify_signature": False})["jti"] != claims["jti"]


def test_token_repr_hides_the_value() -> None:
    assert "s3cr3t" not in repr(AccessToken("s3cr3t", 0.0, "read:orders"))
