"""Every front over every validator kind, behind one small client API.

The behaviour suite (``test_fronts.py``) asks for a ``make`` fixture and gets,
for each ``front`` (Flask, ASGI) and each ``kind`` (opaque dict, database,
JWT, introspection), a :class:`Setup`: the protector, a backend that mints
tokens and counts validations, and a client whose ``get``/``post`` answer a
plain :class:`Answer` (status, headers, json, text), whichever framework
served it. A test written once asserts the same bytes on both fronts.

The app has two views: ``/r`` (GET and POST, scope ``profile``) answering
``{"sub": ...}`` (the token's ``sub``, or None when the token has none), and
``/admin`` (scope ``admin``).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

import pytest

from bearerguard import ResourceProtector, TokenCache
from bearerguard.validators import (
    IntrospectionTokenValidator,
    JWTBearerTokenValidator,
    TokenValidator,
)

from .conftest import FakeClock
from .jwtkit import AUDIENCE, ISSUER, cached_keypair, jwks, loopback_client, make_token
from .opaquekit import OpaqueValidator, opaque_claims
from .servers import LoopbackServer, Reply, Seen

FRONTS = ["flask", "fastapi", "starlette"]
KINDS = ["opaque", "database", "jwt", "introspection"]


# -- the answer, the same for both fronts ------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]
    text: str
    json: Any

    @property
    def challenge(self) -> str:
        return self.headers.get("WWW-Authenticate", "")


class Client(Protocol):
    def get(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer: ...

    def post(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer: ...


# -- the backends: mint a token, count validations, fail on demand -----------------------


class Backend(Protocol):
    name: str
    validator: TokenValidator
    #: Whether a token carries ``sub``, ``client_id``, ``iat``, ``jti`` (a database row does not).
    has_claims: bool

    def mint(self, *, scope: str = "profile", exp_in: float = 3600, **claims: Any) -> str: ...

    @property
    def calls(self) -> int: ...

    def fail(self, down: bool) -> None: ...


class OpaqueBackend:
    name, has_claims = "opaque", True

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.validator = OpaqueValidator(clock=clock)

    def mint(self, *, scope: str = "profile", exp_in: float = 3600, **claims: Any) -> str:
        return self.validator.issue(scope=scope, exp=self.clock() + exp_in, **claims)

    @property
    def calls(self) -> int:
        return self.validator.calls

    def fail(self, down: bool) -> None:
        self.validator.fault = ConnectionError("db down") if down else None


class DatabaseBackend:
    """SQLite in memory, one connection shared by every thread (ASGI misses run in threads)."""

    name, has_claims = "database", False

    def __init__(self, clock: FakeClock) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.orm import scoped_session, sessionmaker
        from sqlalchemy.pool import StaticPool

        from bearerguard.sqla import create_bearer_token_validator

        from .models import Base, Token

        self.clock, self.model, self.metadata = clock, Token, Base.metadata
        self.engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        self.metadata.create_all(self.engine)
        self.session = scoped_session(sessionmaker(self.engine))
        self._calls = 0
        outer = self

        class Counting(create_bearer_token_validator(self.session, Token)):  # type: ignore[misc]
            def authenticate_token(self, token_string: str) -> Any:
                outer._calls += 1
                try:
                    return super().authenticate_token(token_string)
                finally:
                    outer.session.remove()

        self.validator = Counting()

    def mint(self, *, scope: str = "profile", exp_in: float = 3600, **claims: Any) -> str:
        token = secrets.token_urlsafe(24)
        row = self.model(
            access_token=token, scope=scope, issued_at=int(self.clock()), expires_in=int(exp_in)
        )
        with self.session() as session:
            session.add(row)
            session.commit()
        self.session.remove()
        return token

    @property
    def calls(self) -> int:
        return self._calls

    def fail(self, down: bool) -> None:
        # A real fault: the table is gone ("no such table"), then back with its rows.
        from sqlalchemy import text

        names = ("plain_token", "plain_token_away")
        before, after = names if down else names[::-1]
        with self.engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {before} RENAME TO {after}"))

    def close(self) -> None:
        self.session.remove()
        self.engine.dispose()


class JWTBackend:
    """Static keys; an outage is a JWKS source that raises."""

    name, has_claims = "jwt", True

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.key = cached_keypair("ES256", "fronts")
        self.down = False
        self._calls = 0
        outer = self

        def keys() -> Any:
            if outer.down:
                raise ConnectionError("JWKS unreachable")
            return jwks(outer.key)

        class Counting(JWTBearerTokenValidator):
            def validate_jws(self, token: str, header: Any, claims: Any) -> Any:
                outer._calls += 1
                return super().validate_jws(token, header, claims)

        self.validator = Counting(ISSUER, AUDIENCE, jwks=keys, clock=clock)

    def mint(self, *, scope: str = "profile", exp_in: float = 3600, **claims: Any) -> str:
        claims.setdefault("sub", "alice")
        return make_token(
            self.key, now=self.clock(), scope=scope, exp=self.clock() + exp_in, **claims
        )

    @property
    def calls(self) -> int:
        return self._calls

    def fail(self, down: bool) -> None:
        self.down = down
        if not down:  # the key loader retries no sooner than min_refetch after a failure
            self.clock.advance(60)


class AuthServer:
    """An RFC 7662 endpoint on a loopback server: knows the tokens minted through it."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.fault: Reply | None = None
        self.delay = 0.0
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, seen: Seen) -> Reply:
        with self.lock:
            self.calls += 1
        if self.fault is not None:
            return self.fault
        form = {k: v[0] for k, v in parse_qs(seen.body.decode()).items()}
        return Reply(
            200, self.tokens.get(form.get("token", ""), {"active": False}), delay=self.delay
        )


