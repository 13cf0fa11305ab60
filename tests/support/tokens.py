"""Real RS256 key pairs and tokens for the tests, and the forged ones that must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey


@dataclass(frozen=True)
class KeyPair:
    private_key: RSAPrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def token(self, userid: str | None = "alice", **claims: Any) -> str:
        """A permission token as the auth service issues it, plus ``claims``."""
        payload: dict[str, Any] = {"userid": userid, "permissions": {}, "service": "source"}
        payload.update(claims)
        payload = {key: value for key, value in payload.items() if value is not None}
        return jwt.encode(payload, self.private_key, algorithm="RS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segments(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return (
        _b64(json.dumps(header).encode("utf-8")) + "." + _b64(json.dumps(payload).encode("utf-8"))
    )


def alg_none_token(userid: str = "alice") -> str:
    """An unsigned token (``alg: none``)."""
    return _segments({"alg": "none", "typ": "JWT"}, {"userid": userid, "service": "source"}) + "."


def hs256_with_public_key(public_pem: str, userid: str = "alice") -> str:
    """HS256 signed with the RSA public key as the HMAC secret: the classic confusion attack."""
    signing_input = _segments(
        {"alg": "HS256", "typ": "JWT"}, {"userid": userid, "service": "source"}
    )
    signature = hmac.new(
        public_pem.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return signing_input + "." + _b64(signature)


def forged_header_token(header_json: str, keypair: KeyPair, userid: str = "alice") -> str:
    """A token whose header is ``header_json`` verbatim (e.g. with two ``alg`` members),
    HMAC-signed with the public key, as an attacker holding only the public key would."""
    payload = json.dumps({"userid": userid, "service": "source"}).encode("utf-8")
    signing_input = _b64(header_json.encode("utf-8")) + "." + _b64(payload)
    signature = hmac.new(
        keypair.public_pem.encode("ascii"), signing_input.encode("ascii"), hashlib.sha256
    ).digest()
    return signing_input + "." + _b64(signature)
