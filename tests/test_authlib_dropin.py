"""What Authlib's own resource-server tests check, as bearerguard must answer it.

Authlib's ``tests/flask/test_oauth2/test_oauth2_server.py``,
``test_userinfo.py`` and the protector side of ``rfc9068/test_resource_server.py``
pass against bearerguard with only their imports rewritten; these tests pin
the same behaviours in bearerguard's words, over SQLite and PostgreSQL, plus
the error flow and surface a migrating user relies on: refusals that are
Authlib's classes, ``acquire_token`` raising, ``TOKEN_TYPE`` routing, realms.
"""

from __future__ import annotations

from typing import Any

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.flask_oauth2.errors import raise_http_exception
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    MissingAuthorizationError as AuthlibMissingAuthorizationError,
)
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError as AuthlibUnsupportedError
from authlib.oauth2.rfc6750 import BearerTokenValidator as AuthlibBearerTokenValidator
from authlib.oauth2.rfc6750.errors import InsufficientScopeError as AuthlibInsufficientScopeError
from authlib.oauth2.rfc6750.errors import InvalidTokenError as AuthlibInvalidTokenError
from flask import Flask, g, json, jsonify, request

import bearerguard.rfc6750
import bearerguard.rfc6750.errors
from bearerguard import ResourceProtector, current_token
from bearerguard.rfc6750 import BearerTokenValidator, InvalidTokenError

from . import dropin_app
from .dropin_app import Build, World, db

# The shared fixtures: every test that builds a world runs on SQLite and PostgreSQL.
database_url, build = dropin_app.database_url, dropin_app.build

# -- Authlib's test_oauth2_server.py, in our words -----------------------------------


def test_no_credentials_other_scheme_and_unknown_token(build: Build) -> None:
    world = build()
    world.issue("a1")
    missing = world.get("/user")
    assert (missing.status_code, missing.json["error"]) == (401, "missing_authorization")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    other = world.get("/user", "invalid token")
    assert (other.status_code, other.json["error"]) == (401, "unsupported_token_type")
    assert other.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    unknown = world.bearer("/user", "invalid")
    assert (unknown.status_code, unknown.json["error"]) == (401, "invalid_token")


def test_expired_token_is_refused_by_decorator_and_acquire(build: Build) -> None:
    world = build()
    world.issue("a1", expires_in=-10)
    for path in ("/user", "/acquire"):
        response = world.bearer(path, "a1")
        assert (response.status_code, response.json["error"]) == (401, "invalid_token"), path


def test_token_without_the_scope_is_403(build: Build) -> None:
    world = build()
    world.issue("a1", scope="profile")
    response = world.bearer("/user/email", "a1")
    assert (response.status_code, response.json["error"]) == (403, "insufficient_scope")
    assert 'scope="email"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("path", ["/user", "/acquire", "/info", "/no-parens"])
def test_valid_token_reaches_every_view_form(build: Build, path: str) -> None:
    world = build()
    world.issue("a1")
    response = world.bearer(path, "a1")
    assert response.status_code == 200
    assert response.json.get("username", "foo") == "foo"
    assert response.json.get("status", "ok") == "ok"


def test_scope_lists_are_and_inside_a_string_or_between_strings(build: Build) -> None:
    world = build()
    world.issue("a1", scope="profile")
    narrow = world.bearer("/operator-and", "a1")
    assert (narrow.status_code, narrow.json["error"]) == (403, "insufficient_scope")
    assert world.bearer("/operator-or", "a1").status_code == 200


def test_optional_lets_anonymous_in_and_knows_the_user(build: Build) -> None:
    world = build()
    world.issue("a1")
    assert world.get("/optional").json == {"id": 0, "username": "anonymous"}
    assert world.bearer("/optional", "a1").json["username"] == "foo"


def test_optional_does_not_let_an_unsupported_scheme_through(build: Build) -> None:
    world = build()
    response = world.get("/optional", "Basic dXNlcjpwdw==")
    assert (response.status_code, response.json["error"]) == (401, "unsupported_token_type")


def test_scopes_keyword_on_decorator_and_acquire(build: Build) -> None:
    world = build()
    world.issue("narrow", scope="profile")
    world.issue("wide", scope="profile email")
    for path in ("/scopes-keyword", "/acquire-keyword"):
        assert world.bearer(path, "narrow").status_code == 403, path
        assert world.bearer(path, "wide").status_code == 200, path


def test_scope_and_scopes_together_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not both"):
        ResourceProtector()("a", scopes=["b"])


# -- Authlib's test_userinfo.py: acquire_token inside an AuthorizationServer endpoint ---


JSON = [("Content-Type", "application/json")]


