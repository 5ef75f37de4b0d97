"""Keys, key sets, tokens and a JWKS endpoint made at run time, for tests that need JWTs.

Nothing here is committed key material: every key is generated when first
asked for (``cached_keypair`` keeps one per (alg, kid) for the session, as RSA
generation is slow).

Minting::

    key = Keypair.generate("RS256", kid="k1")      # or ES256/384/512, PS256, EdDSA, Ed25519
    validator = JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key), clock=clock)
    token = make_token(key, now=clock(), scope="profile")
    no_aud = make_token(key, now=clock(), header={"kid": "other"}, aud=None)  # None removes
    crafted = sign_raw(key, {"alg": "RS256", "crit": ["x"]}, claims(clock()))
    unsigned = forge({"alg": "none"}, claims(clock()))

Serving keys (with the ``serve`` fixture, or a ``SharedServer`` per module)::

    stub = IssuerStub(key)                          # /jwks.json, plus stub.documents
    server = serve(stub)
    stub.publish(key, new_key)                      # rotation
    stub.fault = Reply(503)                         # outage
    fetches(server)                                 # JWKS requests so far

Through Flask::

    app = protected_app(protector)                  # /profile, /admin, /students, ...
    assert_refused(call(app, token), "token expired")
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from flask import Flask

from bearerguard import ResourceProtector, current_token
from bearerguard.transport import HTTPClient

from .servers import LoopbackServer, Reply, Seen

ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"

_FAMILIES = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
    "EdDSA": "OKP",
    "Ed25519": "OKP",
}
#: PyJWT knows Ed25519 (RFC 9864) only by its polymorphic name, EdDSA (RFC 8037).
_PYJWT_NAMES = {"Ed25519": "EdDSA"}
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass(frozen=True)
class Keypair:
    """A private key, its public half, the algorithm it signs with, and its kid."""

    alg: str
    kid: str | None
    private_key: Any

    @classmethod
    def generate(cls, alg: str = "RS256", *, kid: str | None = None, bits: int = 2048) -> Keypair:
        """A fresh key for ``alg``: RSA for RS*/PS*, P-256/384/521 for ES*, else Ed25519."""
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
        algorithm = pyjwt_algorithm(self.alg)
        key = self.private_key if private else self.public_key
        data: dict[str, Any] = algorithm.to_jwk(key, as_dict=True)
        data.update(alg=self.alg, use="sig")
        if self.kid is not None:
            data["kid"] = self.kid
        data.update(extra)
        return {k: v for k, v in data.items() if v is not None}

    def public_pem(self) -> bytes:
        pem: bytes = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

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
        if self.alg in _PYJWT_NAMES:  # PyJWT would write its own name for the alg
            return sign_raw(self, {"alg": self.alg, "typ": "JWT", **headers}, payload)
        return jwt.encode(payload, self.private_key, algorithm=self.alg, headers=headers or None)


def pyjwt_algorithm(alg: str) -> Any:
    """PyJWT's algorithm object for ``alg`` (its EdDSA one for Ed25519)."""
    return jwt.get_algorithm_by_name(_PYJWT_NAMES.get(alg, alg))


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
    key: Keypair,
    *,
    now: float | None = None,
    header: dict[str, Any] | None = None,
    **overrides: Any,
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


def sign_raw(key: Keypair, header: dict[str, Any], payload: dict[str, Any] | bytes) -> str:
    """A token with exactly ``header`` (any content: crit, odd kids) signed by ``key``.

    ``header["alg"]`` picks the algorithm, so it may differ from ``key.alg``.
    """
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url(header)}.{b64url(body)}"
    signature = pyjwt_algorithm(header["alg"]).sign(signing_input.encode(), key.private_key)
    return f"{signing_input}.{b64url(signature)}"


#: The order n of each ECDSA curve's group (SEC 2 v2, sections 2.4.2, 2.5.1, 2.6.1).
CURVE_ORDERS = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "ES512": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}


