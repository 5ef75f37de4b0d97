"""The JWT validator on its own: signature, key choice, and every claim rule."""

from __future__ import annotations

import copy
import json
import logging
import pickle
import sys
import warnings
from typing import Any

import pytest

from bearerguard.core.frozen import FrozenDict, FrozenList
from bearerguard.errors import InvalidTokenError, TokenExpiredError
from bearerguard.validators.jwt import (
    ANY_AUDIENCE,
    RFC9068_CLAIMS,
    AccessTokenClaims,
    JWTBearerTokenValidator,
)

from .conftest import FakeClock
from .jwtkit import AUDIENCE, ISSUER, Keypair, cached_keypair, claims, jwks, make_token, sign_raw

RSA = cached_keypair("RS256", "rsa-1")
EC = cached_keypair("ES256", "ec-1")
ED = cached_keypair("EdDSA", "ed-1")


def validator(clock: FakeClock, *keys: Keypair | dict[str, Any], **options: Any):
    return JWTBearerTokenValidator(
        ISSUER, AUDIENCE, jwks=jwks(*(keys or (RSA, EC, ED))), clock=clock, **options
    )


def refusal(v: JWTBearerTokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        v.validate(token)
    return caught.value.description


@pytest.mark.parametrize(
    "key",
    [
        RSA,
        EC,
        ED,
        cached_keypair("PS256", "ps-1"),
        cached_keypair("ES384", "ec384-1"),
        cached_keypair("ES512", "ec521-1"),
        cached_keypair("Ed25519", "ed25519-1"),
    ],
    ids=lambda k: k.alg,
)
def test_a_valid_token_is_described(clock: FakeClock, key: Keypair) -> None:
    v = validator(clock, RSA, EC, ED, key)
    token = make_token(key, now=clock(), jti="j-1", scope="profile email")

    info = v.validate(token)

    assert info.scopes == {"profile", "email"}
    assert (info.subject, info.client_id, info.jti) == ("user-1", "client-1", "j-1")
    assert info.expires_at == int(clock()) + 300
    assert info.issued_at == int(clock())
    assert info.token is info.claims
    assert info.token["sub"] == "user-1"
    assert info.token.get_scope() == "profile email"
    assert info.token.header == {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}


def test_scopes_come_from_scp_when_there_is_no_scope(clock: FakeClock) -> None:
    token = make_token(RSA, now=clock(), scope=None, scp=["read", "write"])

    info = validator(clock).validate(token)

    assert info.scopes == {"read", "write"}
    assert info.token.get_scope() == "read write"


def test_client_id_falls_back_to_azp(clock: FakeClock) -> None:
    token = make_token(RSA, now=clock(), client_id=None, azp="spa")

    assert validator(clock).validate(token).client_id == "spa"


def test_claims_are_read_only_but_copy(clock: FakeClock) -> None:
    claims_ = validator(clock).validate(make_token(RSA, now=clock())).token
    assert isinstance(claims_, AccessTokenClaims)

    for change in (
        lambda c: c.__setitem__("scope", "admin"),
        lambda c: c.update(scope="admin"),
        lambda c: c.pop("scope"),
        lambda c: c.setdefault("roles", ["admin"]),
        lambda c: c.clear(),
    ):
        with pytest.raises(TypeError):
            change(claims_)
    assert claims_["scope"] == "profile email"

    mutable = dict(claims_)
    mutable["scope"] = "admin"
    assert copy.deepcopy(claims_) == claims_
    restored = pickle.loads(pickle.dumps(claims_))
    assert restored == claims_ and restored.header == claims_.header


def test_lists_and_objects_in_the_claims_and_header_are_read_only_too(clock: FakeClock) -> None:
    nested = {"roles": ["a"], "deeper": [[1, {"k": "v"}]]}
    token = make_token(RSA, now=clock(), roles=["a", "b"], realm_access=nested, header={"x": [1]})
    claims_ = validator(clock).validate(token).token
    roles, realm = claims_["roles"], claims_["realm_access"]
    inner = realm["deeper"][0]

    changes = [
        lambda: roles.append("admin"),
        lambda: roles.extend(["admin"]),
        lambda: roles.insert(0, "admin"),
        lambda: roles.__setitem__(0, "admin"),
        lambda: roles.__delitem__(0),
        lambda: roles.__iadd__(["admin"]),
        lambda: roles.__imul__(2),
        lambda: roles.pop(),
        lambda: roles.remove("a"),
        lambda: roles.clear(),
        lambda: roles.sort(),
        lambda: roles.reverse(),
        lambda: realm.__setitem__("roles", ["admin"]),
        lambda: realm.update(roles=["admin"]),
        lambda: realm.setdefault("x", 1),
        lambda: realm.__ior__({"roles": ["admin"]}),
        lambda: realm["roles"].append("admin"),
        lambda: inner.append(2),
        lambda: inner[1].__setitem__("k", "changed"),
        lambda: claims_.header["x"].append(2),
    ]
    for change in changes:
        with pytest.raises(TypeError, match="read-only"):
            change()

    assert claims_["roles"] == ["a", "b"] and claims_["realm_access"] == nested
    assert claims_.header["x"] == [1]
    assert isinstance(roles, list) and isinstance(realm, dict) and isinstance(inner[1], dict)
    assert json.loads(json.dumps(claims_))["realm_access"] == nested
    mine = list(roles)  # a private copy takes changes
    mine.append("admin")
    for copied in (copy.copy(realm), copy.deepcopy(realm), pickle.loads(pickle.dumps(realm))):
        assert copied == nested
        with pytest.raises(TypeError):
            copied["deeper"][0].append(2)


@pytest.mark.parametrize(
    "values", [(1, 1.0, True), (True, 1.0, 1), (0, 0.0, False, -0.0)], ids=["1", "true", "0"]
)
def test_shared_header_and_claim_values_keep_their_type(
    clock: FakeClock, values: tuple[Any, ...]
) -> None:
    # Equal values of other types (1 == 1.0 == True) are distinct JSON values:
    # an interned header or claim must not hand one token another's.
    v = validator(clock)
    for value in values:
        token = make_token(RSA, now=clock(), header={"x": value}, acr=value, type=value)

        info = v.validate(token)

        for seen in (info.token.header["x"], info.token["acr"], info.token["type"]):
            assert (type(seen), repr(seen)) == (type(value), repr(value))


def test_freezing_is_not_recursive() -> None:
    # A token nests as deep as the JSON parser allows: freezing must not hit the stack limit.
    deep: Any = ["bottom"]
    for _ in range(sys.getrecursionlimit() * 3):
        deep = [1, {"k": deep}]
    frozen = AccessTokenClaims({"deep": deep})["deep"]

    assert isinstance(frozen, FrozenList) and isinstance(frozen[1], FrozenDict)
    while isinstance(frozen, FrozenList) and frozen != ["bottom"]:
        frozen = frozen[1]["k"]
    assert isinstance(frozen, FrozenList)
    with pytest.raises(TypeError):
        frozen.append(1)


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"exp": -1}, "token expired"),
        ({"exp": 0}, "token expired"),
        ({"exp": None}, "missing claim: exp"),
        ({"exp": "tomorrow"}, "invalid claim: exp"),
        ({"exp": True}, "invalid claim: exp"),
        ({"exp": float("inf")}, "malformed token"),
        ({"nbf": 61}, "token not yet valid"),
        ({"nbf": "soon"}, "invalid claim: nbf"),
        ({"iat": 61}, "token issued in the future"),
        ({"iss": "https://evil.example.com"}, "issuer mismatch"),
        ({"iss": None}, "issuer mismatch"),
        ({"iss": ISSUER + "/"}, "issuer mismatch"),
        ({"aud": "https://other.example.com"}, "audience mismatch"),
        ({"aud": ["https://other.example.com", "x"]}, "audience mismatch"),
        ({"aud": {"https://api.example.com": 1}}, "audience mismatch"),
        ({"aud": None}, "missing claim: aud"),
        ({"sub": 123}, "invalid claim: sub"),
        ({"sub": ["user-1"]}, "invalid claim: sub"),
        ({"sub": {"id": "user-1"}}, "invalid claim: sub"),
    ],
    ids=[
        "exp-passed-by-1s",
        "exp-now",
        "exp-missing",
        "exp-string",
        "exp-bool",
        "exp-infinity",
        "nbf-beyond-leeway",
        "nbf-string",
        "iat-beyond-leeway",
        "iss-other",
        "iss-missing",
        "iss-trailing-slash",
        "aud-other",
        "aud-list-without-ours",
        "aud-object",
        "aud-missing",
        "sub-number",
        "sub-list",
        "sub-object",
    ],
)
def test_claim_rules(clock: FakeClock, overrides: dict[str, Any], description: str) -> None:
    now = int(clock())
    # Times are given relative to now; None removes the claim.
    relative = {
        k: now + v if k in ("exp", "nbf", "iat") and type(v) is int else v
        for k, v in overrides.items()
    }
    token = make_token(RSA, now=now, **relative)

    assert refusal(validator(clock), token) == description


