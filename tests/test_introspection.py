"""IntrospectionTokenValidator against a real introspection server on 127.0.0.1.

The server is a real threaded HTTP server; its faults (5xx, garbage, slow,
refused, redirects) are real too, so the HTTP client is never patched.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import pytest
from flask import Flask, jsonify

from bearerguard import ResourceProtector, TokenCache, current_token
from bearerguard.errors import UnknownTokenError
from bearerguard.transport import HTTPClient
from bearerguard.validators import BearerTokenValidator, IntrospectionTokenValidator
from bearerguard.validators.introspection import IntrospectionToken
from bearerguard.validators.jwt import ANY_AUDIENCE

from .conftest import FakeClock
from .servers import LoopbackServer, Reply, Seen, TCPProxy

CLIENT_ID, SECRET = "rs-1", "s3cr3t"
TOKEN = "opaque-token-abc"
AUDIENCE = "https://api.example"


class AuthServer:
    """Knows some tokens; answers as a test tells it (or fails as told)."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.fault: Reply | None = None
        self.delay = 0.0

    def active(self, token: str = TOKEN, **claims: Any) -> None:
        """Make ``token`` active with these claims (``...`` leaves one out)."""
        base = {"scope": "profile email", "sub": "alice", "client_id": "app-1", "aud": AUDIENCE}
        answer = {"active": True, **base, **claims}
        self.tokens[token] = {k: v for k, v in answer.items() if v is not ...}

    def __call__(self, seen: Seen) -> Reply:
        if self.fault is not None:
            return self.fault
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        answer = self.tokens.get(form.get("token", ""), {"active": False})
        return Reply(200, answer, delay=self.delay)


@dataclass
class Setup:
    server: LoopbackServer
    auth: AuthServer
    validator: IntrospectionTokenValidator
    protector: ResourceProtector
    client: Any

    def get(self, token: str | None = TOKEN, path: str = "/r") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(path, headers=headers)


@pytest.fixture(scope="module")
def _server() -> Iterator[LoopbackServer]:
    # One server for the module; each test gets a fresh handler and request log.
    server = LoopbackServer(AuthServer())
    yield server
    server.close()


@pytest.fixture
def server(_server: LoopbackServer) -> LoopbackServer:
    _server.handler = AuthServer()
    _server.requests.clear()
    return _server


@pytest.fixture
def http() -> Iterator[HTTPClient]:
    client = HTTPClient()
    yield client
    client.close()


def _app(protector: ResourceProtector) -> Any:
    app = Flask(__name__)

    @app.get("/r")
    @protector("profile")
    def resource() -> Any:
        return jsonify(sub=current_token["sub"], scope=current_token.get_scope())

    @app.get("/admin")
    @protector("admin")
    def admin() -> Any:
        return jsonify(ok=True)

    return app.test_client()


@pytest.fixture
def make(server: LoopbackServer, http: HTTPClient, clock: FakeClock) -> Callable[..., Setup]:
    def build(url: str | None = None, **options: Any) -> Setup:
        options.setdefault("audience", AUDIENCE)
        validator = IntrospectionTokenValidator(
            (url or server.url) + "/introspect",
            CLIENT_ID,
            SECRET,
            http=http,
            clock=clock,
            **options,
        )
        protector = ResourceProtector(cache=TokenCache(ttl=300, clock=clock), clock=clock)
        protector.register_token_validator(validator)
        assert isinstance(server.handler, AuthServer)
        return Setup(server, server.handler, validator, protector, _app(protector))

    return build


@pytest.fixture
def setup(make: Callable[..., Setup]) -> Setup:
    return make()


# -- the request -----------------------------------------------------------------


def test_an_active_token_is_accepted_with_its_claims(setup: Setup) -> None:
    setup.auth.active(username="alice@example.com")
    response = setup.get()
    assert response.status_code == 200
    assert response.json == {"sub": "alice", "scope": "profile email"}
    [seen] = setup.server.requests
    assert (seen.method, seen.path) == ("POST", "/introspect")
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qs(seen.body.decode())
    assert form == {"token": [TOKEN], "token_type_hint": ["access_token"]}
    scheme, _, credentials = seen.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{CLIENT_ID}:{SECRET}"


def test_client_secret_post_sends_credentials_in_the_body(make: Callable[..., Setup]) -> None:
    setup = make(auth_method="client_secret_post")
    setup.auth.active()
    assert setup.get().status_code == 200
    [seen] = setup.server.requests
    assert "Authorization" not in seen.headers
    form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
    assert (form["client_id"], form["client_secret"], form["token"]) == (CLIENT_ID, SECRET, TOKEN)


