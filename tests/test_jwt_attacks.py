"""Known attacks on JWT validation (RFC 8725): every one is a 401 invalid_token.

Each token goes through a real Flask app and ResourceProtector whose keys come
from a JWKS server on 127.0.0.1. A second, hostile server stands where ``jku``
and ``x5u`` headers point: it must never receive a request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bearerguard import ResourceProtector
from bearerguard.errors import InvalidTokenError
from bearerguard.validators.jwt import JWTBearerTokenValidator

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    SharedServer,
    assert_refused,
    b64url,
    cached_keypair,
    call,
    claims,
    fetches,
    forge,
    jwks,
    loopback_client,
    make_token,
    protected_app,
    segments,
    sign_raw,
)
from .servers import LoopbackServer

RSA = cached_keypair("RS256", "rsa-1")
EC = cached_keypair("ES256", "ec-1")
ATTACKER_RSA = cached_keypair("RS256", "attacker-rsa")
ATTACKER_EC = cached_keypair("ES256", "attacker-ec")


@dataclass
class Scene:
    now: float
    hostile: str  # the hostile server's URL


Attack = Callable[[Scene], str]


def payload(scene: Scene, **overrides: Any) -> dict[str, Any]:
    return claims(scene.now, **{"scope": "profile admin", **overrides})


def header(alg: str = "RS256", kid: Any = "rsa-1", **extra: Any) -> dict[str, Any]:
    return {"alg": alg, "typ": "at+jwt", "kid": kid, **extra}


def valid(scene: Scene) -> str:
    return make_token(RSA, now=scene.now)


def with_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


def hs256_with_public_key(scene: Scene) -> str:
    # The classic confusion: the RSA public key (PEM) as an HMAC secret.
    signing_input = f"{b64url(header('HS256'))}.{b64url(payload(scene))}"
    mac = hmac.new(RSA.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def tampered_payload(scene: Scene) -> str:
    # The same claims with a scope added, under the original signature.
    token = valid(scene)
    original = segments(token)[1]
    return with_segment(token, 1, b64url({**original, "scope": "profile email admin"}))


def truncated_signature(scene: Scene) -> str:
    token = valid(scene)
    return with_segment(token, 2, b64url(segments(token)[2][:-3]))


def tampered_signature(scene: Scene) -> str:
    token = valid(scene)
    signature = token.split(".")[2]
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return with_segment(token, 2, signature[:middle] + flipped + signature[middle + 1 :])


def non_canonical_signature(scene: Scene) -> str:
    # 256 signature bytes leave 4 spare bits in the last character: setting one
    # gives another string that decodes to the same signature.
    token = valid(scene)
    signature = token.split(".")[2]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(signature[-1]) ^ 1]
    return with_segment(token, 2, signature[:-1] + last)


def psychic_signature(scene: Scene) -> str:
    # CVE-2022-21449: an ECDSA signature with r = s = 0.
    return forge(header("ES256", "ec-1"), payload(scene), bytes(64))


def jku_to_hostile(scene: Scene) -> str:
    hdr = header(kid="attacker-rsa", jku=scene.hostile + JWKS_PATH)
    return sign_raw(ATTACKER_RSA, hdr, payload(scene))


def x5u_to_hostile(scene: Scene) -> str:
    hdr = header(kid="attacker-rsa", x5u=scene.hostile + "/cert.pem")
    return sign_raw(ATTACKER_RSA, hdr, payload(scene))


def embedded_jwk(alg: str, attacker: Keypair) -> Attack:
    def attack(scene: Scene) -> str:
        hdr = {"alg": alg, "typ": "at+jwt", "jwk": attacker.jwk(kid=None)}
        return sign_raw(attacker, hdr, payload(scene))

    return attack


def jwk_thumbprint(key: Keypair) -> str:
    """The RFC 7638 SHA-256 thumbprint of an EC key's public JWK, as DPoP's ``jkt``."""
    jwk = key.jwk()
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def bound_to(confirmation: dict[str, Any]) -> Attack:
    """A token validly signed by our key, bound to the thief's key: useless without its proof."""
    return lambda s: make_token(RSA, now=s.now, scope="profile admin", cnf=confirmation)