def test_a_null_sub_is_refused_and_no_sub_is_allowed(clock: FakeClock) -> None:
    payload = {**claims(clock()), "sub": None}  # JSON null (claims() drops None)
    null_sub = sign_raw(RSA, {"alg": "RS256", "kid": "rsa-1"}, payload)

    assert refusal(validator(clock), null_sub) == "invalid claim: sub"
    assert validator(clock).validate(make_token(RSA, now=clock(), sub=None)).subject is None


def test_an_expired_token_raises_token_expired(clock: FakeClock) -> None:
    token = make_token(RSA, now=clock(), exp=int(clock()) + 10)
    v = validator(clock)

    assert v.validate(token).expires_at == int(clock()) + 10
    clock.advance(9.9)
    assert v.validate(token).subject == "user-1"
    clock.advance(0.1)
    with pytest.raises(TokenExpiredError):
        v.validate(token)


def test_leeway_applies_to_nbf_and_iat_not_exp(clock: FakeClock) -> None:
    now = int(clock())
    early = make_token(RSA, now=now, nbf=now + 60, iat=now + 60)
    v = validator(clock, leeway=60)

    assert v.validate(early).subject == "user-1"
    assert refusal(validator(clock, leeway=0), early) == "token not yet valid"


def test_audience_may_be_one_of_several(clock: FakeClock) -> None:
    token = make_token(RSA, now=clock(), aud=["https://other.example.com", AUDIENCE])
    v = JWTBearerTokenValidator(
        ISSUER, ["https://x.example.com", AUDIENCE], jwks=jwks(RSA), clock=clock
    )

    assert v.validate(token).subject == "user-1"