def test_basic_credentials_are_form_encoded_first(server: LoopbackServer, http: HTTPClient) -> None:
    """RFC 6749 §2.3.1: a ':' in the id or secret must survive the round trip."""
    validator = IntrospectionTokenValidator(
        server.url, "rs:1", "p@ss w:rd/+", audience=AUDIENCE, http=http
    )
    with pytest.raises(UnknownTokenError):
        validator.validate(TOKEN)
    encoded = base64.b64decode(server.requests[0].headers["Authorization"][6:]).decode()
    client_id, _, secret = encoded.partition(":")
    assert (unquote(client_id), unquote(secret)) == ("rs:1", "p@ss w:rd/+")


def test_current_token_is_a_read_only_mapping(setup: Setup) -> None:
    setup.auth.active(exp=setup.validator.clock() + 600)
    info = setup.validator.validate(TOKEN)
    token = info.token
    assert isinstance(token, IntrospectionToken)
    assert token["sub"] == "alice" and token.get_scope() == "profile email"
    assert info.scopes == {"profile", "email"}
    assert (info.subject, info.client_id) == ("alice", "app-1")
    with pytest.raises(TypeError):
        token["scope"] = "admin"
    copy = dict(token)
    copy["scope"] = "admin"
    assert token.get_scope() == "profile email"


def test_connections_are_reused(setup: Setup) -> None:
    accepted = 0
    server = setup.server._server
    original = server.get_request

    def counting() -> Any:
        nonlocal accepted
        accepted += 1
        return original()

    server.get_request = counting  # type: ignore[method-assign]
    for n in range(5):
        setup.auth.active(f"tok-{n}")
        assert setup.get(f"tok-{n}").status_code == 200
    assert len(setup.server.requests) == 5
    assert accepted == 1


# -- verdicts ----------------------------------------------------------------------


def test_an_inactive_token_is_refused_and_the_refusal_cached(setup: Setup) -> None:
    for _ in range(3):
        response = setup.get()
        assert response.status_code == 401
        assert response.json["error"] == "invalid_token"
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert len(setup.server.requests) == 1, "junk must not reach the server again"


def test_a_valid_answer_is_cached_until_exp(setup: Setup, clock: FakeClock) -> None:
    setup.auth.active(exp=clock() + 60)
    assert setup.get().status_code == 200
    clock.advance(59)
    assert setup.get().status_code == 200
    assert len(setup.server.requests) == 1
    clock.advance(1)
    response = setup.get()
    assert response.status_code == 401
    assert response.json["error_description"] == "token expired"
    assert len(setup.server.requests) == 2


def test_a_token_without_exp_is_cached_for_the_ttl(setup: Setup, clock: FakeClock) -> None:
    setup.auth.active()
    assert setup.get().status_code == 200
    clock.advance(300)
    setup.auth.tokens.clear()  # revoked at the server
    assert setup.get().status_code == 401
    assert len(setup.server.requests) == 2


def test_an_insufficient_scope_is_403(setup: Setup) -> None:
    setup.auth.active()
    response = setup.get(path="/admin")
    assert response.status_code == 403
    assert response.json["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("claims", "options"),
    [
        ({"exp": 1_700_000_000}, {}),
        ({"exp": "tomorrow"}, {}),
        ({"exp": 10**400}, {}),
        ({"nbf": 10**400}, {}),
        ({"iat": 10**400}, {}),
        ({"nbf": 1_900_000_000}, {}),
        ({"token_type": "DPoP"}, {}),
        ({"token_use": "refresh_token"}, {}),
        ({"cnf": {"x5t#S256": "abc"}}, {}),
        ({"iss": "https://evil.example"}, {"issuer": "https://as.example"}),
        ({}, {"issuer": "https://as.example"}),
        ({"aud": ["https://other.example"]}, {"audience": "https://api.example"}),
        ({"aud": [{"x": 1}]}, {"audience": "https://api.example"}),
        ({"aud": ...}, {"audience": "https://api.example"}),
        ({"aud": ...}, {"audience": ["https://api.example", "https://other.example"]}),
    ],
    ids=[
        "expired",
        "exp-not-a-number",
        "exp-too-big-for-a-float",
        "nbf-too-big-for-a-float",
        "iat-too-big-for-a-float",
        "not-yet-valid",
        "dpop-bound",
        "refresh-token",
        "cert-bound",
        "wrong-issuer",
        "missing-issuer",
        "wrong-audience",
        "audience-garbage",
        "missing-audience",
        "missing-audience-of-several",
    ],
)
def test_an_active_token_that_fails_a_check_is_401(
    make: Callable[..., Setup], claims: dict[str, Any], options: dict[str, Any]
) -> None:
    setup = make(**options)
    setup.auth.active(**claims)
    response = setup.get()
    assert response.status_code == 401
    assert response.json["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("claims", "options"),
    [
        ({"iss": "https://as.example"}, {"issuer": "https://as.example"}),
        ({"aud": "https://api.example"}, {"audience": "https://api.example"}),
        ({"aud": ["x", "https://api.example"]}, {"audience": ["https://api.example", "y"]}),
        ({"token_type": "bearer", "nbf": 1_800_000_030}, {}),
    ],
    ids=["issuer", "audience-string", "audience-list", "bearer-and-nbf-within-leeway"],
)
def test_an_active_token_that_passes_the_checks_is_200(
    make: Callable[..., Setup], claims: dict[str, Any], options: dict[str, Any]
) -> None:
    setup = make(**options)
    setup.auth.active(**claims)
    assert setup.get().status_code == 200


