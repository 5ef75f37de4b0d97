"""The steps of bearerguard.jose: check() is its steps, run in order, nothing else.

``bearerguard verify`` prints each step; the validator runs ``check()``. These
tests hold them to one another over every configurable rule, so the command
can never explain a verdict the validator did not reach.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from bearerguard.errors import InvalidTokenError
from bearerguard.jose.claims import ANY_AUDIENCE, RFC9068_CLAIMS, ClaimsPolicy
from bearerguard.jose.jws import HeaderPolicy, extract

from .jwtkit import AUDIENCE, ISSUER, claims, forge

NOW = time.time()


def _first_refusal(steps: Any, *args: Any) -> str | None:
    for _name, step in steps:
        try:
            step(*args)
        except InvalidTokenError as refusal:
            return refusal.description
    return None


def _refusal(check: Callable[..., None], *args: Any) -> str | None:
    try:
        check(*args)
    except InvalidTokenError as refusal:
        return refusal.description
    return None


POLICY = ClaimsPolicy.configure(
    ISSUER,
    AUDIENCE,
    leeway=30,
    require_typ=True,
    required_claims=RFC9068_CLAIMS,
    claims_equal={"tenant": "t-1"},
    claims_include={"groups": "staff"},
    claims_check=lambda c, h: c.get("sub") != "mallory",
)

GOOD = claims(NOW, tenant="t-1", groups=["staff", "ops"])
#: Each breaks one rule, some two (to pin the order), and the refusal it gets.
CLAIMS: dict[str, tuple[Mapping[str, Any], str | None]] = {
    "valid": (GOOD, None),
    "issuer-and-expired": (
        {**GOOD, "iss": "https://evil.example", "exp": NOW - 1},
        "issuer mismatch",
    ),
    "sub-number-and-expired": ({**GOOD, "sub": 1, "exp": NOW - 1}, "invalid claim: sub"),
    "expired": ({**GOOD, "exp": NOW - 1}, "token expired"),
    "no-exp": ({k: v for k, v in GOOD.items() if k != "exp"}, "missing claim: exp"),
    "nbf-in-leeway": ({**GOOD, "nbf": NOW + 20}, None),
    "nbf-future": ({**GOOD, "nbf": NOW + 60}, "token not yet valid"),
    "iat-future": ({**GOOD, "iat": NOW + 60}, "token issued in the future"),
    "cnf-and-bad-aud": (
        {**GOOD, "cnf": {"jkt": "x"}, "aud": "other"},
        "sender-constrained token presented as a bearer token",
    ),
    "amr-text": ({**GOOD, "amr": "pwd"}, "invalid claim: amr"),
    "auth_time-text": ({**GOOD, "auth_time": "noon"}, "invalid claim: auth_time"),
    "acr-number": ({**GOOD, "acr": 2}, "invalid claim: acr"),
    "aud": ({**GOOD, "aud": ["other"]}, "audience mismatch"),
    "no-aud": ({k: v for k, v in GOOD.items() if k != "aud"}, "missing claim: aud"),
    "no-jti": ({k: v for k, v in GOOD.items() if k != "jti"}, "missing claim: jti"),
    "tenant": ({**GOOD, "tenant": "t-2"}, "claim mismatch: tenant"),
    "groups": ({**GOOD, "groups": "ops"}, "claim mismatch: groups"),
    "custom": ({**GOOD, "sub": "mallory"}, "claims check failed"),
}


@pytest.mark.parametrize(("payload", "expected"), list(CLAIMS.values()), ids=list(CLAIMS))
def test_claims_check_is_its_steps_in_order(
    payload: Mapping[str, Any], expected: str | None
) -> None:
    header: dict[str, Any] = {"alg": "RS256"}
    assert _first_refusal(POLICY.steps(), payload, header, NOW) == expected
    assert _refusal(POLICY.check, payload, header, NOW) == expected


def test_rules_not_configured_are_no_steps() -> None:
    bare = ClaimsPolicy.configure(ISSUER, ANY_AUDIENCE)
    names = [name for name, _ in bare.steps()]
    assert names == ["iss", "sub", "exp", "nbf", "iat", "cnf", "claim types"]
    assert [name for name, _ in POLICY.steps()][-5:] == [
        "aud", "required", "claims_equal", "claims_include", "claims_check",
    ]  # fmt: skip


HEADERS: dict[str, dict[str, Any]] = {
    "valid": {"alg": "RS256", "typ": "at+jwt", "kid": "k"},
    "alg-none-and-crit": {"alg": "none", "crit": ["b64"]},
    "crit-and-kid-number": {"alg": "RS256", "crit": ["x"], "kid": 1},
    "b64": {"alg": "RS256", "b64": False},
    "kid-number-and-typ": {"alg": "RS256", "kid": 1, "typ": "dpop+jwt"},
    "typ-jwt": {"alg": "RS256", "typ": "JWT"},
    "no-typ": {"alg": "RS256"},
}


@pytest.mark.parametrize("header", list(HEADERS.values()), ids=list(HEADERS))
@pytest.mark.parametrize("require_typ", [False, True], ids=["lax", "at+jwt"])
def test_header_check_is_its_steps_in_order(header: dict[str, Any], require_typ: bool) -> None:
    policy = HeaderPolicy(frozenset({"RS256"}), require_typ)
    expected = _first_refusal(policy.steps(), header)
    assert _refusal(policy.check, header) == expected


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d", "e30.e30.", "e30.e30.c2ln=", "e30+.e30.c2ln", "é30.e30.c2ln"],
    ids=["empty", "one", "two", "four", "no-signature", "padded", "plus", "non-ascii"],
)
def test_extract_refuses_what_is_not_a_strict_compact_jws(token: str) -> None:
    with pytest.raises(InvalidTokenError, match="malformed token"):
        jws = extract(token)
        jws.signature  # noqa: B018 - decoded when checked: it is refused then


def test_extract_reuses_what_the_router_decoded_but_checks_the_segments() -> None:
    token = forge({"alg": "RS256"}, {"sub": "s"}, b"sig")
    jws = extract(token, ({"alg": "RS256"}, {"sub": "s"}))
    assert (jws.header, jws.payload, jws.signature) == ({"alg": "RS256"}, {"sub": "s"}, b"sig")
    assert jws.signing_input == token.rpartition(".")[0]
    head, body, sig = token.split(".")
    with pytest.raises(InvalidTokenError, match="malformed token"):
        extract(f"{head}=.{body}.{sig}", ({"alg": "RS256"}, {"sub": "s"}))
