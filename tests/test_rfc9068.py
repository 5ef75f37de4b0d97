"""``bearerguard.rfc9068``: Authlib's RFC 9068 validator, ported by changing the import.

What Authlib's own tests check of it, in this project's words: the
constructor, ``get_jwks()`` (read once, re-read for an unknown kid under the
refetch limit), the strict profile (typ, required claims, claim types), the
request's needs, and symmetric keys only when configured here.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from flask import Flask
from joserfc import jwt as joserfc_jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from bearerguard import ResourceProtector
from bearerguard.errors import (
    InsufficientScopeError,
    InvalidTokenError,
    SigningKeysUnavailableError,
    TokenExpiredError,
)
from bearerguard.rfc9068 import JWTBearerTokenValidator
from bearerguard.validators import RFC9068_CLAIMS
from bearerguard.validators import JWTBearerTokenValidator as BaseValidator

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    assert_refused,
    b64url,
    cached_keypair,
    call,
    claims,
    jwks,
    loopback_client,
    make_token,
    protected_app,
    sign_raw,
)
from .servers import LoopbackServer

RSA = cached_keypair("RS256", "rsa-1")
ROTATED = cached_keypair("ES256", "ec-2")
#: Authlib's tests sign with HS256: a shared secret, made at run time.
SECRET = secrets.token_bytes(32)


class GetJwksValidator(JWTBearerTokenValidator):
    """A user's subclass, as written for Authlib: ``get_jwks()`` returns ``self.keys``.

    It counts its calls; an exception in ``keys`` is raised instead.
    """

    keys: Any = None
    calls = 0

    def get_jwks(self) -> Any:
        self.calls += 1
        if isinstance(self.keys, Exception):
            raise self.keys
        return self.keys


def validator(keys: Any, clock: FakeClock, **options: Any) -> GetJwksValidator:
    v = GetJwksValidator(issuer=ISSUER, resource_server=AUDIENCE, clock=clock, **options)
    v.keys = keys
    return v


def app_for(v: JWTBearerTokenValidator, clock: FakeClock, **options: Any) -> Flask:
    protector = ResourceProtector(clock=clock, **options)
    protector.register_token_validator(v)
    return protected_app(protector)


def oct_jwk(secret: bytes = SECRET, **members: Any) -> dict[str, Any]:
    return {"kty": "oct", "k": b64url(secret), **members}


def hs_token(clock: FakeClock, secret: bytes = SECRET, alg: str = "HS256", **header: Any) -> str:
    """An HMAC-signed token with the RFC 9068 claims (any secret length: no PyJWT check)."""
    return sign_raw_hmac({"alg": alg, "typ": "at+jwt", **header}, claims(clock()), secret)


def sign_raw_hmac(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
    mac = hmac.new(secret, signing_input.encode(), digest[header["alg"]]).digest()
    return f"{signing_input}.{b64url(mac)}"


def refusal(v: JWTBearerTokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        v.validate(token)
    return caught.value.description


# -- the constructor ----------------------------------------------------------------------


def test_the_authlib_constructor_takes_resource_server_as_the_audience(clock: FakeClock) -> None:
    v = validator(jwks(RSA), clock)
    app = app_for(v, clock)

    assert (v.issuer, v.resource_server, v.audiences) == (ISSUER, AUDIENCE, {AUDIENCE})
    assert call(app, make_token(RSA, now=clock()), "/any").body["claims"]["sub"] == "user-1"
    other = make_token(RSA, now=clock(), aud="https://other.example.com")
    assert_refused(call(app, other, "/any"), "audience mismatch")


def test_realm_and_extra_attributes_are_taken_as_authlib_takes_them(clock: FakeClock) -> None:
    positional = GetJwksValidator(ISSUER, AUDIENCE, "photos", error_uri="https://docs.example")
    keyword = GetJwksValidator(ISSUER, AUDIENCE, realm="photos")

    assert (positional.realm, keyword.realm) == ("photos", "photos")
    assert positional.extra_attributes == {"error_uri": "https://docs.example"}


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: BaseValidator(ISSUER, AUDIENCE, resource_server=AUDIENCE), TypeError, "audience"),
        (lambda: BaseValidator(ISSUER, AUDIENCE, jwks_url="https://x"), TypeError, "jwks_uri"),
        (lambda: BaseValidator(ISSUER, AUDIENCE, leway=30), TypeError, "misspelt"),
        (lambda: GetJwksValidator(ISSUER, AUDIENCE, leway=30), TypeError, "misspelt"),
        (lambda: GetJwksValidator(ISSUER, AUDIENCE, audience=AUDIENCE), TypeError, "audience"),
        (lambda: GetJwksValidator(ISSUER, AUDIENCE, "realm", "more"), TypeError, "realm"),
        (lambda: GetJwksValidator(ISSUER, AUDIENCE, jwks=jwks(RSA)), ValueError, "get_jwks"),
        (lambda: GetJwksValidator(ISSUER, AUDIENCE, jwks_uri="https://x"), ValueError, "get_jwks"),
    ],
    ids=[
        "resource_server-on-the-base",
        "jwks_url",
        "non-string-attribute",
        "non-string-attribute-on-rfc9068",
        "audience-on-rfc9068",
        "too-many-positionals",
        "get_jwks-and-jwks",
        "get_jwks-and-jwks_uri",
    ],
)
def test_keywords_that_would_change_meaning_are_refused(
    make: Callable[[], Any], error: type[Exception], message: str
) -> None:
    # Swallowed as challenge attributes, these would have changed nothing.
    with pytest.raises(error, match=message):
        make()


# -- the strict profile: typ, required claims, iss/aud/exp ---------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", None], ids=str)
def test_access_token_types_are_accepted(clock: FakeClock, typ: str | None) -> None:
    app = app_for(validator(jwks(RSA), clock), clock)
    header = {"alg": "RS256", "kid": "rsa-1", "typ": typ}
    token = sign_raw(RSA, {k: v for k, v in header.items() if v is not None}, claims(clock()))

    assert call(app, token, "/any").status == 200


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "invalid", "dpop+jwt", "logout+jwt", 7, ["at+jwt"]], ids=str
)
def test_other_types_are_refused(clock: FakeClock, typ: Any) -> None:
    app = app_for(validator(jwks(RSA), clock), clock)
    token = sign_raw(RSA, {"alg": "RS256", "kid": "rsa-1", "typ": typ}, claims(clock()))

    assert_refused(call(app, token, "/any"), "wrong token type")


def test_require_typ_refuses_a_token_without_typ(clock: FakeClock) -> None:
    app = app_for(validator(jwks(RSA), clock, require_typ=True), clock)
    untyped = sign_raw(RSA, {"alg": "RS256", "kid": "rsa-1"}, claims(clock()))

    assert call(app_for(validator(jwks(RSA), clock), clock), untyped, "/any").status == 200
    assert_refused(call(app, untyped, "/any"), "wrong token type")


@pytest.mark.parametrize("name", RFC9068_CLAIMS)
def test_each_rfc9068_claim_is_required(clock: FakeClock, name: str) -> None:
    app = app_for(validator(jwks(RSA), clock), clock)
    token = make_token(RSA, now=clock(), **{name: None})
    # Without iss the protector cannot route the token to any issuer's validator.
    expected = "untrusted issuer" if name == "iss" else f"missing claim: {name}"

    assert_refused(call(app, token, "/any"), expected)


@pytest.mark.parametrize("name", [n for n in RFC9068_CLAIMS if n != "iss"])
def test_a_null_rfc9068_claim_counts_as_missing(clock: FakeClock, name: str) -> None:
    payload = claims(clock())
    payload[name] = None
    outcome = call(
        app_for(validator(jwks(RSA), clock), clock), RSA.sign(payload, {"typ": "at+jwt"})
    )

    assert (outcome.status, outcome.error) == (401, "invalid_token")
    assert outcome.description in (f"missing claim: {name}", f"invalid claim: {name}")


def test_required_claims_add_to_rfc9068s(clock: FakeClock) -> None:
    v = validator(jwks(RSA), clock, required_claims=["tenant"])

    assert refusal(v, make_token(RSA, now=clock(), sub=None)) == "missing claim: sub"
    assert refusal(v, make_token(RSA, now=clock())) == "missing claim: tenant"
    assert v.validate(make_token(RSA, now=clock(), tenant="acme")).subject == "user-1"


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"aud": "https://other.example.com"}, "audience mismatch"),
        ({"aud": ["https://other.example.com", "x"]}, "audience mismatch"),
        ({"exp": -1}, "token expired"),
        ({"iss": "https://other.example.com"}, "issuer mismatch"),
    ],
    ids=["aud", "aud-list", "exp", "iss"],
)
def test_issuer_audience_and_expiry(
    clock: FakeClock, overrides: dict[str, Any], description: str
) -> None:
    if "exp" in overrides:  # relative to the fake clock
        overrides = {"exp": int(clock()) + overrides["exp"]}
    v = validator(jwks(RSA), clock)

    with pytest.raises(InvalidTokenError) as caught:
        v.authenticate_token(make_token(RSA, now=clock(), **overrides))
    assert caught.value.description == description


# -- claim types (RFC 9068 §2.2.1, OpenID Connect Core §2) ---------------------------------


BAD_TYPES = [
    ("auth_time", "yesterday"),
    ("auth_time", True),
    ("auth_time", None),
    ("amr", "pwd"),
    ("amr", ["pwd", 1]),
    ("amr", {"pwd": True}),
    ("acr", 1),
    ("acr", ["urn:acr:1"]),
]


@pytest.mark.parametrize(("name", "value"), BAD_TYPES, ids=lambda v: repr(v))
def test_authentication_claims_of_the_wrong_type_are_refused(
    clock: FakeClock, name: str, value: Any
) -> None:
    payload = {**claims(clock()), name: value}
    token = RSA.sign(payload, {"typ": "at+jwt"})
    app = app_for(validator(jwks(RSA), clock), clock)

    assert_refused(call(app, token, "/any"), f"invalid claim: {name}")


def test_authentication_claims_of_the_right_type_are_accepted(clock: FakeClock) -> None:
    token = make_token(
        RSA, now=clock(), auth_time=int(clock()) - 60, amr=["pwd", "mfa"], acr="urn:acr:silver"
    )
    app = app_for(validator(jwks(RSA), clock), clock)

    assert call(app, token, "/any").body["claims"]["amr"] == ["pwd", "mfa"]


@pytest.mark.parametrize(
    "strict",
    [{"require_typ": True}, {"required_claims": RFC9068_CLAIMS}],
    ids=["require_typ", "required_claims"],
)
@pytest.mark.parametrize(("name", "value"), BAD_TYPES, ids=lambda v: repr(v))
def test_the_strict_base_validator_checks_authentication_claim_types(
    clock: FakeClock, strict: dict[str, Any], name: str, value: Any
) -> None:
    v = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(RSA), clock=clock, **strict)

    assert refusal(v, RSA.sign({**claims(clock()), name: value}, {"typ": "at+jwt"})) == (
        f"invalid claim: {name}"
    )


def test_the_lax_base_validator_leaves_authentication_claims_to_claims_include(
    clock: FakeClock,
) -> None:
    # Issuer-friendly defaults: a space-separated amr is matched, not refused.
    v = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(RSA), clock=clock, claims_include={"amr": "mfa"})

    assert v.validate(make_token(RSA, now=clock(), amr="pwd mfa")).subject == "user-1"


@pytest.mark.parametrize(("name", "value"), [("jti", 1234), ("client_id", 7), ("jti", None)])
def test_identifiers_that_key_revocations_must_be_strings(
    clock: FakeClock, name: str, value: Any
) -> None:
    # A numeric jti would never match revoke_jti("1234"): refused, in every mode.
    v = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(RSA), clock=clock)

    assert refusal(v, RSA.sign({**claims(clock()), name: value})) == f"invalid claim: {name}"


# -- what a view requires: scope, groups, roles, entitlements -------------------------------


def test_scope_restriction(clock: FakeClock) -> None:
    app = app_for(validator(jwks(RSA), clock), clock)
    token = make_token(RSA, now=clock(), scope=["invalid-scope"])

    assert call(app, token, "/any").status == 200
    outcome = call(app, token, "/profile")
    assert (outcome.status, outcome.error) == (403, "insufficient_scope")
    assert call(app, make_token(RSA, now=clock(), scope="profile"), "/profile").status == 200


@pytest.mark.parametrize(
    ("name", "value", "path"),
    [
        ("groups", "admins", "/admins"),
        ("roles", "student", "/students"),
        ("entitlements", "captain", "/captains"),
    ],
)
def test_groups_roles_and_entitlements(clock: FakeClock, name: str, value: str, path: str) -> None:
    app = app_for(validator(jwks(RSA), clock), clock)
    granted = make_token(RSA, now=clock(), **{name: [value, "other"]})
    lacking = make_token(RSA, now=clock(), **{name: ["invalid"]})

    assert call(app, granted, path).status == 200
    assert call(app, lacking, "/any").status == 200
    outcome = call(app, lacking, path)
    # The documented divergence: Authlib answers 401 invalid_token.
    assert (outcome.status, outcome.error) == (403, "insufficient_scope")
    assert outcome.description == f"token lacks a required {name} value"


def test_authenticate_token_then_validate_token_as_authlib_calls_them(clock: FakeClock) -> None:
    v = validator(jwks(RSA), clock)
    token = v.authenticate_token(make_token(RSA, now=clock(), groups=["admins"]))

    assert token["sub"] == "user-1"
    v.validate_token(token, ["profile"], None)
    v.validate_token(
        token, ["admin", "profile email"], None, groups=["admins"]
    )  # either alternative
    with pytest.raises(InsufficientScopeError):
        v.validate_token(token, ["admin"], None)
    with pytest.raises(InsufficientScopeError):
        v.validate_token(token, None, None, roles=["teacher"])
    clock.advance(301)
    with pytest.raises(TokenExpiredError):
        v.validate_token(token, None, None)


def test_validate_token_checks_typ_as_authlib_does(clock: FakeClock) -> None:
    # Authlib's authenticate_token decodes a typ JWT token; its validate_token refuses it.
    v = validator(jwks(RSA), clock)
    token = v.authenticate_token(make_token(RSA, now=clock(), header={"typ": "JWT"}))

    with pytest.raises(InvalidTokenError, match="wrong token type"):
        v.validate_token(token, None, None)


class BanningValidator(GetJwksValidator):
    """A user's ``authenticate_token`` as written for Authlib: a ban list, and a claim added."""

    banned = frozenset({"mallory"})

    def authenticate_token(self, token_string: str) -> Any:
        token = super().authenticate_token(token_string)
        if token["sub"] in self.banned:
            return None
        return {**token, "tenant": "t-1"}


