"""JWTs through a real Flask app and ResourceProtector: routing, scopes, cache, revocation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, jsonify

from bearerguard import ResourceProtector, current_token
from bearerguard.errors import InvalidTokenError
from bearerguard.jose import jws
from bearerguard.transport import HTTPClient
from bearerguard.validators import BearerTokenValidator
from bearerguard.validators.base import TokenInfo
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
    cached_keypair,
    call,
    claims,
    fetches,
    jwks,
    loopback_client,
    make_token,
    protected_app,
)

RSA = cached_keypair("RS256", "rsa-1")
EC = cached_keypair("ES256", "ec-1")
ED = cached_keypair("EdDSA", "ed-1")


class CountingValidator(JWTBearerTokenValidator):
    """Counts signature checks (cache misses) at the one override point, ``validate_jws``."""

    calls = 0

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        self.calls += 1
        return super().validate_jws(token_string, header, claims)


class DictTokens(BearerTokenValidator):
    """An opaque-token validator backed by a dict, as an app would write one."""

    def __init__(self, tokens: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.tokens = tokens
        self.asked: list[str] = []

    def authenticate_token(self, token_string: str) -> Any:
        self.asked.append(token_string)
        return self.tokens.get(token_string)


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedServer]:
    shared = SharedServer()
    yield shared
    shared.close()


@pytest.fixture
def http() -> Iterator[HTTPClient]:
    client = loopback_client()
    yield client
    client.close()


@pytest.fixture
def protector(clock: FakeClock) -> ResourceProtector:
    return ResourceProtector(clock=clock)


@pytest.fixture
def validator(protector: ResourceProtector, clock: FakeClock) -> CountingValidator:
    v = CountingValidator(ISSUER, AUDIENCE, jwks=jwks(RSA, EC, ED), clock=clock)
    protector.register_token_validator(v)
    return v


@pytest.fixture
def app(protector: ResourceProtector, validator: CountingValidator) -> Flask:
    return protected_app(protector)


def token(clock: FakeClock, key: Keypair = RSA, **overrides: Any) -> str:
    return make_token(key, now=clock(), **overrides)


@pytest.mark.parametrize("key", [RSA, EC, ED], ids=lambda k: k.alg)
def test_a_valid_jwt_reaches_the_view(app: Flask, clock: FakeClock, key: Keypair) -> None:
    outcome = call(app, token(clock, key, jti="j-1"))

    assert outcome.status == 200
    assert outcome.body["claims"]["sub"] == "user-1"
    assert outcome.body["claims"]["jti"] == "j-1"
    assert outcome.body["scope"] == "profile email"


@pytest.mark.parametrize(
    ("path", "claims", "status"),
    [
        ("/admin", {}, 403),
        ("/students", {"roles": ["student", "tutor"]}, 200),
        ("/students", {"roles": ["tutor"]}, 403),
        ("/admins", {"groups": "staff admins"}, 200),
        ("/admins", {}, 403),
        ("/captains", {"entitlements": ["captain"]}, 200),
        ("/captains", {"entitlements": "sailor"}, 403),
    ],
    ids=[
        "scope-lacking",
        "role-present",
        "role-lacking",
        "group-in-string",
        "group-missing",
        "entitlement-present",
        "entitlement-lacking",
    ],
)
def test_scopes_and_rfc9068_authorization_claims(
    app: Flask, clock: FakeClock, path: str, claims: dict[str, Any], status: int
) -> None:
    outcome = call(app, token(clock, **claims), path)

    assert outcome.status == status
    if status == 403:
        assert outcome.error == "insufficient_scope"
        assert outcome.challenge is not None
        assert outcome.challenge.startswith('Bearer realm="api", error="insufficient_scope"')


def test_scope_from_scp_list(app: Flask, clock: FakeClock) -> None:
    assert call(app, token(clock, scope=None, scp=["profile"])).status == 200
    assert call(app, token(clock, scope=None, scp=["email"])).status == 403


@pytest.mark.parametrize(
    ("overrides", "description"),
    [
        ({"exp": -1}, "token expired"),
        ({"aud": "https://other.example.com"}, "audience mismatch"),
        ({"nbf": 3600}, "token not yet valid"),
    ],
    ids=["expired", "audience", "not-yet-valid"],
)
def test_claim_refusals_are_401_invalid_token(
    app: Flask, clock: FakeClock, overrides: dict[str, int | str], description: str
) -> None:
    now = int(clock())
    relative = {k: now + v if isinstance(v, int) else v for k, v in overrides.items()}

    assert_refused(call(app, token(clock, **relative)), description)


def test_an_untrusted_issuer_is_refused_without_a_network_call(
    shared: SharedServer, protector: ResourceProtector, clock: FakeClock, http: HTTPClient
) -> None:
    server = shared.use(IssuerStub(RSA))
    protector.register_token_validator(
        JWTBearerTokenValidator(
            ISSUER, AUDIENCE, jwks_uri=server.url + JWKS_PATH, clock=clock, http=http
        )
    )
    app = protected_app(protector)

    outcome = call(app, token(clock, iss="https://evil.example.com"))

    assert_refused(outcome, "untrusted issuer")
    assert server.requests == []


def test_several_issuers_side_by_side_with_opaque_tokens(
    shared: SharedServer, protector: ResourceProtector, clock: FakeClock, http: HTTPClient
) -> None:
    other_issuer = "https://login.partner.example"
    server = shared.use(IssuerStub(EC))
    static = CountingValidator(ISSUER, AUDIENCE, jwks=jwks(RSA), clock=clock)
    fetched = CountingValidator(
        other_issuer, AUDIENCE, jwks_uri=server.url + JWKS_PATH, clock=clock, http=http
    )
    opaque = DictTokens({"opaque-token-1": {"scope": "profile", "exp": clock() + 60}})
    for v in (static, fetched, opaque):
        protector.register_token_validator(v)
    app = protected_app(protector)

    assert call(app, token(clock, RSA)).status == 200
    assert call(app, token(clock, EC, iss=other_issuer)).status == 200
    assert call(app, "opaque-token-1").status == 200
    assert (static.calls, fetched.calls) == (1, 1)
    assert opaque.asked == ["opaque-token-1"]  # no JWT was offered to it

    # A token signed by one issuer's key but naming the other issuer fails there.
    assert_refused(call(app, token(clock, RSA, iss=other_issuer)), "unknown signing key")
    assert_refused(call(app, token(clock, EC)), "algorithm not allowed")  # RSA keys only
    assert_refused(call(app, "opaque-token-2"), "unknown token")
    assert opaque.asked == ["opaque-token-1", "opaque-token-2"]
    assert fetches(server) == 2  # the first load, and one refetch for the unknown kid


def test_each_token_is_verified_once(
    app: Flask, protector: ResourceProtector, validator: CountingValidator, clock: FakeClock
) -> None:
    t = token(clock)

    for _ in range(5):
        assert call(app, t).status == 200

    assert validator.calls == 1
    assert protector.stats()["cache"]["hits"] >= 4


def test_a_refused_token_is_remembered_briefly(
    app: Flask, validator: CountingValidator, clock: FakeClock
) -> None:
    forged = token(clock, Keypair("RS256", "rsa-1", cached_keypair("RS256", "x").private_key))

    for _ in range(3):
        assert_refused(call(app, forged), "invalid signature")

    assert validator.calls == 1


def test_the_cache_entry_never_outlives_exp(
    app: Flask, validator: CountingValidator, clock: FakeClock
) -> None:
    t = token(clock, exp=int(clock()) + 100)
    assert call(app, t).status == 200
    clock.advance(99.9)
    assert call(app, t).status == 200
    assert validator.calls == 1

    clock.advance(0.1)
    assert_refused(call(app, t), "token expired")
    assert validator.calls == 2


def test_revoking_a_jwt_refuses_it_until_exp(
    app: Flask, protector: ResourceProtector, clock: FakeClock
) -> None:
    exp = int(clock()) + 120
    t = token(clock, exp=exp)
    assert call(app, t).status == 200

    protector.revoke(t)

    assert_refused(call(app, t), "token revoked")
    clock.advance(119)
    assert_refused(call(app, t), "token revoked")
    clock.advance(1)
    assert_refused(call(app, t), "token expired")
    assert call(app, token(clock)).status == 200  # other tokens are untouched


def test_revoking_a_jwt_never_seen_uses_its_exp(
    app: Flask, protector: ResourceProtector, clock: FakeClock
) -> None:
    exp = int(clock()) + 120
    t = token(clock, exp=exp)

    protector.revoke(t)

    assert_refused(call(app, t), "token revoked")
    clock.advance(119)
    assert_refused(call(app, t), "token revoked")


def test_revoking_by_jti_and_subject(
    app: Flask, protector: ResourceProtector, clock: FakeClock
) -> None:
    by_jti = token(clock, jti="j-9")
    by_subject = token(clock, sub="user-9")
    assert call(app, by_jti).status == 200
    assert call(app, by_subject).status == 200

    protector.revoke_jti("j-9", clock() + 300)
    protector.revoke_subject("user-9")

    assert_refused(call(app, by_jti), "token revoked")
    assert_refused(call(app, by_subject), "token revoked")
    clock.advance(1)
    assert call(app, token(clock, sub="user-9")).status == 200  # issued after the rule


def test_a_subject_that_is_not_a_string_cannot_escape_revoke_subject(
    app: Flask, protector: ResourceProtector, clock: FakeClock
) -> None:
    numeric = token(clock, sub=9)
    protector.revoke_subject("9")

    # Were it accepted, its subject would be no string, and the rule would miss it.
    assert_refused(call(app, numeric), "invalid claim: sub")
    assert call(app, token(clock, sub="user-10")).status == 200


def test_a_view_cannot_change_a_cached_tokens_claims_for_later_requests(
    protector: ResourceProtector, validator: CountingValidator, clock: FakeClock
) -> None:
    app = Flask(__name__)
    refused: list[int] = []

    @app.get("/promote")
    @protector()
    def promote() -> Any:
        current_token["roles"] += ["admin"]  # TypeError: a 500 for this request only
        return "promoted"

    @app.get("/promote-nested")
    @protector()
    def promote_nested() -> Any:
        changes = (
            lambda: current_token["roles"].append("admin"),
            lambda: current_token["realm_access"]["roles"].append("admin"),
            lambda: current_token["realm_access"].update(roles=["admin"]),
            lambda: current_token.header.update(alg="none"),
        )
        for number, change in enumerate(changes):
            try:
                change()
            except TypeError:
                refused.append(number)
        mine = dict(current_token)  # a private copy takes any change
        mine["roles"] = [*mine["roles"], "admin"]
        return jsonify(mine)

    @app.get("/admins")
    @protector(roles=["admin"])
    def admins() -> Any:
        return "admin"

    @app.get("/claims")
    @protector()
    def claims() -> Any:
        # json.dumps sees a dict and a list as ever: no copy needed to answer them.
        return jsonify(claims=current_token._get_current_object(), header=current_token.header)

    t = token(clock, roles=["student"], realm_access={"roles": ["student"]})

    assert call(app, t, "/promote").status == 500
    assert call(app, t, "/admins").status == 403
    outcome = call(app, t, "/promote-nested")
    assert (outcome.status, outcome.body["roles"]) == (200, ["student", "admin"])
    assert refused == [0, 1, 2, 3]
    assert call(app, t, "/admins").status == 403
    seen = call(app, t, "/claims").body
    assert (seen["claims"]["roles"], seen["claims"]["realm_access"]) == (
        ["student"],
        {"roles": ["student"]},
    )
    assert seen["header"]["alg"] == "RS256"
    assert validator.calls == 1  # every request above shared the one cached token


def test_the_validator_follows_the_protectors_clock(clock: FakeClock) -> None:
    protector = ResourceProtector(clock=clock)  # the fake clock is given only here
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(RSA)))
    app = protected_app(protector)
    t = token(clock, exp=int(clock()) + 10)

    assert call(app, t).status == 200
    clock.advance(10)
    assert_refused(call(app, t), "token expired")


class BanningValidator(JWTBearerTokenValidator):
    """A subclass that refuses more, at the one override point."""

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        info = super().validate_jws(token_string, header, claims)
        if info.subject == "mallory":
            raise InvalidTokenError("banned subject")
        return info


def test_validate_jws_is_the_one_override_point(clock: FakeClock) -> None:
    # The protector calls validate_jws, and so does validate(): an override
    # refuses on both paths (no other method to override, none skipped).
    v = BanningValidator(ISSUER, AUDIENCE, jwks=jwks(RSA), clock=clock)
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(v)
    app = protected_app(protector)

    assert_refused(call(app, token(clock, sub="mallory")), "banned subject")
    assert call(app, token(clock)).status == 200
    with pytest.raises(InvalidTokenError, match="banned subject"):
        v.validate(token(clock, sub="mallory"))


def test_overriding_validate_instead_of_validate_jws_is_a_type_error() -> None:
    # The protector calls validate_jws for every JWT: a check written in an
    # override of validate() would never run there, every token passing it.
    with pytest.raises(TypeError, match=r"override validate_jws"):

        class Wrapped(JWTBearerTokenValidator):
            def validate(self, token_string: str) -> TokenInfo:
                raise InvalidTokenError("never")


# -- the header memo (bearerguard.jose.jws) ---------------------------------------------


def test_tokens_of_one_key_share_one_read_only_header(
    protector: ResourceProtector, validator: CountingValidator, clock: FakeClock
) -> None:
    """Every token of a key repeats its header: a miss decodes it once per key,
    and the cached tokens hold one header object, which refuses changes."""
    seen: list[Any] = []
    app = Flask(__name__)

    @app.get("/h")
    @protector()
    def header() -> Any:
        seen.append(current_token.header)
        return jsonify(dict(current_token.header))

    for _ in range(3):
        response = app.test_client().get("/h", headers={"Authorization": f"Bearer {token(clock)}"})
        assert response.status_code == 200
        assert response.get_json() == {"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}
    assert seen[0] is seen[1] is seen[2]
    with pytest.raises(TypeError):
        seen[0]["alg"] = "none"


def test_a_loose_spelling_of_a_memoised_header_is_still_malformed(
    app: Flask, clock: FakeClock
) -> None:
    """The memo answers for the exact segment it was filled with: the same
    header with a character outside base64url (which a lenient decoder skips,
    and a b64token allows) is refused as before."""
    good = token(clock)
    assert call(app, good).status == 200  # its header segment is memoised now
    head, body, signature = token(clock).split(".")
    for loose in (head + "~~~~", "~~~~" + head, f"{head[:8]}~~~~{head[8:]}"):
        bad = f"{loose}.{body}.{signature}"
        assert_refused(call(app, bad), "malformed token")


def test_the_header_memo_stays_bounded_and_right(
    protector: ResourceProtector, clock: FakeClock
) -> None:
    """Tokens of 300 distinct headers (a memo of 256) over 12 keys: each still
    verified against its own key, one naming another key's kid still refused."""

    keys = [cached_keypair("ES256", f"memo-{n}") for n in range(12)]
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(*keys), clock=clock)
    )
    app = protected_app(protector)
    for n in range(300):  # 300 distinct headers: kid and an extra member
        key = keys[n % len(keys)]
        assert call(app, make_token(key, now=clock(), header={"n": str(n)})).status == 200
        assert len(jws._HEADERS) <= jws._HEADERS_MAX
    other = keys[1].sign(claims(clock()), {"typ": "at+jwt", "kid": keys[0].kid})
    assert_refused(call(app, other), "invalid signature")