def test_any_audience_must_be_asked_for(clock: FakeClock) -> None:
    token = make_token(RSA, now=clock(), aud=None)

    assert refusal(validator(clock), token) == "missing claim: aud"
    v = JWTBearerTokenValidator(ISSUER, ANY_AUDIENCE, jwks=jwks(RSA), clock=clock)
    assert v.validate(token).subject == "user-1"


TYPES = {
    # typ: (accepted with require_typ=True, accepted by default)
    "at+jwt": (True, True),
    "application/at+jwt": (True, True),
    "AT+JWT": (True, True),
    "Application/At+JWT": (True, True),
    "JWT": (False, True),
    "jwt": (False, True),
    "application/jwt": (False, True),
    None: (False, True),  # no typ at all
    # Other kinds of JWT (RFC 8725 §3.11): never an access token.
    "dpop+jwt": (False, False),
    "logout+jwt": (False, False),
    "secevent+jwt": (False, False),
    "id_token+jwt": (False, False),
    "application/dpop+jwt": (False, False),
    "text/at+jwt": (False, False),
    "at+jwt; x=1": (False, False),
}


@pytest.mark.parametrize(
    ("typ", "strict_accepts", "default_accepts"),
    [(typ, *verdicts) for typ, verdicts in TYPES.items()],
    ids=[str(typ) for typ in TYPES],
)
def test_typ(
    clock: FakeClock, typ: str | None, strict_accepts: bool, default_accepts: bool
) -> None:
    token = make_token(RSA, now=clock(), header={"typ": typ})  # None: no typ

    for v, accepted in (
        (validator(clock, require_typ=True), strict_accepts),
        (validator(clock), default_accepts),
    ):
        if accepted:
            assert v.validate(token).subject == "user-1"
        else:
            assert refusal(v, token) == "wrong token type"


