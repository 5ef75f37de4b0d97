"""``bearerguard dpop-proof``, and the DPoP steps of ``bearerguard verify``.

``dpop-proof`` signs a proof (RFC 9449 §4.2) with a client's key, for curl::

    curl -H "Authorization: DPoP $TOKEN" \\
         -H "DPoP: $(bearerguard dpop-proof --key client.pem --url $URL --token $TOKEN)" $URL

A proof is good for one request (its ``jti`` is remembered) and a few
minutes (its ``iat``): make one per request. ``verify --dpop-proof`` runs the
protector's own :class:`~bearerguard.core.dpop.ProofChecker` over a proof and
checks it against the token's ``cnf``; a server nonce, if the server demands
one, is not checked there (only the server holds its secret).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..core.binding import check_binding
from ..core.dpop import ProofChecker, normalized_uri
from ..core.routing import b64url_decode
from ..core.values import json_object
from .steps import Check, run_step
from .terminal import printable, read_token

__all__ = [
    "binding_detail",
    "cmd_dpop_proof",
    "load_key",
    "proof_checks",
    "sign_proof",
    "suitable_algs",
    "unverified_claims",
]

_EC_ALGS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: RFC 7638 §3.2: the public members a proof's ``jwk`` carries, nothing more.
_PUBLIC = {"EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e"), "OKP": ("kty", "crv", "x")}


def suitable_algs(key: Any) -> tuple[str, ...]:
    """The proof algorithms ``key`` can sign with (RFC 7518 §3.1; RFC 8037)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return (_EC_ALGS[key.curve.name],)
    if isinstance(key, rsa.RSAPrivateKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    return ("EdDSA",)


def load_key(path: str) -> tuple[Any, str]:
    """The private key in ``path`` (PEM, or a JWK JSON object) and its default ``alg``.

    Raises ValueError for a public key, an unsupported one, or a file of neither kind.
    """
    with open(path, "rb") as f:
        data = f.read()
    key: Any
    if data.lstrip().startswith(b"{"):
        jwk = json.loads(data)
        if not isinstance(jwk, dict) or "d" not in jwk:
            raise ValueError(f"{path}: not a private JWK (no 'd')")
        key = jwt.PyJWK(jwk).key
    else:
        key = serialization.load_pem_private_key(data, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGS:
        return key, _EC_ALGS[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key, "EdDSA"
    raise ValueError(f"{path}: not an EC (P-256/384/521), RSA or Ed25519 private key")


def public_jwk(key: Any, alg: str) -> dict[str, str]:
    """The public half of ``key`` as a JWK, its required members only."""
    full: dict[str, Any] = jwt.get_algorithm_by_name(alg).to_jwk(key.public_key(), as_dict=True)
    return {name: full[name] for name in _PUBLIC[full["kty"]]}


def sign_proof(
    key: Any,
    alg: str,
    method: str,
    url: str,
    *,
    token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A proof for ``method url``: fresh ``jti``, ``iat`` now, ``ath`` of ``token``.

    Raises ValueError for an ``alg`` the key cannot sign with, or a URL no
    server would accept.
    """
    if alg not in suitable_algs(key):
        raise ValueError(f"--alg {alg} does not suit this key: {', '.join(suitable_algs(key))}")
    normalized_uri(url)
    scheme, netloc, path, _, _ = urlsplit(url)
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": urlunsplit((scheme, netloc, path, "", "")),  # §4.2: no query, no fragment
        "iat": int(time.time() if now is None else now),
    }
    if token is not None:
        digest = hashlib.sha256(token.encode("ascii")).digest()
        claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    if nonce is not None:
        claims["nonce"] = nonce
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(key, alg)}
    return jwt.encode(claims, key, algorithm=alg, headers=headers)


def cmd_dpop_proof(args: argparse.Namespace, out: TextIO) -> int:
    """Print one proof; 0, or 2 for a key or URL that will not do."""
    try:
        key, alg = load_key(args.key)
        token = read_token(args.token) if args.token is not None else None
        proof = sign_proof(
            key, args.alg or alg, args.method, args.url, token=token, nonce=args.nonce
        )
    except (OSError, ValueError, TypeError, jwt.exceptions.PyJWTError) as error:
        out.write(f"error: {printable(str(error))}\n")
        return 2
    out.write(proof + "\n")
    return 0


def binding_detail(cnf: object) -> str:
    """What a ``cnf`` binds the token to: ``jkt`` (DPoP) and/or ``x5t#S256`` (mTLS)."""
    if not isinstance(cnf, Mapping):
        return f"cnf {cnf!r}"
    named = [f"{name} {cnf[name]!r}" for name in ("jkt", "x5t#S256") if name in cnf]
    others = sorted(str(name) for name in cnf if name not in ("jkt", "x5t#S256"))
    if others:
        named.append("other members " + ", ".join(others))
    return "; ".join(named) or "empty cnf"


def unverified_claims(proof: str) -> Mapping[str, Any]:
    """A JWS's claims, unverified: for what is shown and defaulted, never trusted."""
    try:
        return json_object(b64url_decode(proof.split(".")[1])) or {}
    except (IndexError, ValueError):
        return {}


def proof_checks(
    proof: str,
    token: str,
    cnf: Mapping[str, Any] | None,
    method: str | None,
    url: str | None,
    now: float,
) -> list[Check]:
    """The protector's checks of ``proof`` for ``token``, then its binding to ``cnf``.

    Without ``method``/``url``, the proof's own ``htm``/``htu`` stand in (and
    are said to).
    """
    claims = unverified_claims(proof)
    taken = []
    if method is None:
        method, taken = str(claims.get("htm", "GET")), ["htm"]
    if url is None:
        url, taken = str(claims.get("htu", "")), [*taken, "htu"]
    where = f"{method} {url}" + (f" ({' and '.join(taken)} from the proof)" if taken else "")
    thumbprints: list[str] = []

    def check() -> None:
        # A memory replay store of its own: one check, so replay is not in question.
        thumbprints.append(ProofChecker().check([proof], method, url, token, now))

    checked = run_step("dpop proof", check, where)
    if not thumbprints:
        return [checked, Check("binding", None, "no proof key to compare")]
    checked.detail += f", key jkt {thumbprints[0]}"
    binding = run_step("binding", lambda: check_binding(cnf, {"jkt": thumbprints[0]}), "")
    if binding.ok:
        binding.detail = "the proof's key is the token's cnf.jkt"
    return [checked, binding]