class WhoAmIEndpoint:
    """An endpoint as Authlib's UserInfoEndpoint is built: it calls acquire_token."""

    ENDPOINT_NAME = "whoami"
    server: Any = None

    def __init__(self, resource_protector: ResourceProtector) -> None:
        self.resource_protector = resource_protector

    def create_endpoint_request(self, oauth_request: Any) -> Any:
        return self.server.create_oauth2_request(oauth_request)

    def __call__(self, _request: Any) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.resource_protector.acquire_token("openid")
        return 200, {"sub": str(token.user_id), "name": token.user.username}, JSON


def _with_authorization_server(world: World) -> None:
    server = AuthorizationServer(world.app, lambda _id: None, lambda _t, _r: None)
    server.register_endpoint(WhoAmIEndpoint(world.protector))

    @world.app.route("/oauth/whoami", methods=["GET", "POST"])
    def whoami() -> Any:
        return server.create_endpoint_response("whoami")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_endpoint_of_an_authorization_server_answers_through_handle_error_response(
    build: Build, method: str
) -> None:
    world = build()
    _with_authorization_server(world)
    world.issue("access-token", scope="openid profile")
    world.issue("no-openid", scope="foobar")
    client = world.client

    def call(authorization: str | None = None) -> Any:
        headers = {} if authorization is None else {"Authorization": authorization}
        return client.open("/oauth/whoami", method=method, headers=headers)

    assert call("Bearer access-token").json == {"sub": "1", "name": "foo"}
    for authorization, status, error in [
        (None, 401, "missing_authorization"),
        ("invalid token_string", 401, "unsupported_token_type"),
        ("Bearer no-openid", 403, "insufficient_scope"),
        ("Bearer unknown", 401, "invalid_token"),
    ]:
        response = call(authorization)
        assert response.status_code == status, authorization
        assert json.loads(response.data)["error"] == error, authorization


# -- refusals are Authlib's classes; acquire_token raises them ------------------------


def test_acquire_token_raises_oauth2_errors_that_are_authlibs_classes(build: Build) -> None:
    world = build()
    world.issue("a1", scope="profile")
    caught: dict[str, Any] = {}

    @world.app.route("/manual")
    def manual() -> Any:
        try:
            world.protector.acquire_token(request.args.get("scope"))
        except OAuth2Error as error:
            caught[request.args.get("case", "")] = error
            return jsonify(error=error.error), error.status_code
        return jsonify(ok=True)

    client = world.client
    assert client.get("/manual?case=missing").status_code == 401
    client.get("/manual?case=scheme", headers={"Authorization": "Basic eDp5"})
    client.get("/manual?case=invalid", headers={"Authorization": "Bearer nope"})
    client.get("/manual?case=scope&scope=email", headers={"Authorization": "Bearer a1"})
    assert client.get("/manual", headers={"Authorization": "Bearer a1"}).json == {"ok": True}

    assert isinstance(caught["missing"], AuthlibMissingAuthorizationError)
    assert caught["missing"].error == "missing_authorization"
    assert isinstance(caught["scheme"], AuthlibUnsupportedError)
    assert not isinstance(caught["scheme"], AuthlibMissingAuthorizationError)
    assert isinstance(caught["invalid"], AuthlibInvalidTokenError)
    assert isinstance(caught["scope"], AuthlibInsufficientScopeError)
    assert caught["scope"].status_code == 403


def test_authlib_style_raise_error_response_override_is_used(build: Build) -> None:
    """The override Authlib's docs show: its own body, Authlib's headers."""
    world = build()
    seen: list[Any] = []

    class Protector(ResourceProtector):
        def raise_error_response(self, error: Any) -> Any:
            seen.append(error)
            body = json.dumps({"message": error.error})
            raise_http_exception(error.status_code, body, error.get_headers())

    protector = Protector()
    protector.register_token_validator(world.protector.validators[0])

    @world.app.route("/custom")
    @protector("profile")
    def custom() -> Any:
        return jsonify(ok=True)

    response = world.get("/custom")
    assert response.status_code == 401
    assert response.json == {"message": "missing_authorization"}
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.headers["Content-Type"] == "application/json"
    assert isinstance(seen[0], AuthlibMissingAuthorizationError)


@pytest.mark.parametrize(
    ("make_error", "status", "code"),
    [
        (AuthlibInsufficientScopeError, 403, "insufficient_scope"),
        (AuthlibInvalidTokenError, 401, "invalid_token"),
        (lambda: OAuth2Error(error="conflict", status_code=409), 409, "conflict"),
        (lambda: InvalidTokenError('description "quoted", \\ and all'), 401, "invalid_token"),
    ],
    ids=["authlib-403", "authlib-401", "custom-409", "bearerguard-401"],
)
def test_oauth2_error_raised_by_the_view_inside_acquire_is_its_response(
    build: Build, make_error: Any, status: int, code: str
) -> None:
    world = build()
    world.issue("a1")

    @world.app.route("/raises")
    def raises() -> Any:
        with world.protector.acquire("profile"):
            raise make_error()

    response = world.bearer("/raises", "a1")
    assert (response.status_code, response.json["error"]) == (status, code)