class IntrospectionBackend:
    name, has_claims = "introspection", True

    def __init__(self, clock: FakeClock, server: LoopbackServer) -> None:
        self.clock = clock
        self.auth = AuthServer()
        server.handler = self.auth
        self.http = loopback_client()
        self.validator = IntrospectionTokenValidator(
            server.url + "/introspect",
            "rs-1",
            "s3cr3t",
            audience=AUDIENCE,
            http=self.http,
            clock=clock,
        )

    def mint(self, *, scope: str = "profile", exp_in: float = 3600, **claims: Any) -> str:
        token = secrets.token_urlsafe(24)
        record = opaque_claims(self.clock(), scope=scope, exp=int(self.clock() + exp_in), **claims)
        self.auth.tokens[token] = {"active": True, "aud": AUDIENCE, **record}
        return token

    @property
    def calls(self) -> int:
        return self.auth.calls

    def fail(self, down: bool) -> None:
        self.auth.fault = Reply(503, "down") if down else None

    def close(self) -> None:
        self.http.close()


# -- the fronts ---------------------------------------------------------------------------


def _sub(token: Any) -> Any:
    return token.get("sub") if isinstance(token, Mapping) else None


def flask_front(protector: ResourceProtector) -> Client:
    from flask import Flask, jsonify

    from bearerguard import current_token

    app = Flask(__name__)
    protector.init_app(app)  # the metadata document, with resource=

    @app.route("/r", methods=["GET", "POST"])
    @protector("profile")
    def resource() -> Any:
        return jsonify(sub=_sub(current_token._get_current_object()))

    @app.route("/admin")
    @protector("admin")
    def admin() -> Any:
        return jsonify(ok=True)

    return FlaskClient(app.test_client())