# -- outages -----------------------------------------------------------------------


FAULTS = {
    "500": Reply(500, "boom"),
    "503": Reply(503, {"error": "temporarily_unavailable"}),
    "401-bad-client-credentials": Reply(401, {"error": "invalid_client"}),
    "403-not-allowed-to-introspect": Reply(403, {"error": "invalid_client"}),
    "400-bad-client-credentials": Reply(400, {"error": "invalid_client"}),
    "400-unknown-error-code": Reply(400, {"error": "server_on_fire"}),
    "400-error-not-a-string": Reply(400, {"error": ["invalid_request"]}),
    "400-not-json": Reply(400, "<html>Bad Request</html>"),
    "400-json-array": Reply(400, [{"error": "invalid_request"}]),
    "404-with-an-active-body": Reply(404, {"active": True, "scope": "profile"}),
    "not-json": Reply(200, "<html>" + TOKEN + "</html>"),
    "json-array": Reply(200, [{"active": True}]),
    "active-missing": Reply(200, {"sub": "alice", "scope": "profile"}),
    "active-as-string": Reply(200, {"active": "true", "scope": "profile"}),
    "exp-infinity": Reply(200, '{"active": true, "scope": "profile", "exp": Infinity}'),
    "exp-nan": Reply(200, '{"active": true, "scope": "profile", "exp": NaN}'),
    "redirect": Reply(302, "", {"Location": "http://127.0.0.1:1/elsewhere"}),
    "too-large": Reply(200, {"active": True, "pad": "x" * 300_000}),
    "slow": Reply(200, {"active": True, "scope": "profile"}, delay=1.0),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_an_endpoint_fault_is_503_not_cached_and_logged_once(
    make: Callable[..., Setup],
    fault: Reply,
    caplog: pytest.LogCaptureFixture,
) -> None:
    setup = make(timeout=0.3)
    setup.auth.active()
    setup.auth.fault = fault
    caplog.set_level(logging.WARNING, "bearerguard")
    for _ in range(3):
        response = setup.get()
        assert response.status_code == 503
        assert response.json["error"] == "temporarily_unavailable"
        assert int(response.headers["Retry-After"]) > 0
        assert TOKEN not in response.get_data(as_text=True)
    records = [r for r in caplog.records if "introspection" in r.getMessage()]
    assert len(records) == 1
    assert TOKEN not in records[0].getMessage()
    assert len(setup.server.requests) == 3, "an outage is never cached"
    setup.auth.fault = None
    assert setup.get().status_code == 200, "the first request after recovery succeeds"


@pytest.mark.parametrize(
    "error",
    ["unsupported_token_type", "invalid_request", "invalid_token"],
)
def test_a_400_refusing_the_token_is_a_cached_401_not_an_outage(
    setup: Setup, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 6749 §5.2-shaped: the server's verdict on this token, like active: false."""
    setup.auth.fault = Reply(400, {"error": error, "error_description": f"bad {TOKEN}"})
    caplog.set_level(logging.WARNING, "bearerguard")
    for _ in range(3):
        response = setup.get()
        assert response.status_code == 401
        assert response.json["error"] == "invalid_token"
        assert "Retry-After" not in response.headers
        assert TOKEN not in response.get_data(as_text=True)
    assert len(setup.server.requests) == 1, "refused once, then from the cache"
    assert not caplog.records, "a refused token is not a failure"
    assert setup.validator.stats() == {"calls": 1, "active": 0, "inactive": 1, "failures": 0}


def test_a_refused_connection_is_503_and_recovery_immediate(
    make: Callable[..., Setup], server: LoopbackServer
) -> None:
    proxy = TCPProxy("127.0.0.1", server.port)
    try:
        proxy.down()  # nothing listens: connection refused
        setup = make(f"http://127.0.0.1:{proxy.port}")
        setup.auth.active()
        assert setup.get().status_code == 503
        proxy.up()
        assert setup.get().status_code == 200
    finally:
        proxy.close()
    assert setup.validator.stats() == {"calls": 2, "active": 1, "inactive": 0, "failures": 1}


def test_concurrent_requests_make_one_introspection_call(setup: Setup) -> None:
    setup.auth.active()
    setup.auth.delay = 0.3
    results: list[int] = []
    start = threading.Barrier(12)

    def one() -> None:
        start.wait()
        results.append(setup.get().status_code)

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200] * 12
    assert len(setup.server.requests) == 1


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    ["http://as.example.com/introspect", "ftp://127.0.0.1/x", "http:///nohost"],
    ids=["plain-http-remote", "not-http", "no-host"],
)
def test_https_is_required_except_for_loopback(endpoint: str) -> None:
    with pytest.raises(ValueError, match="https"):
        IntrospectionTokenValidator(endpoint, CLIENT_ID, SECRET, audience=AUDIENCE)