def test_an_authenticate_token_override_decides_through_the_protector(clock: FakeClock) -> None:
    # Authlib's protector calls authenticate_token for every token; bearerguard
    # calls validate_jws, which must not skip the user's ban list (a silent pass).
    v = BanningValidator(ISSUER, AUDIENCE, clock=clock)
    v.keys = jwks(RSA)
    app = app_for(v, clock)

    banned = call(app, make_token(RSA, now=clock(), sub="mallory"))
    assert_refused(banned, "The access token is invalid.")
    allowed = call(app, make_token(RSA, now=clock()))
    assert allowed.status == 200
    assert allowed.body["claims"]["tenant"] == "t-1", "what it returns is current_token"
    # And its own checks still run first: a forged token never reaches the override.
    forged = make_token(ROTATED, now=clock(), header={"kid": "rsa-1"})
    assert call(app, forged).status == 401


def test_an_authenticate_token_that_returns_no_claims_is_a_503(clock: FakeClock) -> None:
    class Broken(GetJwksValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return "yes"

    v = Broken(ISSUER, AUDIENCE, clock=clock)
    v.keys = jwks(RSA)
    outcome = call(app_for(v, clock), make_token(RSA, now=clock()))
    assert (outcome.status, outcome.error) == (503, "temporarily_unavailable")


@pytest.mark.parametrize(
    "token", ["not.a.jwt", "opaque", "a.b.c.d", ""], ids=["dots", "opaque", "four-parts", "empty"]
)
def test_authenticate_token_refuses_what_is_not_a_jwt(clock: FakeClock, token: str) -> None:
    with pytest.raises(InvalidTokenError):
        validator(jwks(RSA), clock).authenticate_token(token)


def test_a_validate_iss_override_is_honoured_and_its_limit_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    class OnlyOnWeekdays(GetJwksValidator):
        open = True

        def validate_iss(self, claims: Any, iss: str) -> bool:
            return self.open and super().validate_iss(claims, iss)

    caplog.set_level(logging.WARNING, "bearerguard")
    v = OnlyOnWeekdays(ISSUER, AUDIENCE, clock=clock)
    v.keys = jwks(RSA)

    assert any("validate_iss" in r.getMessage() for r in caplog.records)
    assert v.validate(make_token(RSA, now=clock())).subject == "user-1"
    v.open = False
    assert refusal(v, make_token(RSA, now=clock())) == "issuer mismatch"


# -- get_jwks(): read once, re-read for an unknown kid, under the refetch limit ------------


def test_get_jwks_is_called_once_for_many_tokens(clock: FakeClock) -> None:
    v = validator(jwks(RSA), clock)
    app = app_for(v, clock, cache=None)

    for _ in range(5):
        assert call(app, make_token(RSA, now=clock()), "/any").status == 200

    assert v.calls == 1
    assert v.key_set() is v.key_set()  # parsed once, not re-imported per request


def test_an_unknown_kid_rereads_get_jwks_at_most_once_per_interval(clock: FakeClock) -> None:
    v = validator(jwks(RSA), clock, jwks_min_refetch=30)
    app = app_for(v, clock, cache=None)
    assert call(app, make_token(RSA, now=clock()), "/any").status == 200

    assert_refused(call(app, make_token(ROTATED, now=clock()), "/any"), "unknown signing key")
    assert v.calls == 2
    assert_refused(call(app, make_token(ROTATED, now=clock()), "/any"), "unknown signing key")
    assert v.calls == 2  # within the interval: no re-read

    v.keys = jwks(RSA, ROTATED)  # the issuer rotated its keys
    clock.advance(30)
    assert call(app, make_token(ROTATED, now=clock()), "/any").status == 200
    assert v.calls == 3
    assert call(app, make_token(RSA, now=clock()), "/any").status == 200
    assert v.calls == 3


def test_get_jwks_is_reread_when_its_keys_lapse(clock: FakeClock) -> None:
    # A key the user's get_jwks() drops stops verifying within jwks_lifespan.
    v = validator(jwks(RSA, ROTATED), clock, jwks_lifespan=100)
    v.validate(make_token(RSA, now=clock()))
    v.keys = jwks(ROTATED)

    clock.advance(95)  # into the last tenth of the lifespan: refreshed
    assert v.validate(make_token(ROTATED, now=clock())).subject == "user-1"
    assert v.calls == 2
    assert refusal(v, make_token(RSA, now=clock())) == "unknown signing key"
    assert v.calls == 3  # one re-read for the kid it no longer knows


def test_a_failing_get_jwks_is_a_503_never_cached_and_logged_by_type(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    v = validator(RuntimeError("db at postgres://admin:hunter2@db down"), clock)
    app = app_for(v, clock)
    token = make_token(RSA, now=clock())
    caplog.set_level(logging.WARNING, "bearerguard")

    outcome = call(app, token, "/any")

    assert (outcome.status, outcome.error) == (503, "temporarily_unavailable")
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)
    assert not any("hunter2" in r.getMessage() for r in caplog.records)
    v.keys = jwks(RSA)
    assert call(app, token, "/any").status == 503  # retried no sooner than the interval
    clock.advance(30)
    assert call(app, token, "/any").status == 200  # the 503 was not cached


def test_get_jwks_of_an_unknown_shape_is_a_503_that_says_why(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    v = validator([RSA.jwk()], clock)  # a list: Authlib does not take one either
    caplog.set_level(logging.WARNING, "bearerguard")

    assert call(app_for(v, clock), make_token(RSA, now=clock()), "/any").status == 503
    assert any("returned a list" in r.getMessage() for r in caplog.records)


def _certificate(key: Keypair) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key.private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: Keypair) -> str:
    return key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


SHAPES: dict[str, Callable[[], Any]] = {
    "joserfc-keyset-of-private-keys": lambda: KeySet.import_key_set(jwks(RSA.jwk(private=True))),
    "joserfc-key": lambda: RSAKey.import_key(RSA.jwk()),
    "jwks-dict": lambda: jwks(RSA),
    "jwks-dict-of-private-keys": lambda: jwks(RSA.jwk(private=True)),
    "jwk-dict": lambda: RSA.jwk(),
    "jwks-json-text": lambda: json.dumps(jwks(RSA)),
    "pem-public-key": lambda: RSA.public_pem(),
    "pem-private-key": lambda: _private_pem(RSA),
    "pem-certificate": lambda: _certificate(RSA),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_get_jwks_may_return_what_authlib_accepts(
    clock: FakeClock, shape: Callable[[], Any]
) -> None:
    v = validator(shape(), clock)

    # A single key without kid verifies whatever kid the token names, as in Authlib.
    assert v.validate(make_token(RSA, now=clock())).subject == "user-1"
    (key,) = v.key_set().keys
    assert not hasattr(key.key, "private_bytes")  # only the public half is kept


# -- symmetric keys: configured here, never fetched ------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        oct_jwk(),
        jwks(oct_jwk(kid="hmac-1")),
        SECRET.hex(),
    ],
    ids=["jwk", "jwks", "text-secret"],
)
def test_hs256_with_a_local_oct_key(clock: FakeClock, keys: Any) -> None:
    secret = SECRET.hex().encode() if isinstance(keys, str) else SECRET
    kid = {"kid": "hmac-1"} if isinstance(keys, dict) and "keys" in keys else {}
    app = app_for(validator(keys, clock), clock)

    assert call(app, hs_token(clock, secret, **kid), "/any").status == 200
    assert_refused(
        call(app, hs_token(clock, secrets.token_bytes(32), **kid), "/any"), "invalid signature"
    )


