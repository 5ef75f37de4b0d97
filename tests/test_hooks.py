"""Every hook a user writes is honoured, and runs behind one guard.

Authlib 1.x's ``authenticate_token``, ``validate_request``, ``validate_token``,
``scope_insufficient`` and the token's ``is_expired()``, ``is_revoked()``,
``get_scope()``, ``get_expires_at()``; the seed's ``request_invalid`` and
``token_revoked``. A user's method decides, as in Authlib; the per-request
ones run on a cache hit too. A refusal a hook raises is its answer; anything
else it raises is a 503 that is logged by type and never cached.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError as AuthlibInvalidRequestError
from authlib.oauth2.rfc6750.errors import InsufficientScopeError as AuthlibInsufficientScopeError
from authlib.oauth2.rfc6750.errors import InvalidTokenError as AuthlibInvalidTokenError
from flask import Flask, jsonify

from bearerguard import ResourceProtector, current_token
from bearerguard.core.requirements import compile_requirement
from bearerguard.rfc6750 import BearerTokenValidator
from bearerguard.sqla import create_bearer_token_validator

from . import dropin_app
from .dropin_app import Build, DropinToken, FlaggedToken, db

# The shared fixtures: every test that builds a world runs on SQLite and PostgreSQL.
database_url, build = dropin_app.database_url, dropin_app.build


def sqla(model: type[Any] = DropinToken) -> type[BearerTokenValidator]:
    return create_bearer_token_validator(db.session, model)


def assert_refused(response: Any, status: int, error: str) -> None:
    assert (response.status_code, response.json["error"]) == (status, error), response.json


# -- authenticate_token ------------------------------------------------------------


def test_authlib_invalid_token_from_authenticate_token_is_401(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            if token_string == "banned":
                raise AuthlibInvalidTokenError(description="banned client")
            return super().authenticate_token(token_string)

    world = build(Validator())
    response = world.bearer("/user", "banned")
    assert_refused(response, 401, "invalid_token")
    assert response.json["error_description"] == "banned client"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_authenticate_token_outage_is_503_logged_by_type_never_cached(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    down = [True]

    class Validator(sqla()):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            if down[0]:
                raise RuntimeError(f"database down while looking up {token_string}")
            return super().authenticate_token(token_string)

    world = build(Validator())
    world.issue("secret-token-value")
    with caplog.at_level(logging.DEBUG, logger="bearerguard"):
        response = world.bearer("/user", "secret-token-value")
    assert_refused(response, 503, "temporarily_unavailable")
    assert "RuntimeError" in caplog.text
    assert "secret-token-value" not in caplog.text
    down[0] = False
    assert world.bearer("/user", "secret-token-value").status_code == 200


# -- the seed's hooks: request_invalid, token_revoked -------------------------------


def test_request_invalid_true_is_400_and_runs_on_a_cache_hit(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        def request_invalid(self, request: Any) -> bool:
            return "X-Device" not in request.headers

    world = build(Validator())
    world.issue("a1")
    ok = world.client.get("/user", headers={"Authorization": "Bearer a1", "X-Device": "1"})
    assert ok.status_code == 200
    assert_refused(world.bearer("/user", "a1"), 400, "invalid_request")


def test_token_revoked_whose_database_is_down_is_503_then_recovers(build: Build) -> None:
    down = [True]

    class Validator(sqla()):  # type: ignore[misc]
        def token_revoked(self, token: Any) -> bool:
            if down[0]:
                raise ConnectionError("revocation table unreachable")
            return bool(token.is_revoked())

    world = build(Validator())
    world.issue("a1")
    assert_refused(world.bearer("/user", "a1"), 503, "temporarily_unavailable")
    down[0] = False
    assert world.bearer("/user", "a1").status_code == 200


# -- Authlib 1.x: validate_request -------------------------------------------------


def test_validate_request_refuses_with_its_own_error_on_miss_and_hit(build: Build) -> None:
    seen: list[Any] = []

    class Validator(sqla()):  # type: ignore[misc]
        def validate_request(self, request: Any) -> None:
            seen.append(request)
            if "X-Device-Version" not in request.headers:
                raise AuthlibInvalidRequestError(description="X-Device-Version is required")

    world = build(Validator())
    world.issue("a1")
    good = {"Authorization": "Bearer a1", "X-Device-Version": "2"}
    assert world.client.get("/user", headers=good).status_code == 200
    assert world.client.get("/user", headers=good).status_code == 200  # a cache hit
    response = world.bearer("/user", "a1")
    assert_refused(response, 400, "invalid_request")
    assert response.json["error_description"] == "X-Device-Version is required"
    assert {(r.method, r.uri.rsplit("/", 1)[1]) for r in seen} == {("GET", "user")}


# -- Authlib 1.x: validate_token ---------------------------------------------------


def test_validate_token_that_refuses_is_refused_on_a_cache_hit_too(build: Build) -> None:
    banned: set[str] = set()
    lookups: list[str] = []

    class Validator(sqla()):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            lookups.append(token_string)
            return super().authenticate_token(token_string)

        def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
            super().validate_token(token, scopes, request)
            if token.user.username in banned:
                raise AuthlibInvalidTokenError(description="user is banned")

    world = build(Validator())
    world.issue("a1")
    assert world.bearer("/user", "a1").status_code == 200
    banned.add("foo")
    response = world.bearer("/user", "a1")
    assert_refused(response, 401, "invalid_token")
    assert response.json["error_description"] == "user is banned"
    assert lookups == ["a1"]  # the refusal came on the cache hit
    assert world.protector.stats()["cache"]["hits"] == 1


def test_validate_token_gets_authlibs_arguments_and_a_live_row(build: Build) -> None:
    calls: list[tuple[str, Any, str]] = []

    class Validator(sqla()):  # type: ignore[misc]
        def validate_token(self, token: Any, scopes: Any, request: Any, **kwargs: Any) -> None:
            calls.append((token.user.username, scopes, type(request).__name__))
            super().validate_token(token, scopes, request, **kwargs)

    world = build(Validator())
    world.issue("a1", scope="profile")
    assert world.bearer("/user", "a1").status_code == 200
    with world.app.app_context():
        db.session.remove()  # the cached row is detached now; the hook still reads .user
    assert world.bearer("/user", "a1").status_code == 200
    assert world.bearer("/operator-or", "a1").status_code == 200
    assert world.bearer("/info", "a1").status_code == 200
    assert_refused(world.bearer("/user/email", "a1"), 403, "insufficient_scope")
    assert calls == [
        ("foo", ["profile"], "FlaskJsonRequest"),
        ("foo", ["profile"], "FlaskJsonRequest"),
        ("foo", ["profile", "email"], "FlaskJsonRequest"),
        ("foo", None, "FlaskJsonRequest"),
        ("foo", ["email"], "FlaskJsonRequest"),
    ]


def test_validate_token_override_decides_the_scope_as_in_authlib(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
            if token.user.username != "foo":  # admins (foo) may see everything
                super().validate_token(token, scopes, request)

    world = build(Validator())
    world.issue("a1", scope="profile")
    assert world.bearer("/user/email", "a1").status_code == 200


def test_validate_token_raising_insufficient_scope_names_the_scope(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
            raise AuthlibInsufficientScopeError()

    world = build(Validator())
    world.issue("a1")
    response = world.bearer("/user", "a1")
    assert_refused(response, 403, "insufficient_scope")
    assert 'scope="profile"' in response.headers["WWW-Authenticate"]


def test_validate_token_gets_the_views_claim_keywords_as_authlib_passes_them() -> None:
    seen: list[dict[str, Any]] = []

    class Token(PlainToken):
        scope = "profile"
        roles = ["student", "admin"]

        def get_scope(self) -> str:
            return self.scope

    class Validator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return Token()

        def validate_token(self, token: Any, scopes: Any, request: Any, **kwargs: Any) -> None:
            seen.append({"scopes": scopes, **kwargs})

    app = Flask(__name__)
    protector = ResourceProtector()
    protector.register_token_validator(Validator())

    @app.route("/admin")
    @protector("profile", roles="admin")
    def admin() -> Any:
        return jsonify(ok=True)

    assert app.test_client().get("/admin", headers={"Authorization": "Bearer t"}).json == {
        "ok": True
    }
    assert seen == [{"scopes": ["profile"], "roles": ["admin"]}]


# -- Authlib 1.x: scope_insufficient -----------------------------------------------


def test_scope_insufficient_deny_all_is_403_on_miss_and_hit(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        @staticmethod
        def scope_insufficient(token_scopes: Any, required_scopes: Any) -> bool:
            return True

    world = build(Validator())
    world.issue("a1", scope="profile")
    assert_refused(world.bearer("/user", "a1"), 403, "insufficient_scope")
    assert_refused(world.bearer("/user", "a1"), 403, "insufficient_scope")


def test_scope_insufficient_allow_all_is_200(build: Build) -> None:
    seen: list[tuple[Any, Any]] = []

    class Validator(sqla()):  # type: ignore[misc]
        def scope_insufficient(self, token_scopes: Any, required_scopes: Any) -> bool:
            seen.append((token_scopes, required_scopes))
            return False

    world = build(Validator())
    world.issue("a1", scope="profile")
    assert world.bearer("/user/email", "a1").status_code == 200
    assert world.bearer("/operator-and", "a1").status_code == 200
    assert seen == [("profile", ["email"]), ("profile", ["profile email"])]


def test_a_callable_operator_still_decides_beside_scope_insufficient(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        @staticmethod
        def scope_insufficient(token_scopes: Any, required_scopes: Any) -> bool:
            return False

    world = build(Validator())
    world.issue("a1", scope="profile")

    @world.app.route("/admins")
    @world.protector("profile", lambda granted, _required: "admin" in granted)
    def admins() -> Any:
        return jsonify(ok=True)

    assert_refused(world.bearer("/admins", "a1"), 403, "insufficient_scope")


def test_a_scope_operator_that_raises_is_503(build: Build) -> None:
    def operator(granted: set[str], required: set[str]) -> bool:
        raise KeyError("roles service down")

    world = build()
    world.issue("a1")

    @world.app.route("/operated")
    @world.protector("profile", operator)
    def operated() -> Any:
        return jsonify(ok=True)

    assert_refused(world.bearer("/operated", "a1"), 503, "temporarily_unavailable")


# -- the token's own methods ---------------------------------------------------------


def test_is_expired_true_is_401_even_with_issued_at_and_expires_in(build: Build) -> None:
    world = build(sqla(FlaggedToken)())
    world.issue("flagged", model=FlaggedToken, expires_in=3600, expired=True)
    response = world.bearer("/info", "flagged")
    assert_refused(response, 401, "invalid_token")
    assert response.json["error_description"] == "token expired"


def test_is_expired_decides_over_issued_at_and_expires_in(build: Build) -> None:
    world = build(sqla(FlaggedToken)())
    world.issue("grace", model=FlaggedToken, expires_in=-10, expired=False)
    assert world.bearer("/info", "grace").status_code == 200
    with world.app.app_context():
        db.session.remove()  # a cache hit asks is_expired() of its own detached copy
    assert world.bearer("/info", "grace").status_code == 200
    world.update("grace", model=FlaggedToken, expired=True)
    assert_refused(world.bearer("/info", "grace"), 401, "invalid_token")


def test_a_grace_period_is_expired_is_asked_of_the_cached_copy(build: Build) -> None:
    """The request that cached the row commits (expiring the row's attributes)
    and ends; the next hit must not ask that row, which cannot reload any more."""
    world = build(sqla(FlaggedToken)())
    world.issue("grace", model=FlaggedToken, expires_in=-10, expired=False)

    @world.app.route("/commits")
    @world.protector()
    def commits() -> Any:
        db.session.commit()
        return jsonify(ok=True)

    assert world.bearer("/commits", "grace").status_code == 200
    assert world.bearer("/info", "grace").status_code == 200


def test_is_expired_with_a_stated_expiry_costs_a_cache_hit_nothing(build: Build) -> None:
    """is_expired() is asked when the token is validated; a live entry is then
    bounded by the stated expiry, with no per-hit call (the fast path)."""
    world = build(sqla(FlaggedToken)())
    world.issue("fresh", model=FlaggedToken, expires_in=3600, expired=False)
    assert world.bearer("/info", "fresh").status_code == 200
    cache = world.protector.cache
    assert cache is not None
    (entry,) = cache.entries()
    assert entry.info.expiry_check is None and entry.info.expires_at is not None


def test_is_revoked_true_is_401(build: Build) -> None:
    world = build()
    world.issue("a1")
    assert world.bearer("/user", "a1").status_code == 200
    world.update("a1", access_token_revoked_at=int(time.time()))
    response = world.bearer("/user", "a1")
    assert_refused(response, 401, "invalid_token")
    assert response.json["error_description"] == "token revoked"


class PlainToken:
    """A token object without ORM: only the methods a test gives it."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


def _plain_app(token: Any, matches: Any = None) -> Any:
    class Validator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return token

    if matches is not None:  # an override of token_matches
        Validator.token_matches = matches  # type: ignore[method-assign]
    app = Flask(__name__)
    protector = ResourceProtector()
    protector.register_token_validator(Validator())

    @app.route("/r")
    @protector("email")
    def resource() -> Any:
        return jsonify(ok=True)

    return app.test_client()


def test_get_scope_decides_the_scopes() -> None:
    class Token(PlainToken):
        scope = "profile"

        def get_scope(self) -> str:
            return "profile email"

    response = _plain_app(Token()).get("/r", headers={"Authorization": "Bearer t"})
    assert response.status_code == 200


def test_get_expires_at_in_the_past_is_401() -> None:
    class Token(PlainToken):
        def get_scope(self) -> str:
            return "email"

        def get_expires_at(self) -> int:
            return int(time.time()) - 5

    token = Token(issued_at=int(time.time()), expires_in=3600)
    response = _plain_app(token).get("/r", headers={"Authorization": "Bearer t"})
    assert_refused(response, 401, "invalid_token")


@pytest.mark.parametrize("method", ["get_scope", "is_expired", "is_revoked"])
def test_a_token_method_that_raises_is_503(method: str) -> None:
    def broken(self: Any) -> Any:
        raise ValueError("corrupt row")

    attributes: dict[str, Any] = {"get_scope": lambda self: "email", method: broken}
    token = type("Token", (PlainToken,), attributes)()
    response = _plain_app(token).get("/r", headers={"Authorization": "Bearer t"})
    assert_refused(response, 503, "temporarily_unavailable")


@pytest.mark.parametrize(
    ("raised", "status", "code"),
    [
        (ValueError("digest column unreadable"), 503, "temporarily_unavailable"),
        (AuthlibInvalidTokenError(), 401, "invalid_token"),
    ],
    ids=["crash", "refusal"],
)
def test_a_token_matches_override_runs_behind_the_guard(
    raised: Exception, status: int, code: str
) -> None:
    def matches(self: Any, token: Any, token_string: str) -> bool:
        raise raised

    token = PlainToken(get_scope=lambda: "email", issued_at=int(time.time()), expires_in=3600)
    response = _plain_app(token, matches).get("/r", headers={"Authorization": "Bearer t"})
    assert_refused(response, status, code)


# -- the guard: any other exception is a 503, never a 500, never cached ---------------


@pytest.mark.parametrize("hook", ["validate_request", "validate_token", "scope_insufficient"])
def test_a_per_request_hook_raising_runtime_error_is_503_not_cached(
    build: Build, hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = [True]

    def maybe_raise(*_args: Any, **_kwargs: Any) -> bool:
        if broken[0]:
            raise RuntimeError("policy service down")
        return False

    Validator = type("Validator", (sqla(),), {hook: maybe_raise})
    world = build(Validator())
    world.issue("a1")
    with caplog.at_level(logging.DEBUG, logger="bearerguard"):
        response = world.bearer("/user", "a1")
    assert_refused(response, 503, "temporarily_unavailable")
    assert response.headers["Retry-After"]
    assert "RuntimeError" in caplog.text and "policy service down" not in caplog.text
    broken[0] = False
    assert world.bearer("/user", "a1").status_code == 200


@pytest.mark.parametrize("raised", ["RuntimeError", "InvalidTokenError"])
def test_a_refusal_from_a_hook_carries_no_exception_chain(build: Build, raised: str) -> None:
    """A driver's error quotes the SQL parameters, the token among them: it must
    not ride along as the refusal's __cause__ or __context__."""

    class Validator(sqla()):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            try:
                raise ConnectionError(f"SELECT ... WHERE access_token = '{token_string}'")
            except ConnectionError:
                if raised == "RuntimeError":
                    raise RuntimeError("lookup failed") from None
                raise AuthlibInvalidTokenError() from None

    world = build(Validator())
    with (
        world.app.test_request_context(headers={"Authorization": "Bearer a-secret"}),
        pytest.raises(OAuth2Error) as refused,
    ):
        world.protector.acquire_token()
    assert refused.value.__cause__ is None and refused.value.__context__ is None


def test_a_hooks_own_oauth2_error_answers_with_its_status_and_code(build: Build) -> None:
    class SlowDownError(OAuth2Error):  # type: ignore[misc]
        error = "slow_down"
        status_code = 429

    class Validator(sqla()):  # type: ignore[misc]
        def validate_request(self, request: Any) -> None:
            raise SlowDownError()

    world = build(Validator())
    world.issue("a1")
    assert_refused(world.bearer("/user", "a1"), 429, "slow_down")


def test_hooks_nobody_overrides_are_never_attached(build: Build) -> None:
    """No override, no per-request cost: the cached facts carry no hooks and
    the guard answers a hit on the header alone (a hit is as short as it was)."""
    world = build()
    world.issue("a1")
    assert world.bearer("/user", "a1").status_code == 200
    requirement = compile_requirement("profile", "AND", {})
    assert world.protector.guard.try_cached("Bearer a1", requirement) is not None
    cache = world.protector.cache
    assert cache is not None
    assert all(entry.info.hooks is None for entry in cache.entries())


def test_current_token_after_validate_token_is_the_live_row(build: Build) -> None:
    class Validator(sqla()):  # type: ignore[misc]
        def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
            super().validate_token(token, scopes, request)

    world = build(Validator())
    world.issue("a1")

    @world.app.route("/same")
    @world.protector("profile")
    def same() -> Any:
        row = db.session.execute(db.select(DropinToken).filter_by(access_token="a1")).scalar_one()
        return jsonify(same=current_token._get_current_object() is row)

    assert world.bearer("/same", "a1").json == {"same": True}
    assert world.bearer("/same", "a1").json == {"same": True}
