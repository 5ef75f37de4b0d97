"""RFC 6750 on the wire: status codes, error codes and challenges, together.

The validator here is a dict lookup, so these tests are about the protector's
reading of requests, not about any backend.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask, jsonify

from bearerguard import ResourceProtector, current_token
from bearerguard.validators import BearerTokenValidator

from .conftest import FakeClock

GOOD = "good-token.with_all~chars+/=="


class DictValidator(BearerTokenValidator):
    def __init__(self, tokens: dict[str, dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens = tokens
        self.calls = 0

    def authenticate_token(self, token_string: str) -> Any:
        self.calls += 1
        return self.tokens.get(token_string)


def make_app(**options: Any) -> tuple[Flask, ResourceProtector, DictValidator]:
    clock = options.pop("clock", time.time)
    validator = DictValidator(
        {
            GOOD: {"scope": "profile", "exp": clock() + 3600, "sub": "alice"},
            "other-token": {"scope": "profile", "exp": clock() + 3600, "sub": "bob"},
        }
    )
    require_oauth = ResourceProtector(clock=clock, **options)
    require_oauth.register_token_validator(validator)
    app = Flask(__name__)

    @app.route("/r", methods=["GET", "POST"])
    @require_oauth("profile")
    def resource() -> Any:
        return jsonify(sub=current_token["sub"])

    @app.route("/admin")
    @require_oauth("admin")
    def admin() -> Any:
        return jsonify(ok=True)

    return app, require_oauth, validator


@pytest.fixture
def app() -> Flask:
    return make_app()[0]


def challenge(response: Any) -> str:
    return str(response.headers.get("WWW-Authenticate", ""))


def test_no_credentials_gets_bare_challenge(app: Flask) -> None:
    response = app.test_client().get("/r")
    assert response.status_code == 401
    assert challenge(response) == 'Bearer realm="api"'
    assert response.json["error"] == "missing_authorization"
    assert response.headers["Cache-Control"] == "no-store"


def test_valid_token(app: Flask) -> None:
    response = app.test_client().get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    assert response.status_code == 200
    assert response.json == {"sub": "alice"}


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(app: Flask, scheme: str) -> None:
    response = app.test_client().get("/r", headers={"Authorization": f"{scheme} {GOOD}"})
    assert response.status_code == 200


def test_unknown_token_gets_invalid_token(app: Flask) -> None:
    response = app.test_client().get("/r", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": "unknown token"}
    assert challenge(response) == (
        'Bearer realm="api", error="invalid_token", error_description="unknown token"'
    )


def test_insufficient_scope_is_403_with_scope(app: Flask) -> None:
    response = app.test_client().get("/admin", headers={"Authorization": f"Bearer {GOOD}"})
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_scope"
    assert challenge(response).startswith('Bearer realm="api", error="insufficient_scope"')
    assert challenge(response).endswith('scope="admin"')


def test_realm_is_configurable_and_quoted() -> None:
    app = make_app(realm='my "api"')[0]
    response = app.test_client().get("/r")
    assert challenge(response) == 'Bearer realm="my \\"api\\""'


def test_no_realm() -> None:
    app = make_app(realm=None)[0]
    assert challenge(app.test_client().get("/r")) == "Bearer"


# -- the malformed-header corpus: 400 or 401, never anything else ----------------------

MALFORMED: list[tuple[str, str, int, str | None]] = [
    ("empty", "", 401, None),
    ("only-spaces", "   ", 401, None),
    ("only-tab", "\t", 401, None),
    ("scheme-only", "Bearer", 400, "invalid_request"),
    ("scheme-space", "Bearer ", 400, "invalid_request"),
    ("scheme-many-spaces", "Bearer     ", 400, "invalid_request"),
    ("scheme-tab-token", "Bearer\tabc", 400, "invalid_request"),
    ("basic", "Basic dXNlcjpwYXNz", 401, None),
    ("digest", 'Digest username="x"', 401, None),
    ("token-no-scheme", GOOD, 401, None),
    ("bearerx", "BearerX abc", 401, None),
    ("two-tokens", "Bearer abc def", 400, "invalid_request"),
    ("two-headers-joined", f"Bearer {GOOD}, Bearer {GOOD}", 400, "invalid_request"),
    ("comma", "Bearer abc,def", 400, "invalid_request"),
    ("quoted", 'Bearer "abc"', 400, "invalid_request"),
    ("nul", "Bearer abc\x00def", 400, "invalid_request"),
    ("control-char", "Bearer abc\x07", 400, "invalid_request"),
    ("non-ascii", "Bearer t\u00f6ken", 400, "invalid_request"),
    ("latin1-high", "Bearer \xff\xfe", 400, "invalid_request"),
    ("padding-inside", "Bearer ab=cd", 400, "invalid_request"),
    ("only-padding", "Bearer ===", 400, "invalid_request"),
    ("semicolon", "Bearer abc;", 400, "invalid_request"),
    ("auth-params", 'Bearer realm="x"', 400, "invalid_request"),
    ("100kb", "Bearer " + "a" * 100_000, 400, "invalid_request"),
    ("over-limit", "Bearer " + "a" * 8193, 400, "invalid_request"),
    ("huge-junk", "x" * 100_000, 400, "invalid_request"),
    ("unknown-token", "Bearer abc", 401, "invalid_token"),
    ("leading-space", f" Bearer {GOOD}", 400, "invalid_request"),
    ("trailing-tab", f"Bearer {GOOD}\t", 400, "invalid_request"),
    ("jws-shaped-junk", "Bearer aaa.bbb.ccc", 401, "invalid_token"),
    ("jws-none-header", "Bearer eyJhbGciOiJub25lIn0.e30.", 401, "invalid_token"),
    ("dots-only", "Bearer ...", 401, "invalid_token"),
    ("slashes", "Bearer ////", 401, "invalid_token"),
    ("percent-encoded", "Bearer abc%20def", 400, "invalid_request"),
    ("emoji", "Bearer \U0001f600", 400, "invalid_request"),
    ("crlf-inside", "Bearer abc\r\ndef", 400, "invalid_request"),
]


@pytest.mark.parametrize(
    ("header", "status", "error"),
    [m[1:] for m in MALFORMED],
    ids=[m[0] for m in MALFORMED],
)
def test_malformed_authorization_headers(header: str, status: int, error: str | None) -> None:
    app = make_app()[0]
    environ = {"HTTP_AUTHORIZATION": header}
    response = app.test_client().get("/r", environ_overrides=environ)
    assert response.status_code == status
    assert response.is_json
    if error is None:
        assert challenge(response) == 'Bearer realm="api"'
    else:
        assert response.json["error"] == error
        assert f'error="{error}"' in challenge(response)
    # Nothing from the request is echoed back.
    body = response.get_data(as_text=True)
    assert "abc" not in body
    assert not header.strip() or header.strip() not in body


def test_corpus_is_big_enough() -> None:
    assert len(MALFORMED) >= 30


def test_max_token_length_is_configurable() -> None:
    app = make_app(max_token_length=10)[0]
    response = app.test_client().get("/r", headers={"Authorization": "Bearer " + "a" * 11})
    assert response.status_code == 400
    assert response.json["error_description"] == "access token too large"


def test_oversized_token_never_reaches_the_validator() -> None:
    app, _, validator = make_app()
    app.test_client().get("/r", headers={"Authorization": "Bearer " + "a" * 9000})
    assert validator.calls == 0


# -- other places a token can be sent (RFC 6750 §2.2, §2.3) -------------------------------


def test_query_token_is_off_by_default(app: Flask) -> None:
    response = app.test_client().get(f"/r?access_token={GOOD}")
    assert response.status_code == 401
    assert challenge(response) == 'Bearer realm="api"'


def test_form_token_is_off_by_default(app: Flask) -> None:
    response = app.test_client().post("/r", data={"access_token": GOOD})
    assert response.status_code == 401


def test_query_token_when_enabled() -> None:
    app = make_app(allow_query_token=True)[0]
    assert app.test_client().get("/r?access_token=other-token").json == {"sub": "bob"}


def test_form_token_when_enabled() -> None:
    app = make_app(allow_form_token=True)[0]
    client = app.test_client()
    assert client.post("/r", data={"access_token": "other-token"}).json == {"sub": "bob"}
    # Not from a GET body, nor from a JSON body (§2.2 conditions).
    assert client.post("/r", json={"access_token": "other-token"}).status_code == 401


HEADER = {"Authorization": f"Bearer {GOOD}"}
TWO_PLACES: list[tuple[str, dict[str, str], dict[str, Any], dict[str, bool]]] = [
    ("header+query", HEADER, {"query_string": {"access_token": GOOD}}, {"allow_query_token": True}),
    ("header+form", HEADER, {"data": {"access_token": GOOD}}, {"allow_form_token": True}),
    (
        "query+form",
        {},
        {"query_string": {"access_token": GOOD}, "data": {"access_token": GOOD}},
        {"allow_query_token": True, "allow_form_token": True},
    ),
    (
        "query-twice",
        {},
        {"query_string": [("access_token", GOOD), ("access_token", GOOD)]},
        {"allow_query_token": True},
    ),
]


@pytest.mark.parametrize(
    ("headers", "kwargs", "options"), [t[1:] for t in TWO_PLACES], ids=[t[0] for t in TWO_PLACES]
)
def test_token_in_two_places_is_invalid_request(
    headers: dict[str, str], kwargs: dict[str, Any], options: dict[str, bool]
) -> None:
    app = make_app(**options)[0]
    response = app.test_client().post("/r", headers=headers, **kwargs)
    assert response.status_code == 400
    assert response.json["error"] == "invalid_request"
    assert response.json["error_description"] == "access token sent in more than one place"


def test_malformed_query_token_is_invalid_request() -> None:
    app = make_app(allow_query_token=True)[0]
    response = app.test_client().get("/r", query_string={"access_token": "a b"})
    assert response.status_code == 400


# -- the request_invalid hook ------------------------------------------------------------


def test_request_invalid_hook_gives_400() -> None:
    class NeedsDevice(DictValidator):
        def request_invalid(self, request: Any) -> bool:
            return "X-Device" not in request.headers

    validator = NeedsDevice({GOOD: {"scope": "profile", "exp": time.time() + 60, "sub": "a"}})
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(validator)
    app = Flask(__name__)

    @app.route("/r")
    @require_oauth()
    def resource() -> Any:
        return "ok"

    client = app.test_client()
    bad = client.get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    assert bad.status_code == 400
    assert bad.json["error"] == "invalid_request"
    ok = client.get("/r", headers={"Authorization": f"Bearer {GOOD}", "X-Device": "1"})
    assert ok.status_code == 200


# -- cache and expiry --------------------------------------------------------------------


def test_cache_hit_never_outlives_exp(clock: FakeClock) -> None:
    app, _, validator = make_app(clock=clock)
    validator.tokens["short"] = {"scope": "profile", "exp": clock() + 30, "sub": "c"}
    client = app.test_client()
    headers = {"Authorization": "Bearer short"}
    assert client.get("/r", headers=headers).status_code == 200
    clock.advance(29)
    assert client.get("/r", headers=headers).status_code == 200
    assert validator.calls == 1
    clock.advance(1)
    response = client.get("/r", headers=headers)
    assert response.status_code == 401
    assert response.json["error_description"] == "token expired"


def test_cache_ttl_bounds_staleness(clock: FakeClock) -> None:
    app, require_oauth, validator = make_app(clock=clock)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {GOOD}"}
    client.get("/r", headers=headers)
    assert require_oauth.cache is not None
    clock.advance(require_oauth.cache.ttl + 1)
    validator.tokens[GOOD]["exp"] = clock() + 3600
    client.get("/r", headers=headers)
    assert validator.calls == 2


def test_cache_none_validates_every_request() -> None:
    app, _, validator = make_app(cache=None)
    client = app.test_client()
    for _ in range(3):
        client.get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    assert validator.calls == 3


def test_cache_keys_are_hashes_and_repr_lists_no_token() -> None:
    app, require_oauth, _ = make_app()
    app.test_client().get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    cache = require_oauth.cache
    assert cache is not None and len(cache) == 1
    assert all(isinstance(k, bytes) and len(k) == 32 for k in cache.digests())
    assert GOOD not in repr(cache)
    assert GOOD not in repr(cache._store)


def test_revoke_uncached_token_refuses_it(clock: FakeClock) -> None:
    app, require_oauth, _ = make_app(clock=clock)
    require_oauth.revoke(GOOD)
    response = app.test_client().get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    assert response.status_code == 401
    assert response.json["error_description"] == "token revoked"


def test_revoke_lasts_until_the_token_would_have_expired(clock: FakeClock) -> None:
    app, require_oauth, validator = make_app(clock=clock)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {GOOD}"}
    assert client.get("/r", headers=headers).status_code == 200
    require_oauth.revoke(GOOD)
    exp = validator.tokens[GOOD]["exp"]
    clock.advance(exp - clock() - 1)
    assert client.get("/r", headers=headers).json["error_description"] == "token revoked"
    assert require_oauth.revocations.tokens  # still listed while it could matter
    clock.advance(2)
    require_oauth.revocations.purge()
    assert not require_oauth.revocations.tokens


def test_revoke_subject_and_client(clock: FakeClock) -> None:
    app, require_oauth, validator = make_app(clock=clock)
    validator.tokens["old"] = {
        "scope": "profile",
        "exp": clock() + 600,
        "sub": "s1",
        "client_id": "c1",
        "iat": clock() - 10,
    }
    client = app.test_client()
    assert client.get("/r", headers={"Authorization": "Bearer old"}).status_code == 200
    require_oauth.revoke_subject("s1")
    assert client.get("/r", headers={"Authorization": "Bearer old"}).status_code == 401
    clock.advance(5)
    validator.tokens["new"] = {
        "scope": "profile",
        "exp": clock() + 600,
        "sub": "s1",
        "client_id": "c1",
        "iat": clock(),
    }
    assert client.get("/r", headers={"Authorization": "Bearer new"}).status_code == 200
    require_oauth.revoke_client("c1")
    assert client.get("/r", headers={"Authorization": "Bearer new"}).status_code == 401
    assert client.get("/r", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200


def test_revoke_jti(clock: FakeClock) -> None:
    app, require_oauth, validator = make_app(clock=clock)
    validator.tokens["j"] = {"scope": "profile", "exp": clock() + 600, "sub": "s", "jti": "J1"}
    client = app.test_client()
    assert client.get("/r", headers={"Authorization": "Bearer j"}).status_code == 200
    require_oauth.revoke_jti("J1", clock() + 600)
    assert client.get("/r", headers={"Authorization": "Bearer j"}).status_code == 401


def test_backend_failure_is_503_and_not_cached() -> None:
    class Flaky(DictValidator):
        down = True

        def authenticate_token(self, token_string: str) -> Any:
            self.calls += 1
            if self.down:
                raise ConnectionError(f"db down while looking up {token_string}")
            return super().authenticate_token(token_string)

    validator = Flaky({GOOD: {"scope": "profile", "exp": time.time() + 60, "sub": "a"}})
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(validator)
    app = Flask(__name__)

    @app.route("/r")
    @require_oauth()
    def resource() -> Any:
        return "ok"

    client = app.test_client()
    headers = {"Authorization": f"Bearer {GOOD}"}
    response = client.get("/r", headers=headers)
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "5"
    assert GOOD not in response.get_data(as_text=True)
    validator.down = False
    assert client.get("/r", headers=headers).status_code == 200


def test_a_hook_after_the_lookup_that_raises_is_503() -> None:
    """token_revoked (or get_scope, is_expired, reading roles) failing is an outage, not a 500."""

    class BrokenRevocationCheck(DictValidator):
        def token_revoked(self, token: Any) -> bool:
            raise ConnectionError("revocation table unreachable")

    validator = BrokenRevocationCheck({GOOD: {"scope": "profile", "exp": time.time() + 60}})
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(validator)
    app = Flask(__name__)
    app.add_url_rule("/r", "r", require_oauth()(lambda: "ok"))
    response = app.test_client().get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    assert response.status_code == 503
    assert response.json["error"] == "temporarily_unavailable"


def test_errorhandler_can_customize_refusals() -> None:
    app, _, _ = make_app()

    @app.errorhandler(401)
    def custom(error: Any) -> Any:
        return jsonify(custom=error.error.description), 401

    assert app.test_client().get("/r").json == {"custom": "The request carries no access token."}


def test_bare_decorator() -> None:
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(
        DictValidator({GOOD: {"scope": "", "exp": time.time() + 60}})
    )
    app = Flask(__name__)

    @app.route("/r")
    @require_oauth
    def resource() -> Any:
        return "ok"

    client = app.test_client()
    assert client.get("/r").status_code == 401
    assert client.get("/r", headers={"Authorization": f"Bearer {GOOD}"}).status_code == 200


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        (("a", "XOR"), {}, ValueError),
        ((42,), {}, TypeError),
        ((["a", 3],), {}, TypeError),
        ((), {"colour": ["blue"]}, TypeError),
        ((), {"roles": 5}, TypeError),
    ],
    ids=["bad-operator", "bad-scope", "bad-list", "unknown-kwarg", "bad-roles"],
)
def test_decorator_misuse_fails_at_import_time(args: Any, kwargs: Any, exc: type) -> None:
    with pytest.raises(exc):
        ResourceProtector()(*args, **kwargs)


def test_authlib_positional_operator_is_not_optional() -> None:
    """Authlib 1.x reads the 2nd positional argument as optional=; we do not."""
    app, require_oauth, _ = make_app()

    @app.route("/both")
    @require_oauth("profile email", "AND")
    def both() -> Any:
        return "ok"

    assert app.test_client().get("/both").status_code == 401


# -- descriptions a hook writes: any text renders safely (RFC 6750 §3) ------------------

HOOK_DESCRIPTIONS = [
    ("quote", 'tenant "acme" suspended', "tenant 'acme' suspended"),
    ("backslash", "path C:\\tenants\\acme", "path C:?tenants?acme"),
    ("non-ascii", "Mandant gesperrt: M\u00fcller \U0001f600", "Mandant gesperrt: M?ller ?"),
    ("control", "bell\x07 nul\x00 tab\t del\x7f", "bell? nul? tab? del?"),
    ("crlf", "suspended\r\nSet-Cookie: session=evil", "suspended??Set-Cookie: session=evil"),
    ("only-unsafe", '"\\\r\n', "'???"),
]


@pytest.mark.parametrize(
    ("text", "rendered"), [d[1:] for d in HOOK_DESCRIPTIONS], ids=[d[0] for d in HOOK_DESCRIPTIONS]
)
@pytest.mark.parametrize("hook", ["claims_check", "authenticate_token"])
def test_any_description_from_a_hook_renders_safely(hook: str, text: str, rendered: str) -> None:
    """Authlib's OAuth2Error refuses such descriptions with ValueError (a 500);
    bearerguard keeps the text and renders it in the RFC's character set."""
    from bearerguard.errors import InvalidTokenError
    from bearerguard.validators import JWTBearerTokenValidator

    from .jwtkit import AUDIENCE, ISSUER, cached_keypair, jwks, make_token

    def refuse(*_args: Any) -> Any:
        raise InvalidTokenError(text)

    require_oauth = ResourceProtector()
    if hook == "claims_check":
        key = cached_keypair("ES256", "desc-ec")
        require_oauth.register_token_validator(
            JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key), claims_check=refuse)
        )
        token = make_token(key, now=time.time())
    else:
        validator = DictValidator({})
        validator.authenticate_token = refuse  # type: ignore[method-assign]
        require_oauth.register_token_validator(validator)
        token = "any-opaque-token"
    app = Flask(__name__)
    app.add_url_rule("/r", "r", require_oauth()(lambda: "ok"))

    response = app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": rendered}
    assert challenge(response) == (
        f'Bearer realm="api", error="invalid_token", error_description="{rendered}"'
    )
    assert "Set-Cookie" not in response.headers
    for value in response.headers.values():
        assert all(" " <= c <= "~" for c in value), value


def test_description_with_unsafe_characters_constructs_and_keeps_its_text() -> None:
    from bearerguard.errors import InsufficientScopeError, InvalidTokenError

    error = InvalidTokenError('tenant "acme"\r\n')
    assert error.description == 'tenant "acme"\r\n'  # the user's own text, for their logs
    assert dict(error.get_body())["error_description"] == "tenant 'acme'??"
    refusal = InsufficientScopeError("caf\u00e9", scope="read\nwrite")
    assert refusal.challenge(None) == (
        'Bearer error="insufficient_scope", error_description="caf?", scope="read?write"'
    )
