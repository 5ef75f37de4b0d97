"""DPoP proofs minted at run time (RFC 9449 §4.2), for the DPoP tests."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from bearerguard.core.dpop import thumbprint

from .jwtkit import Keypair, sign_raw

#: Every proof algorithm bearerguard allows by default.
PROOF_ALGS = ["ES256", "ES384", "PS256", "RS256", "EdDSA"]


def public_jwk(key: Keypair) -> dict[str, Any]:
    """The proof key as a client sends it: the public members only."""
    return {k: v for k, v in key.jwk().items() if k not in ("alg", "use", "kid")}


def jkt(key: Keypair) -> str:
    """The RFC 7638 thumbprint a token bound to ``key`` carries in ``cnf.jkt``."""
    return thumbprint(public_jwk(key))


def ath(token: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=").decode()


def make_proof(
    key: Keypair,
    *,
    method: str = "GET",
    url: str,
    token: str | None,
    now: float,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A valid proof for ``method url`` (bound to ``token``); overrides of
    None remove a member, others replace it."""
    head: dict[str, Any] = {"typ": "dpop+jwt", "alg": key.alg, "jwk": public_jwk(key)}
    head.update(header or {})
    body: dict[str, Any] = {"jti": secrets.token_urlsafe(12), "htm": method, "htu": url}
    body["iat"] = int(now)
    if token is not None:
        body["ath"] = ath(token)
    body.update(claims)
    head = {k: v for k, v in head.items() if v is not None}
    body = {k: v for k, v in body.items() if v is not None}
    return sign_raw(key, head, body)