@pytest.mark.parametrize("typ", ["", None, ["at+jwt"], {"at+jwt": 1}, 1], ids=repr)
def test_an_empty_or_non_string_typ_is_refused(clock: FakeClock, typ: Any) -> None:
    # sign_raw: PyJWT would drop an empty typ.
    token = sign_raw(RSA, {"alg": "RS256", "kid": "rsa-1", "typ": typ}, claims(clock()))

    assert refusal(validator(clock), token) == "wrong token type"
    assert refusal(validator(clock, require_typ=True), token) == "wrong token type"


def test_required_claims(clock: FakeClock) -> None:
    v = validator(clock, required_claims=RFC9068_CLAIMS)

    assert v.validate(make_token(RSA, now=clock())).jti
    assert refusal(v, make_token(RSA, now=clock(), jti=None)) == "missing claim: jti"
    assert refusal(v, make_token(RSA, now=clock(), client_id=None)) == "missing claim: client_id"
    one = validator(clock, required_claims="azp")  # a string names one claim
    assert refusal(one, make_token(RSA, now=clock())) == "missing claim: azp"


def test_claims_equal_compares_type_and_value(clock: FakeClock) -> None:
    v = validator(clock, claims_equal={"azp": "spa", "email_verified": True})

    good = make_token(RSA, now=clock(), azp="spa", email_verified=True)
    assert v.validate(good).subject == "user-1"
    for overrides, name in (
        ({"azp": "other", "email_verified": True}, "azp"),
        ({"email_verified": True}, "azp"),
        ({"azp": "spa", "email_verified": 1}, "email_verified"),
    ):
        assert refusal(v, make_token(RSA, now=clock(), **overrides)) == f"claim mismatch: {name}"


def test_claims_include_wants_every_value(clock: FakeClock) -> None:
    v = validator(clock, claims_include={"permissions": ["read:a", "write:a"], "amr": "mfa"})

    ok = make_token(RSA, now=clock(), permissions=["read:a", "write:a", "x"], amr="pwd mfa")
    assert v.validate(ok).subject == "user-1"
    lacking = make_token(RSA, now=clock(), permissions=["read:a"], amr=["mfa"])
    assert refusal(v, lacking) == "claim mismatch: permissions"
    wrong_type = make_token(RSA, now=clock(), permissions=["read:a", "write:a"], amr={"mfa": 1})
    assert refusal(v, wrong_type) == "claim mismatch: amr"


def test_claims_check_sees_claims_and_header(clock: FakeClock) -> None:
    seen: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def tenant_active(claims_: Any, header: Any) -> bool:
        seen.append((dict(claims_), dict(header)))
        if claims_.get("tenant") == "suspended":
            raise InvalidTokenError("tenant suspended")
        return claims_.get("tenant") == "acme"

    v = validator(clock, claims_check=tenant_active)

    assert v.validate(make_token(RSA, now=clock(), tenant="acme")).subject == "user-1"
    assert seen[0][0]["tenant"] == "acme" and seen[0][1]["kid"] == "rsa-1"
    assert refusal(v, make_token(RSA, now=clock(), tenant="other")) == "claims check failed"
    assert refusal(v, make_token(RSA, now=clock(), tenant="suspended")) == "tenant suspended"


def test_kid_picks_the_key(clock: FakeClock) -> None:
    other = cached_keypair("RS256", "rsa-2")
    v = validator(clock, RSA, other)

    assert v.validate(make_token(other, now=clock())).subject == "user-1"
    # Signed by rsa-1 but naming rsa-2: verified with rsa-2, so refused.
    assert refusal(v, make_token(RSA, now=clock(), header={"kid": "rsa-2"})) == "invalid signature"