def test_errors_take_authlibs_constructor_arguments_and_any_description() -> None:
    error = InvalidTokenError('a "quoted"\nline', realm="r", extra_attributes={"k": "v"})
    assert (error.realm, dict(error.extra_attributes)) == ("r", {"k": "v"})
    status, body, headers = error()  # what AuthorizationServer.handle_error_response renders
    assert (status, body["error"]) == (401, "invalid_token")
    assert dict(headers)["Content-Type"] == "application/json"
    assert 'realm="r"' in dict(headers)["WWW-Authenticate"]
    assert 'k="v"' in dict(headers)["WWW-Authenticate"]


def test_rfc6750_module_is_authlibs_import_path() -> None:
    assert bearerguard.rfc6750.BearerTokenValidator is bearerguard.validators.BearerTokenValidator
    assert issubclass(bearerguard.rfc6750.errors.InvalidTokenError, AuthlibInvalidTokenError)
    assert issubclass(bearerguard.rfc6750.InsufficientScopeError, AuthlibInsufficientScopeError)


# -- surface: g, realm and extra attributes, Authlib's protector methods ------------


def test_g_authlib_server_oauth2_token_is_set(build: Build) -> None:
    world = build()
    world.issue("a1")

    @world.app.route("/g")
    @world.protector("profile")
    def from_g() -> Any:
        return jsonify(same=g.authlib_server_oauth2_token.access_token == "a1")

    assert world.bearer("/g", "a1").json == {"same": True}
    assert world.bearer("/g", "a1").json == {"same": True}  # a cache hit too


def test_validator_realm_and_extra_attributes_reach_the_challenge(build: Build) -> None:
    world = build()
    base = type(world.protector.validators[0])
    protector = ResourceProtector(realm="fallback")
    protector.register_token_validator(base(realm="tokens", scope_hint="profile"))

    @world.app.route("/realm")
    @protector("profile")
    def realm() -> Any:
        return jsonify(ok=True)

    world.issue("narrow", scope="email")
    invalid = world.bearer("/realm", "nope").headers["WWW-Authenticate"]
    assert invalid.startswith('Bearer realm="tokens", error="invalid_token"')
    assert invalid.endswith('scope_hint="profile"')
    assert world.get("/realm").headers["WWW-Authenticate"] == 'Bearer realm="tokens"'
    assert 'realm="tokens"' in world.bearer("/realm", "narrow").headers["WWW-Authenticate"]
    assert world.get("/user").headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_protector_realm_is_the_fallback(build: Build) -> None:
    world = build(realm="shop")
    assert (
        world.bearer("/user", "nope")
        .headers["WWW-Authenticate"]
        .startswith('Bearer realm="shop", error="invalid_token"')
    )


@pytest.mark.parametrize(
    "attributes",
    [{"bad name": "x"}, {"k": "line\r\nbreak"}, {"error": "x"}, {"k": 1}],
    ids=["name", "crlf", "reserved", "not-text"],
)
def test_unsafe_challenge_attributes_are_refused_at_registration(
    attributes: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="WWW-Authenticate"):
        ResourceProtector().register_token_validator(BearerTokenValidator(**attributes))


def test_get_token_validator_and_parse_request_authorization(build: Build) -> None:
    world = build()
    validator = world.protector.validators[0]
    assert world.protector.get_token_validator("Bearer") is validator
    with pytest.raises(AuthlibUnsupportedError):
        world.protector.get_token_validator("mac")
    with world.app.test_request_context(headers={"Authorization": "bearer abc"}):
        assert world.protector.parse_request_authorization(request) == (validator, "abc")
    with world.app.test_request_context(), pytest.raises(AuthlibMissingAuthorizationError):
        world.protector.parse_request_authorization(request)
    with (
        world.app.test_request_context(headers={"Authorization": "Basic eDp5"}),
        pytest.raises(AuthlibUnsupportedError),
    ):
        world.protector.parse_request_authorization(request)