class FlaskClient:
    def __init__(self, client: Any) -> None:
        self.client = client

    def _answer(self, response: Any) -> Answer:
        text = response.get_data(as_text=True)
        return Answer(response.status_code, response.headers, text, response.get_json(silent=True))

    def get(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        return self._answer(self.client.get(path, headers=dict(headers or {}), **_flask(kw)))

    def post(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        return self._answer(self.client.post(path, headers=dict(headers or {}), **_flask(kw)))


def _flask(kw: dict[str, Any]) -> dict[str, Any]:
    """``query=`` (pairs or a dict) and ``data=``/``json=`` as Flask's test client takes them."""
    if "query" in kw:
        kw["query_string"] = kw.pop("query")
    if "raw_authorization" in kw:
        kw["environ_overrides"] = {"HTTP_AUTHORIZATION": kw.pop("raw_authorization")}
    return kw


def fastapi_front(protector: Any) -> Client:
    from fastapi import FastAPI, Security

    app = FastAPI()
    protector.init_app(app)
    # Defaults, not Annotated[...]: this module's annotations are strings that
    # FastAPI would resolve in its globals, where these locals are not.
    profile, admin_scope = Security(protector("profile")), Security(protector("admin"))

    @app.api_route("/r", methods=["GET", "POST"])
    async def resource(token: Any = profile) -> dict[str, Any]:
        return {"sub": _sub(token)}

    @app.get("/admin")
    async def admin(token: Any = admin_scope) -> dict[str, Any]:
        return {"ok": True}

    return ASGIClient(app)


def starlette_front(protector: Any) -> Client:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    @protector.route("profile")
    async def resource(request: Request) -> Response:
        return JSONResponse({"sub": _sub(request.state.token)})

    @protector.route("admin")
    async def admin(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [Route("/r", resource, methods=["GET", "POST"]), Route("/admin", admin)]
    if protector.metadata is not None:
        routes.append(protector.metadata_route())
    return ASGIClient(Starlette(routes=routes))


class ASGIClient:
    """Starlette's TestClient; a raw ``Authorization`` value goes straight into the
    ASGI scope instead (httpx refuses to send what the malformed corpus holds)."""

    def __init__(self, app: Any) -> None:
        from starlette.testclient import TestClient

        self.app = app
        self.client = TestClient(app)

    def get(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        return self._request("GET", path, headers, **kw)

    def post(self, path: str, headers: Mapping[str, str] | None = None, **kw: Any) -> Answer:
        return self._request("POST", path, headers, **kw)

    def _request(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str] | None,
        *,
        query: Any = None,
        raw_authorization: str | None = None,
        **kw: Any,
    ) -> Answer:
        if raw_authorization is not None:
            return self._raw(method, path, raw_authorization)
        response = self.client.request(method, path, headers=headers, params=query, **kw)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, response.headers, response.text, body)

    def _raw(self, method: str, path: str, authorization: str) -> Answer:
        import json

        import anyio
        from starlette.datastructures import Headers

        try:
            value = authorization.encode("latin-1")  # as a WSGI server would see it
        except UnicodeEncodeError:
            value = authorization.encode("utf-8", "surrogateescape")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"authorization", value)],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        anyio.run(self.app, scope, receive, send)
        start = sent[0]
        text = b"".join(m.get("body", b"") for m in sent[1:]).decode()
        raw = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        return Answer(
            start["status"], Headers(raw=start["headers"]) if raw else Headers(), text, body
        )


FRONT_BUILDERS: dict[str, Callable[[Any], Client]] = {
    "flask": flask_front,
    "fastapi": fastapi_front,
    "starlette": starlette_front,
}


def make_protector(front: str, **options: Any) -> Any:
    if front == "flask":
        return ResourceProtector(**options)
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    return ASGIProtector(**options)


# -- the malformed-header corpus: 400 or 401, never anything else ------------------------

GOOD = "good-token.with_all~chars+/=="
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


# -- the fixture --------------------------------------------------------------------------


@dataclass
class Setup:
    front: str
    backend: Any
    protector: Any
    client: Client
    clock: FakeClock
    closers: list[Callable[[], None]] = field(default_factory=list)

    def bearer(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def introspection_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer(AuthServer())
    yield server
    server.close()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(
    front: str, kind: str, clock: FakeClock, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Setup]]:
    """``make(**protector_options)`` -> a :class:`Setup` for this front and kind."""
    setups: list[Setup] = []

    def build(**options: Any) -> Setup:
        backend = new_backend(kind, clock, request)
        options.setdefault("clock", clock)
        if "cache" not in options:
            options["cache"] = TokenCache(clock=clock)
        protector = make_protector(front, **options)
        protector.register_token_validator(backend.validator)
        setup = Setup(front, backend, protector, FRONT_BUILDERS[front](protector), clock)
        setups.append(setup)
        return setup

    yield build
    for setup in setups:
        with contextlib.suppress(Exception):
            setup.protector.revocations.close()
        closer = getattr(setup.backend, "close", None)
        if closer is not None:
            closer()


def new_backend(kind: str, clock: FakeClock, request: pytest.FixtureRequest) -> Any:
    if kind == "opaque":
        return OpaqueBackend(clock)
    if kind == "database":
        return DatabaseBackend(clock)
    if kind == "jwt":
        return JWTBackend(clock)
    return IntrospectionBackend(clock, request.getfixturevalue("introspection_server"))
