"""Keys, key sets and tokens minted at run time, for tests that need JWTs.

Nothing here is committed key material: every key is generated when first
asked for, and cached for the test session (RSA generation is slow).

Example::

    key = Keypair.generate("RS256", kid="k1")
    validator = JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key), clock=clock)
    token = make_token(key, now=clock(), scope="profile")
    forged = make_token(key, now=clock(), header={"kid": "other"}, aud=None)  # aud removed
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"

_FAMILIES = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "EdDSA": "OKP",
}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1}


@dataclass(frozen=True)
class Keypair:
    """A private key, its public half, the algorithm it signs with, and its kid."""

    alg: str
    kid: str | None
    private_key: Any

    @classmethod
    def generate(cls, alg: str = "RS256", *, kid: str | None = None, bits: int = 2048) -> Keypair:
        """A fresh key for ``alg`` (RS*/PS* RSA, ES256 P-256, ES384 P-384, EdDSA Ed25519)."""
        family = _FAMILIES[alg]
        if family == "RSA":
            private: Any = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        elif family == "EC":
            private = ec.generate_private_key(_CURVES[alg]())
        else:
            private = ed25519.Ed25519PrivateKey.generate()
        return cls(alg, kid, private)

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any], alg: str, kid: str | None = None) -> Keypair:
        """A key given as a private JWK (the RFC examples' keys)."""
        return cls(alg, kid, jwt.PyJWK(jwk, alg).key)

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def jwk(self, *, private: bool = False, **extra: Any) -> dict[str, Any]:
        """The JWK: public unless ``private``; with ``kid``, ``alg``, ``use`` and ``extra``."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        key = self.private_key if private else self.public_key
        data: dict[str, Any] = algorithm.to_jwk(key, as_dict=True)
        data.update(alg=self.alg, use="sig")
        if self.kid is not None:
            data["kid"] = self.kid
        data.update(extra)
        return {k: v for k, v in data.items() if v is not None}

    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A JWS compact token of ``payload``, with ``kid`` in the header unless overridden."""
        fields: dict[str, Any] = {"kid": self.kid} if self.kid is not None else {}
        fields.update(header or {})
        kid = fields.pop("kid", None)
        if "alg" in fields:
            raise ValueError("use forge() for a header whose alg differs from the key's")
        headers = {k: v for k, v in fields.items() if v is not None}
        if kid is not None:
            headers["kid"] = kid
        return jwt.encode(payload, self.private_key, algorithm=self.alg, headers=headers or None)


@functools.cache
def cached_keypair(alg: str, kid: str | None = None) -> Keypair:
    """One key per (alg, kid) for the whole session: keys are slow to make."""
    return Keypair.generate(alg, kid=kid)


def jwks(*keys: Keypair | dict[str, Any]) -> dict[str, Any]:
    """A JWKS document holding the public JWK of each key (dicts are put in as given)."""
    return {"keys": [k.jwk() if isinstance(k, Keypair) else k for k in keys]}


def claims(now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid RFC 9068 claim set; an override of None removes that claim."""
    now = time.time() if now is None else now
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": "client-1",
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": secrets.token_hex(8),
        "scope": "profile email",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def make_token(
    key: Keypair, *, now: float | None = None, header: dict[str, Any] | None = None, **overrides: Any
) -> str:
    """A token signed by ``key`` with :func:`claims` (``now``, ``overrides``) and ``header``."""
    return key.sign(claims(now, **overrides), {"typ": "at+jwt", **(header or {})})


def b64url(data: bytes | str | dict[str, Any] | list[Any]) -> str:
    if isinstance(data, dict | list):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any] | bytes, signature: bytes = b"") -> str:
    """A JWS compact string with exactly these parts, signed by nobody."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return f"{b64url(header)}.{b64url(body)}.{b64url(signature)}"


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The decoded (header, payload, signature) of a compact token, unverified."""
    head, body, sig = token.split(".")

    def decode(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    return json.loads(decode(head)), json.loads(decode(body)), decode(sig)
