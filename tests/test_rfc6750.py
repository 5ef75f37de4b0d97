"""RFC 6750 details of the Flask front: the cache's keys, error handlers, the decorator.

The protocol itself (status codes, error codes and challenges over every
front and validator kind) is tested in ``test_fronts.py``; the few protocol
tests kept here, over the Flask front and a dict validator, are the ones
SECURITY.md names (test_security_doc.py checks they exist).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask, jsonify

from bearerguard import ResourceProtector, current_token

from .conftest import FakeClock
from .fronts import MALFORMED
from .opaquekit import OpaqueValidator, opaque_claims

GOOD = "good-token.with_all~chars+/=="


def make_app(**options: Any) -> tuple[Flask, ResourceProtector, OpaqueValidator]:
    clock = options.pop("clock", time.time)
    validator = OpaqueValidator(clock=clock)
    validator.issue(GOOD)
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


# -- named by SECURITY.md; test_fronts.py runs each over every front and kind ----------


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


def test_oversized_token_never_reaches_the_validator() -> None:
    app, _, validator = make_app()
    app.test_client().get("/r", headers={"Authorization": "Bearer " + "a" * 9000})
    assert validator.calls == 0


def test_query_token_is_off_by_default(app: Flask) -> None:
    response = app.test_client().get(f"/r?access_token={GOOD}")
    assert response.status_code == 401
    assert challenge(response) == 'Bearer realm="api"'


def test_form_token_is_off_by_default(app: Flask) -> None:
    response = app.test_client().post("/r", data={"access_token": GOOD})
    assert response.status_code == 401


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


def test_backend_failure_is_503_and_not_cached() -> None:
    class Flaky(OpaqueValidator):
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


# -- cache and Flask specifics (the protocol itself: test_fronts.py, over every front) ----


def test_cache_keys_are_hashes_and_repr_lists_no_token() -> None:
    app, require_oauth, _ = make_app()
    app.test_client().get("/r", headers={"Authorization": f"Bearer {GOOD}"})
    cache = require_oauth.cache
    assert cache is not None and len(cache) == 1
    assert all(isinstance(k, bytes) and len(k) == 32 for k in cache.digests())
    assert GOOD not in repr(cache)
    assert GOOD not in repr(cache._deadlines)


def test_errorhandler_can_customize_refusals() -> None:
    app, _, _ = make_app()

    @app.errorhandler(401)
    def custom(error: Any) -> Any:
        return jsonify(custom=error.error.description), 401

    assert app.test_client().get("/r").json == {"custom": "The request carries no access token."}


def test_bare_decorator() -> None:
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(OpaqueValidator({GOOD: opaque_claims(scope="")}))
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
        validator = OpaqueValidator()
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