def test_hs256_with_a_joserfc_oct_key_as_in_authlibs_tests(clock: FakeClock) -> None:
    key = OctKey.generate_key()
    v = validator(key, clock)
    token = joserfc_jwt.encode({"alg": "HS256"}, claims(clock()), key)  # typ: JWT

    assert v.authenticate_token(token)["sub"] == "user-1"
    assert_refused(call(app_for(v, clock), token, "/any"), "wrong token type")
    other = joserfc_jwt.encode({"alg": "HS256"}, claims(clock()), OctKey.generate_key())
    with pytest.raises(InvalidTokenError, match="invalid signature"):
        v.authenticate_token(other)


def test_hs256_with_an_oct_key_given_as_jwks(clock: FakeClock) -> None:
    v = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(oct_jwk(kid="hmac-1")), clock=clock)

    assert v.algorithms == {"HS256"}
    assert v.validate(hs_token(clock, kid="hmac-1")).subject == "user-1"
    assert SECRET.hex() not in repr(v.key_set().keys) and str(SECRET) not in repr(v.key_set().keys)


def test_an_hs_algorithm_needs_a_key_as_long_as_its_hash(clock: FakeClock) -> None:
    # RFC 7518 §3.2: a 32-byte secret is for HS256 only; 64 bytes may serve all
    # three, when configured so (one algorithm per key by default, RFC 8725 §3.1).
    hs_all = ["HS256", "HS384", "HS512"]
    v = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(oct_jwk()), algorithms=hs_all, clock=clock)
    long_secret = secrets.token_bytes(64)
    w = BaseValidator(
        ISSUER, AUDIENCE, jwks=jwks(oct_jwk(long_secret)), algorithms=hs_all, clock=clock
    )
    default = BaseValidator(ISSUER, AUDIENCE, jwks=jwks(oct_jwk(long_secret)), clock=clock)

    assert refusal(v, hs_token(clock, alg="HS512")) == "algorithm not allowed"
    assert default.algorithms == {"HS256"}
    assert w.algorithms == {"HS256", "HS384", "HS512"}
    assert w.validate(hs_token(clock, long_secret, alg="HS512")).subject == "user-1"