SENDER_CONSTRAINED = "sender-constrained token presented as a bearer token"
ATTACKS: dict[str, tuple[Attack, str]] = {
    "alg-none": (lambda s: forge(header("none"), payload(s)), "algorithm not allowed"),
    "alg-None": (lambda s: forge(header("None"), payload(s)), "algorithm not allowed"),
    "alg-none-with-signature": (
        lambda s: forge(header("none"), payload(s), b"sig"),
        "algorithm not allowed",
    ),
    "alg-missing": (
        lambda s: forge({"typ": "at+jwt", "kid": "rsa-1"}, payload(s), b"sig"),
        "unknown token",  # not a JWS, so no JWT validator sees it
    ),
    "alg-not-a-string": (
        lambda s: forge(header(["RS256"]), payload(s), b"sig"),
        "algorithm not allowed",
    ),
    "hs256-signed-with-rsa-public-key": (hs256_with_public_key, "algorithm not allowed"),
    "es256-by-attacker-naming-rsa-kid": (
        lambda s: sign_raw(ATTACKER_EC, header("ES256", "rsa-1"), payload(s)),
        "algorithm not allowed",
    ),
    "tampered-payload": (tampered_payload, "invalid signature"),
    "tampered-signature": (tampered_signature, "invalid signature"),
    "truncated-signature": (truncated_signature, "invalid signature"),
    "empty-signature": (lambda s: with_segment(valid(s), 2, ""), "malformed token"),
    "non-canonical-signature": (non_canonical_signature, "malformed token"),
    "psychic-ecdsa-signature": (psychic_signature, "invalid signature"),
    "attacker-key-with-our-kid": (
        lambda s: sign_raw(ATTACKER_RSA, header(), payload(s)),
        "invalid signature",
    ),
    "kid-path-traversal": (
        lambda s: sign_raw(ATTACKER_RSA, header(kid="../../etc/passwd"), payload(s)),
        "unknown signing key",
    ),
    "kid-sql-injection": (
        lambda s: sign_raw(ATTACKER_RSA, header(kid="' OR '1'='1"), payload(s)),
        "unknown signing key",
    ),
    "kid-huge": (
        lambda s: sign_raw(ATTACKER_RSA, header(kid="k" * 4000), payload(s)),
        "unknown signing key",
    ),
    "kid-number": (
        lambda s: sign_raw(RSA, header(kid=123), payload(s)),
        "malformed token",
    ),
    "kid-list": (lambda s: sign_raw(RSA, header(kid=["rsa-1"]), payload(s)), "malformed token"),
    "kid-object": (
        lambda s: sign_raw(RSA, header(kid={"$ne": ""}), payload(s)),
        "malformed token",
    ),
    "jku-to-hostile-server": (jku_to_hostile, "unknown signing key"),
    "x5u-to-hostile-server": (x5u_to_hostile, "unknown signing key"),
    "embedded-jwk-rsa": (embedded_jwk("RS256", ATTACKER_RSA), "invalid signature"),
    "embedded-jwk-ec": (embedded_jwk("ES256", ATTACKER_EC), "invalid signature"),
    "x5c-with-our-kid": (
        lambda s: sign_raw(ATTACKER_RSA, header(x5c=["MIIBIjANBgkq"]), payload(s)),
        "invalid signature",
    ),
    "crit-unknown-extension": (
        lambda s: sign_raw(RSA, header(crit=["exp"], exp=1), payload(s)),
        "unsupported critical header",
    ),
    "crit-empty": (
        lambda s: sign_raw(RSA, header(crit=[]), payload(s)),
        "unsupported critical header",
    ),
    "b64-false": (
        lambda s: sign_raw(RSA, header(b64=False, crit=["b64"]), payload(s)),
        "unsupported critical header",
    ),
    "typ-jwt-when-at+jwt-required": (
        lambda s: make_token(RSA, now=s.now, header={"typ": "JWT"}),
        "wrong token type",
    ),
    "typ-missing-when-required": (
        lambda s: make_token(RSA, now=s.now, header={"typ": None}),
        "wrong token type",
    ),
    # RFC 9449 §7.2 (DPoP), RFC 8705 §3 (mTLS): a bound token is no bearer token.
    "dpop-bound-token-as-bearer": (
        bound_to({"jkt": jwk_thumbprint(ATTACKER_EC)}),
        SENDER_CONSTRAINED,
    ),
    # RFC 8705: a Bearer token over mutual TLS, refused without that certificate.
    "certificate-bound-token-as-bearer": (
        bound_to({"x5t#S256": b64url(hashlib.sha256(b"a client certificate").digest())}),
        "token is bound to a client certificate, and none was presented",
    ),
    "certificate-and-key-bound-token-as-bearer": (
        bound_to({"x5t#S256": b64url(hashlib.sha256(b"a cert").digest()), "jkt": "k"}),
        SENDER_CONSTRAINED,
    ),
    "jwk-bound-token-as-bearer": (bound_to({"jwk": ATTACKER_EC.jwk()}), SENDER_CONSTRAINED),
    "payload-not-json": (
        lambda s: sign_raw(RSA, header(), b"not json"),
        "malformed token",
    ),
    "payload-json-array": (lambda s: sign_raw(RSA, header(), b"[1, 2]"), "malformed token"),
    "exp-infinity": (
        lambda s: sign_raw(RSA, header(), json.dumps(payload(s, exp=float("inf"))).encode()),
        "malformed token",
    ),
}


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[SharedServer, SharedServer]]:
    keys, hostile = SharedServer(), SharedServer()
    yield keys, hostile
    keys.close()
    hostile.close()