def test_without_kid_the_single_key_of_the_type_is_used(clock: FakeClock) -> None:
    v = validator(clock, RSA, EC, ED)

    for key in (RSA, EC, ED):
        token = make_token(key, now=clock(), header={"kid": None})
        assert v.validate(token).token.header["alg"] == key.alg


def test_without_kid_several_candidate_keys_are_ambiguous(clock: FakeClock) -> None:
    v = validator(clock, RSA, cached_keypair("RS256", "rsa-2"))

    token = make_token(RSA, now=clock(), header={"kid": None})

    assert refusal(v, token) == "ambiguous signing key"


def test_algorithms_limit_what_is_accepted(clock: FakeClock) -> None:
    v = validator(clock, RSA, EC, algorithms=["ES256"])

    assert v.algorithms == {"ES256"}
    assert v.validate(make_token(EC, now=clock())).subject == "user-1"
    assert refusal(v, make_token(RSA, now=clock())) == "algorithm not allowed"


def test_default_algorithms_are_those_of_the_keys(clock: FakeClock) -> None:
    assert validator(clock, RSA).algorithms == {"RS256"}
    assert validator(clock, EC, ED).algorithms == {"ES256", "EdDSA"}
    assert validator(clock, cached_keypair("PS256", "ps-1")).algorithms == {"PS256"}


@pytest.mark.parametrize(
    ("key", "usual"),
    [
        (RSA, {"RS256"}),
        (cached_keypair("PS256", "ps-1"), {"RS256"}),
        (EC, {"ES256"}),
        (cached_keypair("ES384", "ec384-1"), {"ES384"}),
        (cached_keypair("ES512", "ec521-1"), {"ES512"}),
        (ED, {"EdDSA", "Ed25519"}),  # two names of one algorithm (RFC 9864)
        (cached_keypair("Ed25519", "ed25519-1"), {"EdDSA", "Ed25519"}),
    ],
    ids=["rsa", "rsa-used-for-ps256", "p-256", "p-384", "p-521", "eddsa", "ed25519"],
)
def test_a_key_without_alg_verifies_one_algorithm_by_default(
    clock: FakeClock, key: Keypair, usual: set[str]
) -> None:
    # RFC 8725 §3.1: one algorithm per key. An RSA key without alg used to verify
    # RS256 to RS512 and PS256 to PS512 alike.
    v = validator(clock, key.jwk(alg=None))

    assert v.algorithms == usual
    if key.alg in usual:
        assert v.validate(make_token(key, now=clock())).subject == "user-1"
    else:
        assert refusal(v, make_token(key, now=clock())) == "algorithm not allowed"


def test_a_key_without_alg_verifies_the_configured_algorithms_of_its_type(
    clock: FakeClock,
) -> None:
    bare = RSA.jwk(alg=None)
    v = validator(clock, bare, EC, algorithms=["PS256", "RS256", "ES256", "ES384"])

    assert v.algorithms == {"RS256", "PS256", "ES256"}
    for alg in ("RS256", "PS256"):
        token = make_token(Keypair(alg, "rsa-1", RSA.private_key), now=clock())
        assert v.validate(token).subject == "user-1"
    rs384 = make_token(Keypair("RS384", "rsa-1", RSA.private_key), now=clock())
    assert refusal(v, rs384) == "algorithm not allowed"
    # A key with alg verifies only that one, and only if it is allowed.
    assert validator(clock, RSA, EC, algorithms=["PS256", "ES256"]).algorithms == {"ES256"}
    with pytest.raises(ValueError, match="no usable"):
        validator(clock, RSA, algorithms=["PS256"])


def test_a_key_only_verifies_its_own_algorithm(clock: FakeClock) -> None:
    # The RSA JWK says alg RS256: a PS256 signature by the same key is refused.
    pss = Keypair("PS256", "rsa-1", RSA.private_key)
    v = validator(clock, RSA, cached_keypair("PS256", "ps-1"))

    assert v.algorithms == {"RS256", "PS256"}
    assert refusal(v, make_token(pss, now=clock())) == "algorithm not allowed"