def test_validate_request_returns_the_token_of_the_current_request(build: Build) -> None:
    from authlib.integrations.flask_oauth2.requests import FlaskJsonRequest

    world = build()
    world.issue("a1", scope="profile")
    headers = {"Authorization": "Bearer a1"}
    with world.app.test_request_context(headers=headers):
        token = world.protector.validate_request(["profile"], FlaskJsonRequest(request))
        assert token.access_token == "a1"
    with world.app.test_request_context(headers=headers), pytest.raises(OAuth2Error) as refused:
        world.protector.validate_request(["email"], FlaskJsonRequest(request))
    assert refused.value.error == "insufficient_scope"


def test_overriding_what_bearerguard_never_calls_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="validate_request"):

        class Protector(ResourceProtector):
            def validate_request(self, scopes: Any, request: Any, **kwargs: Any) -> Any:
                return None


# -- un-ported Authlib validators --------------------------------------------------


def test_unported_authlib_validator_is_a_type_error_saying_what_to_import() -> None:
    class Legacy(AuthlibBearerTokenValidator):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            return None

    with pytest.raises(TypeError, match=r"import BearerTokenValidator from bearerguard\.rfc6750"):
        ResourceProtector().register_token_validator(Legacy())


def test_unported_authlib_sqla_validator_names_bearerguard_sqla() -> None:
    from authlib.integrations.sqla_oauth2 import create_bearer_token_validator

    from .dropin_app import DropinToken

    legacy = create_bearer_token_validator(db.session, DropinToken)
    with pytest.raises(TypeError, match=r"bearerguard\.(sqla|rfc6750)"):
        ResourceProtector().register_token_validator(legacy())


def test_unported_authlib_rfc9068_validator_names_bearerguard_rfc9068() -> None:
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator

    class Legacy(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return {"keys": []}

    with pytest.raises(TypeError, match=r"bearerguard\.rfc9068"):
        ResourceProtector().register_token_validator(Legacy("https://as.test", "api"))


# -- TOKEN_TYPE: the Authorization scheme picks the validator ------------------------


class MACTokenValidator(BearerTokenValidator):
    """A validator for another scheme: its credentials are the rest of the header."""

    TOKEN_TYPE = "mac"

    def __init__(self, known: dict[str, str]) -> None:
        super().__init__()
        self.known = known
        self.seen: list[str] = []

    def authenticate_token(self, token_string: str) -> Any:
        self.seen.append(token_string)
        scope = self.known.get(token_string)
        return None if scope is None else {"scope": scope, "sub": "mac-user"}


def _scheme_app(*validators: Any) -> tuple[Flask, ResourceProtector]:
    app = Flask(__name__)
    protector = ResourceProtector()
    for validator in validators:
        protector.register_token_validator(validator)

    @app.route("/r")
    @protector("profile")
    def resource() -> Any:
        return jsonify(sub=current_token["sub"])

    return app, protector


@pytest.mark.parametrize("scheme", ["MAC", "mac", "Mac"])
def test_another_scheme_goes_to_its_validator_case_insensitively(scheme: str) -> None:
    mac = MACTokenValidator({'id="x", mac="y"': "profile"})
    app, _ = _scheme_app(mac)
    client = app.test_client()
    response = client.get("/r", headers={"Authorization": f'{scheme} id="x", mac="y"'})
    assert (response.status_code, response.json) == (200, {"sub": "mac-user"})
    refused = client.get("/r", headers={"Authorization": f"{scheme} other"})
    assert (refused.status_code, refused.json["error"]) == (401, "invalid_token")


def test_bearer_tokens_are_not_served_by_a_mac_validator() -> None:
    mac = MACTokenValidator({"x": "profile"})
    app, _ = _scheme_app(mac)
    response = app.test_client().get("/r", headers={"Authorization": "Bearer x"})
    assert (response.status_code, response.json["error"]) == (401, "unsupported_token_type")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert mac.seen == []


def test_each_scheme_has_its_own_validators_and_mac_is_never_cached() -> None:
    class Bearer(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return {"scope": "profile", "sub": "bearer-user"} if token_string == "b" else None

    mac = MACTokenValidator({"m": "profile"})
    app, _ = _scheme_app(Bearer(), mac)
    client = app.test_client()
    assert client.get("/r", headers={"Authorization": "Bearer b"}).json == {"sub": "bearer-user"}
    assert client.get("/r", headers={"Authorization": "MAC m"}).json == {"sub": "mac-user"}
    assert client.get("/r", headers={"Authorization": "Bearer m"}).status_code == 401
    assert client.get("/r", headers={"Authorization": "MAC b"}).status_code == 401
    assert client.get("/r", headers={"Authorization": "MAC m"}).status_code == 200
    assert mac.seen == ["m", "b", "m"]  # no cache for request-bound credentials
    unknown = client.get("/r", headers={"Authorization": "Digest x"})
    assert (unknown.status_code, unknown.json["error"]) == (401, "unsupported_token_type")