@pytest.fixture
def hostile(servers: tuple[SharedServer, SharedServer]) -> Iterator[LoopbackServer]:
    server = servers[1].use(IssuerStub(ATTACKER_RSA, ATTACKER_EC))
    yield server
    assert server.requests == []  # jku, x5u and jwk headers are never followed


@pytest.fixture
def jwks_server(servers: tuple[SharedServer, SharedServer]) -> LoopbackServer:
    return servers[0].use(IssuerStub(RSA, EC))


@pytest.fixture
def app(jwks_server: LoopbackServer, clock: FakeClock) -> Iterator[Flask]:
    http = loopback_client()
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        JWTBearerTokenValidator(
            ISSUER,
            AUDIENCE,
            jwks_uri=jwks_server.url + JWKS_PATH,
            require_typ=True,
            clock=clock,
            http=http,
        )
    )
    yield protected_app(protector)
    http.close()


@pytest.mark.parametrize(
    ("attack", "description"), list(ATTACKS.values()), ids=list(ATTACKS.keys())
)
def test_attack_is_refused(
    app: Flask,
    jwks_server: LoopbackServer,
    hostile: LoopbackServer,
    clock: FakeClock,
    attack: Attack,
    description: str,
) -> None:
    assert call(app, valid(Scene(clock(), hostile.url))).status == 200  # keys are loaded
    token = attack(Scene(clock(), hostile.url))

    assert_refused(call(app, token), description)
    assert fetches(jwks_server) <= 2  # at most one refetch for an unknown kid


# Arbitrary JSON in either segment must end in InvalidTokenError, never a crash.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
header_values = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "ES256", "EdDSA", "none", "HS256"]) | json_values,
        "kid": st.sampled_from(["rsa-1", "ec-1"]) | json_values,
        "typ": json_values,
        "crit": json_values,
    },
)


FUZZED = JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(RSA, EC))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(head=header_values | json_values, body=json_values, signature=st.binary(max_size=80))
def test_arbitrary_tokens_are_refused_cleanly(head: Any, body: Any, signature: bytes) -> None:
    token = f"{b64url(json.dumps(head))}.{b64url(json.dumps(body))}.{b64url(signature)}"

    with pytest.raises(InvalidTokenError):
        FUZZED.validate(token)