@pytest.mark.parametrize(
    "endpoint",
    ["https://as.example.com/introspect", "http://127.0.0.1:9/i", "http://localhost/i"],
)
def test_https_and_loopback_endpoints_are_accepted(endpoint: str) -> None:
    validator = IntrospectionTokenValidator(endpoint, CLIENT_ID, SECRET, audience=AUDIENCE)
    assert validator.endpoint == endpoint


def test_an_unknown_auth_method_is_refused() -> None:
    with pytest.raises(ValueError, match="auth_method"):
        IntrospectionTokenValidator(
            "https://as/i",
            CLIENT_ID,
            SECRET,
            audience=AUDIENCE,
            auth_method="none",  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "audience",
    [None, "", [], [""], [1]],
    ids=["missing", "empty-string", "empty-list", "empty-member", "not-a-string"],
)
def test_an_audience_is_required(audience: Any) -> None:
    """RFC 9700 §2.3: a token meant for another resource must not pass here."""
    options = {} if audience is None else {"audience": audience}
    with pytest.raises(ValueError, match="audience"):
        # None: the protector's resource= (RFC 8707), so registering without one raises.
        validator = IntrospectionTokenValidator(
            "https://as.example/i", CLIENT_ID, SECRET, **options
        )
        ResourceProtector().register_token_validator(validator)


def test_any_audience_is_the_explicit_opt_out(make: Callable[..., Setup]) -> None:
    setup = make(audience=ANY_AUDIENCE)
    setup.auth.active(aud=...)
    assert setup.get().status_code == 200
    setup.auth.active("other", aud="https://elsewhere.example")
    assert setup.get("other").status_code == 200


def test_the_secret_never_shows_in_repr_or_stats(setup: Setup) -> None:
    setup.auth.active()
    setup.get()
    text = repr(setup.validator) + json.dumps(setup.protector.stats())
    assert SECRET not in text
    validators = setup.protector.stats()["validators"]
    assert list(validators.values()) == [{"calls": 1, "active": 1, "inactive": 0, "failures": 0}]


def test_a_view_cannot_change_a_cached_answer_for_later_requests(
    make: Callable[..., Setup], clock: FakeClock
) -> None:
    setup = make()
    setup.auth.active(exp=clock() + 600, roles=["student"], ext={"groups": ["g1"]})
    app = Flask(__name__)

    @app.get("/promote")
    @setup.protector()
    def promote() -> Any:
        with contextlib.suppress(TypeError):
            current_token["ext"]["groups"].append("admins")
        current_token["roles"] += ["admin"]  # TypeError: a 500 for this request only
        return "promoted"

    @app.get("/admins")
    @setup.protector(roles=["admin"])
    def admins() -> Any:
        return jsonify(current_token._get_current_object())

    @app.get("/answer")
    @setup.protector()
    def answer() -> Any:
        return jsonify(current_token._get_current_object())

    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/promote", headers=auth).status_code == 500
    assert client.get("/admins", headers=auth).status_code == 403
    seen = client.get("/answer", headers=auth).json
    assert (seen["roles"], seen["ext"]) == (["student"], {"groups": ["g1"]})
    assert len(setup.server.requests) == 1  # one answer, cached and shared


def test_introspection_runs_after_other_opaque_validators_decline(
    server: LoopbackServer, http: HTTPClient, clock: FakeClock
) -> None:
    """``active: false`` lets the next validator try, as 'not mine' would."""

    class Local(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            known = token_string == "local-1"
            return IntrospectionToken(scope="profile", sub="local") if known else None

    assert isinstance(server.handler, AuthServer)
    server.handler.active()
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        IntrospectionTokenValidator(
            server.url, CLIENT_ID, SECRET, audience=AUDIENCE, http=http, clock=clock
        )
    )
    protector.register_token_validator(Local())
    client = _app(protector)
    assert client.get("/r", headers={"Authorization": "Bearer local-1"}).json["sub"] == "local"
    assert client.get("/r", headers={"Authorization": f"Bearer {TOKEN}"}).json["sub"] == "alice"
    assert client.get("/r", headers={"Authorization": "Bearer nobody"}).status_code == 401