def test_ed25519_is_the_fully_specified_name_of_eddsa_with_ed25519(clock: FakeClock) -> None:
    # RFC 9864 deprecates "EdDSA" for "Ed25519"; a key with an alg verifies only it.
    fully_specified = Keypair("Ed25519", "ed-1", ED.private_key)
    v = validator(clock, ED.jwk(alg=None), algorithms=["Ed25519"])

    assert v.algorithms == {"Ed25519"}
    assert v.validate(make_token(fully_specified, now=clock())).token.header["alg"] == "Ed25519"
    assert refusal(v, make_token(ED, now=clock())) == "algorithm not allowed"
    assert refusal(validator(clock, ED), make_token(fully_specified, now=clock())) == (
        "algorithm not allowed"
    )
    tagged = validator(clock, ED.jwk(alg="Ed25519"))
    assert tagged.validate(make_token(fully_specified, now=clock())).subject == "user-1"
    assert refusal(tagged, make_token(ED, now=clock())) == "algorithm not allowed"


def test_peek_expiry_reads_exp_without_verifying(clock: FakeClock) -> None:
    v = validator(clock)

    assert v.peek_expiry(make_token(EC, now=clock(), exp=1234)) == 1234.0
    assert v.peek_expiry("opaque-token") is None


def test_unusable_static_keys_are_skipped_with_a_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    weak = Keypair.generate("RS256", kid="weak", bits=1024)
    unusable = [
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "XYZ", "kid": "strange"},
        EC.jwk(kid="ec-as-rsa", alg="RS256"),
        RSA.jwk(kid="private", private=True, key_ops=None),
        RSA.jwk(kid="enc", use="enc"),
        RSA.jwk(kid="wrap", key_ops=["wrapKey"]),
        weak.jwk(),
        {**RSA.jwk(), "kid": 7},
        {**ED.jwk(kid="ed448"), "crv": "Ed448"},
        {**EC.jwk(kid="k1"), "crv": "secp256k1"},
        "not a key",
    ]
    caplog.set_level(logging.WARNING, "bearerguard")

    v = validator(clock, *unusable, RSA)

    assert v.validate(make_token(RSA, now=clock())).subject == "user-1"
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == len(unusable)
    for kid in ("hmac", "strange", "ec-as-rsa", "private", "enc", "wrap", "weak", "ed448"):
        assert any(f"kid='{kid}'" in message for message in skipped), kid
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about signing with a short key
        weak_token = make_token(weak, now=clock())
    assert refusal(v, weak_token) == "unknown signing key"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"audience": ""}, "audience"),
        ({"audience": []}, "audience"),
        ({"issuer": ""}, "issuer"),
        (
            {"jwks": None, "jwks_uri": "https://as.example.com/jwks", "algorithms": ["HS256"]},
            "HS256",
        ),
        ({"algorithms": ["none"]}, "none"),
        ({"algorithms": []}, "algorithms"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "no usable"),
        ({"jwks": {"keys": "nope"}}, "JWKS"),
        ({"jwks": None, "jwks_uri": "http://jwks.example.com/keys"}, "https"),
        ({"jwks": None, "issuer": "http://as.example.com"}, "https"),
        ({"jwks_uri": "https://as.example.com/jwks"}, "not both"),
        ({"claims_include": {"roles": []}}, "claims_include"),
        ({"leeway": -1}, "leeway"),
    ],
    ids=[
        "audience-empty",
        "audience-empty-list",
        "issuer-empty",
        "hs256",
        "none",
        "no-algorithms",
        "only-symmetric-keys",
        "not-a-jwks",
        "plain-http-jwks-uri",
        "plain-http-issuer-discovery",
        "jwks-and-jwks-uri",
        "empty-include",
        "negative-leeway",
    ],
)
def test_configuration_errors_are_raised_at_once(arguments: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks": jwks(RSA)}
    options.update(arguments)

    with pytest.raises(ValueError, match=message):
        JWTBearerTokenValidator(**options)