def ecdsa_twin(token: str, alg: str) -> str:
    """The same header and claims under the other valid ECDSA signature.

    A JWS carries ECDSA signatures as raw ``r || s`` (RFC 7518 §3.4); if
    ``(r, s)`` verifies, so does ``(r, n - s)``: a second token string for one
    signed content, made without the key.
    """
    signing_input, _, encoded = token.rpartition(".")
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    size = len(raw) // 2
    s = int.from_bytes(raw[size:], "big")
    twin = raw[:size] + (CURVE_ORDERS[alg] - s).to_bytes(size, "big")
    return f"{signing_input}.{b64url(twin)}"


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The decoded (header, payload, signature) of a compact token, unverified."""
    head, body, sig = token.split(".")

    def decode(segment: str) -> bytes:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))

    return json.loads(decode(head)), json.loads(decode(body)), decode(sig)


# -- an issuer on a loopback server --------------------------------------------------


class IssuerStub:
    """A handler for the ``serve`` fixture: an issuer's JWKS and metadata, faults on demand.

    Example::

        stub = IssuerStub(key)
        server = serve(stub)
        validator = JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks_uri=server.url + JWKS_PATH)
        stub.publish(key, new_key)  # rotation
        stub.fault = Reply(503)  # outage
    """

    def __init__(self, *keys: Keypair | dict[str, Any]) -> None:
        self.jwks = jwks(*keys)
        #: Path -> JSON document, e.g. discovery metadata.
        self.documents: dict[str, Any] = {}
        #: When set, every request gets this reply instead.
        self.fault: Reply | None = None

    def publish(self, *keys: Keypair | dict[str, Any]) -> None:
        self.jwks = jwks(*keys)

    def __call__(self, seen: Seen) -> Reply:
        if self.fault is not None:
            return self.fault
        if seen.path == JWKS_PATH:
            return Reply(200, self.jwks)
        if seen.path in self.documents:
            return Reply(200, self.documents[seen.path])
        return Reply(404, "not found", {"Content-Type": "text/plain"})


JWKS_PATH = "/jwks.json"


class SharedServer:
    """One loopback server reused by the tests of a module, each with its own handler.

    Stopping a server takes up to half a second (``serve_forever``'s poll
    interval), so a module of fifty tests would spend half a minute in
    teardown. ``use(handler)`` gives the server to the next test with no
    requests recorded. Tests that stop the server use ``serve`` instead.
    """

    def __init__(self) -> None:
        self._handler: Callable[[Seen], Reply] = IssuerStub()
        self.server = LoopbackServer(lambda seen: self._handler(seen))

    def use(self, handler: Callable[[Seen], Reply]) -> LoopbackServer:
        self._handler = handler
        self.server.requests.clear()
        return self.server

    def close(self) -> None:
        self.server.close()


def loopback_client() -> HTTPClient:
    """An HTTP client that opens a connection per request.

    A kept-alive connection to ``LoopbackServer`` stalls ~40 ms per request
    (the server writes headers and body in two sends, and Nagle's algorithm
    waits for the delayed ACK); a fresh connection takes ~3 ms.
    """
    return HTTPClient(pool_size=0)


def fetches(server: LoopbackServer, path: str = JWKS_PATH) -> int:
    """How many requests ``server`` received for ``path``."""
    return sum(1 for seen in server.requests if seen.path == path)


# -- the Flask side -------------------------------------------------------------------


def protected_app(protector: ResourceProtector) -> Flask:
    """A Flask app with a few views guarded by ``protector``.

    ``/profile`` needs scope ``profile``; ``/admin`` scope ``admin``; ``/students``
    ``roles=student``; ``/admins`` ``groups=admins``; ``/captains``
    ``entitlements=captain``. Each answers the token's claims and scope.
    """
    app = Flask(__name__)

    def answer() -> dict[str, Any]:
        token = current_token._get_current_object()
        claims = dict(token) if isinstance(token, Mapping) else {}
        get_scope = getattr(token, "get_scope", None)
        return {"claims": claims, "scope": get_scope() if get_scope else None}

    routes = {
        "/profile": protector("profile"),
        "/admin": protector("admin"),
        "/students": protector(roles=["student"]),
        "/admins": protector(groups=["admins"]),
        "/captains": protector(entitlements=["captain"]),
        "/any": protector(),
    }
    for path, guard in routes.items():
        app.add_url_rule(path, path, guard(answer))
    return app


@dataclass(frozen=True)
class Outcome:
    """What a client sees: the status, the ``error`` code and the challenge."""

    status: int
    error: str | None
    description: str | None
    challenge: str | None
    body: dict[str, Any]


def call(app: Flask, token: str | None, path: str = "/profile") -> Outcome:
    """GET ``path`` with ``token`` as a bearer token (none when None)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = app.test_client().get(path, headers=headers)
    body = response.get_json(silent=True) or {}
    return Outcome(
        response.status_code,
        body.get("error"),
        body.get("error_description"),
        response.headers.get("WWW-Authenticate"),
        body,
    )


def assert_refused(outcome: Outcome, description: str, *, realm: str = "api") -> None:
    """401 invalid_token with ``description``, in the body and in the challenge."""
    assert (outcome.status, outcome.error, outcome.description) == (
        401,
        "invalid_token",
        description,
    ), outcome
    assert outcome.challenge == (
        f'Bearer realm="{realm}", error="invalid_token", error_description="{description}"'
    )


def assert_unavailable(outcome: Outcome, description: str = "signing keys unavailable") -> None:
    """503 temporarily_unavailable with ``description``, and no challenge: an outage."""
    assert (outcome.status, outcome.error, outcome.description) == (
        503,
        "temporarily_unavailable",
        description,
    ), outcome
    assert outcome.challenge is None
