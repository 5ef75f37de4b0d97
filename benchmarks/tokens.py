"""Signing keys, JWKS documents and JWT access tokens, all minted at run time.

Tokens carry every claim the libraries compared here require, so one token
serves them all: RFC 9068's ``iss sub aud exp iat jti client_id`` (Authlib
marks them essential), ``typ: at+jwt``, ``scope``, and flask-jwt-extended's
``type``/``fresh``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://as.bench.example"
AUDIENCE = "https://api.bench.example"
SCOPE = "profile email"
ALGORITHMS = ("RS256", "ES256", "EdDSA")

_serial = itertools.count()


@dataclass
class SigningKey:
    alg: str
    kid: str
    private: Any
    jwk: dict[str, Any]  # the public JWK, with kid, alg and use

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def new_key(alg: str, kid: str | None = None) -> SigningKey:
    kid = kid or f"{alg.lower()}-{next(_serial)}-{secrets.token_hex(4)}"
    private: Any
    if alg == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        raise ValueError(alg)
    jwk.update(kid=kid, alg=alg, use="sig")
    return SigningKey(alg, kid, private, jwk)


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [dict(key.jwk) for key in keys]}


class Minter:
    """Mints distinct, valid access tokens signed by one key for one issuer."""

    def __init__(self, key: SigningKey, issuer: str = ISSUER, lifetime: int = 7200) -> None:
        self.key = key
        self.issuer = issuer
        self.lifetime = lifetime
        self._count = itertools.count()

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        n = next(self._count)
        return {
            "iss": self.issuer,
            "sub": f"user-{n % 1000}",
            "aud": AUDIENCE,
            "client_id": "bench-client",
            "iat": now,
            "exp": now + self.lifetime,
            "jti": f"{secrets.token_hex(8)}-{n}",
            "scope": SCOPE,
            "type": "access",
            "fresh": False,
        }

    def __call__(self, count: int) -> list[str]:
        headers = {"kid": self.key.kid, "typ": "at+jwt"}
        return [
            jwt.encode(self.claims(), self.key.private, algorithm=self.key.alg, headers=headers)
            for _ in range(count)
        ]


class Pool:
    """Tokens minted once and replayed to several cases, each from the start.

    Each case has its own protector and cache, so a token is never-seen for
    each of them; sharing the pool saves minting (RS256 signing is slow).
    """

    def __init__(self, mint: Minter) -> None:
        self._mint = mint
        self._tokens: list[str] = []

    def reader(self) -> Callable[[int], list[str]]:
        position = 0

        def take(count: int) -> list[str]:
            nonlocal position
            missing = position + count - len(self._tokens)
            if missing > 0:
                self._tokens.extend(self._mint(missing))
            tokens = self._tokens[position : position + count]
            position += count
            return tokens

        return take


def filler_jwks(alg: str, count: int) -> list[dict[str, Any]]:
    """``count`` public JWKs of fresh keys, generated on every core (RSA is slow)."""
    if count <= 0:
        return []
    workers = min(os.cpu_count() or 1, count)
    if workers == 1 or alg != "RS256" or count < 8:
        return [new_key(alg).jwk for _ in range(count)]
    # spawn, not fork: the run has threads (loopback servers) by now.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_filler_jwk, [alg] * count))


def _filler_jwk(alg: str) -> dict[str, Any]:
    return new_key(alg).jwk