@pytest.mark.parametrize(
    "jwk",
    [
        oct_jwk(secrets.token_bytes(16), kid="short"),
        oct_jwk(RSA.public_pem(), kid="pem"),
        oct_jwk(json.dumps(RSA.jwk()).encode(), kid="jwk-text"),
        oct_jwk(alg="RS256", kid="rsa-alg"),
    ],
    ids=["shorter-than-the-hash", "a-public-key-as-secret", "a-jwk-as-secret", "asymmetric-alg"],
)
def test_unsafe_oct_keys_are_skipped_even_when_local(
    clock: FakeClock, jwk: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bearerguard")

    with pytest.raises(ValueError, match="no usable"):
        BaseValidator(ISSUER, AUDIENCE, jwks=jwks(jwk), clock=clock)
    assert any(f"kid='{jwk['kid']}'" in r.getMessage() for r in caplog.records)


def test_an_oct_key_from_a_jwks_uri_is_never_used(
    serve: Callable[[Any], LoopbackServer], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(IssuerStub(oct_jwk(kid="hmac-1"), RSA))
    caplog.set_level(logging.WARNING, "bearerguard")
    v = JWTBearerTokenValidator(
        ISSUER, AUDIENCE, jwks_uri=server.url + JWKS_PATH, clock=clock, http=loopback_client()
    )

    assert v.validate(make_token(RSA, now=clock())).subject == "user-1"
    assert [key.kid for key in v.key_set().keys] == ["rsa-1"]
    assert refusal(v, hs_token(clock, kid="hmac-1")) == "algorithm not allowed"
    assert any("kid='hmac-1'" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="HS256"):
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks_uri=server.url, algorithms=["HS256"])


def test_an_oct_key_from_discovery_is_never_used(
    serve: Callable[[Any], LoopbackServer], clock: FakeClock
) -> None:
    stub = IssuerStub(oct_jwk())
    server = serve(stub)
    stub.documents["/.well-known/openid-configuration"] = {
        "issuer": server.url,
        "jwks_uri": server.url + JWKS_PATH,
    }
    v = JWTBearerTokenValidator(server.url, AUDIENCE, clock=clock, http=loopback_client())
    token = sign_raw_hmac(
        {"alg": "HS256", "typ": "at+jwt"}, claims(clock(), iss=server.url), SECRET
    )

    assert refusal(v, token) == "algorithm not allowed"
    with pytest.raises(SigningKeysUnavailableError):  # an outage (503), not a verdict
        v.validate(make_token(RSA, now=clock(), iss=server.url))
    stub.publish(oct_jwk(), RSA)
    clock.advance(30)  # past the retry interval of the keyless fetch
    assert v.validate(make_token(RSA, now=clock(), iss=server.url)).subject == "user-1"
    assert [key.kid for key in v.key_set().keys] == ["rsa-1"]
    assert refusal(v, token) == "algorithm not allowed"


def _hs256_keyed_with(secret: bytes, clock: FakeClock, **header: Any) -> str:
    return sign_raw_hmac({"alg": "HS256", "typ": "at+jwt", **header}, claims(clock()), secret)


@pytest.mark.parametrize(
    "secret",
    [RSA.public_pem(), json.dumps(RSA.jwk()).encode(), b64url(json.dumps(RSA.jwk())).encode()],
    ids=["public-pem", "jwk-json", "jwk-b64"],
)
@pytest.mark.parametrize("kid", ["rsa-1", None], ids=["kid", "no-kid"])
def test_an_asymmetric_key_never_verifies_hs256(
    clock: FakeClock, secret: bytes, kid: str | None
) -> None:
    # The classic confusion, with keys from get_jwks() (where HS* is allowed).
    app = app_for(validator(jwks(RSA), clock), clock)
    token = _hs256_keyed_with(secret, clock, **({"kid": kid} if kid else {}))

    outcome = call(app, token, "/any")

    assert (outcome.status, outcome.error) == (401, "invalid_token")
    assert outcome.description in ("algorithm not allowed", "unknown signing key")


def test_an_oct_key_never_verifies_rs256(clock: FakeClock) -> None:
    app = app_for(validator(jwks(oct_jwk(kid="rsa-1")), clock), clock)

    assert_refused(call(app, make_token(RSA, now=clock()), "/any"), "algorithm not allowed")


def test_a_pyjwt_hs256_token_verifies_with_the_same_secret(clock: FakeClock) -> None:
    # Interoperability: a token PyJWT signs, not this file's own HMAC helper.
    token = jwt.encode(claims(clock()), SECRET, algorithm="HS256", headers={"typ": "at+jwt"})

    assert validator(oct_jwk(), clock).validate(token).subject == "user-1"
