"""What only the ASGI front has: FastAPI's dependency and OpenAPI, the Starlette
decorator and middleware, the same bytes as Flask, and the event loop kept free.

The protocol itself runs over every front in ``test_fronts.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from fastapi import FastAPI, Security
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from bearerguard.starlette import BearerMiddleware, ResourceProtector

from .conftest import FakeClock
from .fronts import FRONT_BUILDERS, make_protector
from .opaquekit import OpaqueValidator

# -- the same answers, byte for byte ----------------------------------------------------

REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("no-credentials", "/r", {}),
    ("malformed", "/r", {"Authorization": "Bearer a b"}),
    ("other-scheme", "/r", {"Authorization": "Basic dXNlcjpwYXNz"}),
    ("unknown", "/r", {"Authorization": "Bearer unknown"}),
    ("insufficient-scope", "/admin", {"Authorization": "Bearer good"}),
    ("expired", "/r", {"Authorization": "Bearer expired"}),
    ("outage", "/r", {"Authorization": "Bearer outage"}),
]


class Outage(OpaqueValidator):
    def authenticate_token(self, token_string: str) -> Any:
        if token_string == "outage":
            raise ConnectionError("db down")
        return super().authenticate_token(token_string)


@pytest.mark.parametrize(
    ("path", "headers"), [r[1:] for r in REQUESTS], ids=[r[0] for r in REQUESTS]
)
@pytest.mark.parametrize("asgi", ["fastapi", "starlette"])
def test_the_same_answer_as_flask(
    asgi: str, path: str, headers: dict[str, str], clock: FakeClock
) -> None:
    answers = []
    for front in ("flask", asgi):
        validator = Outage(clock=clock)
        validator.issue("good", sub="alice")
        validator.issue("expired", exp=clock() - 1)
        protector = make_protector(front, clock=clock, realm="api")
        protector.register_token_validator(validator)
        answers.append(FRONT_BUILDERS[front](protector).get(path, headers))
    flask, other = answers
    assert (other.status, other.text) == (flask.status, flask.text)
    for name in ("WWW-Authenticate", "Cache-Control", "Retry-After", "Content-Type"):
        assert other.headers.get(name) == flask.headers.get(name), name


# -- FastAPI ------------------------------------------------------------------------


def _protector(clock: FakeClock) -> tuple[ResourceProtector, OpaqueValidator]:
    validator = OpaqueValidator(clock=clock)
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(validator)
    return protector, validator


def test_security_scopes_add_to_the_requirement(clock: FakeClock) -> None:
    protector, validator = _protector(clock)
    app = FastAPI()
    protector.init_app(app)
    both = Security(protector("profile"), scopes=["email"])

    @app.get("/both")
    async def endpoint(token: Any = both) -> dict[str, Any]:
        return {"sub": token["sub"]}

    client = TestClient(app)
    narrow = validator.issue(scope="profile")
    answer = client.get("/both", headers={"Authorization": f"Bearer {narrow}"})
    assert answer.status_code == 403
    assert answer.headers["WWW-Authenticate"].endswith('scope="profile email"')
    wide = validator.issue(scope="profile email")
    assert client.get("/both", headers={"Authorization": f"Bearer {wide}"}).status_code == 200


def test_openapi_declares_http_bearer_with_the_scopes(clock: FakeClock) -> None:
    protector, _ = _protector(clock)
    app = FastAPI()
    profile, extra = Security(protector("profile")), Security(protector(), scopes=["a", "b"])

    @app.get("/p")
    async def p(token: Any = profile) -> None: ...

    @app.get("/ab")
    async def ab(token: Any = extra) -> None: ...

    @app.get("/open")
    async def open_() -> None: ...

    spec = TestClient(app).get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    paths = spec["paths"]
    # The default DPoP mode is "allowed": either scheme, each with the scopes.
    assert paths["/p"]["get"]["security"] == [
        {"bearerAuth": ["profile"]},
        {"dpopAuth": ["profile"]},
    ]
    assert paths["/ab"]["get"]["security"] == [{"bearerAuth": ["a", "b"]}, {"dpopAuth": ["a", "b"]}]
    assert "security" not in paths["/open"]["get"]
    # No parameter of the dependency leaks into the operation.
    assert "parameters" not in paths["/p"]["get"]


def test_optional_lets_anonymous_requests_through(clock: FakeClock) -> None:
    protector, validator = _protector(clock)
    app = FastAPI()
    protector.init_app(app)
    maybe = Security(protector("profile", optional=True))

    @app.get("/maybe")
    async def endpoint(request: Request, token: Any = maybe) -> dict[str, Any]:
        assert request.state.token is token
        return {"sub": None if token is None else token["sub"]}

    client = TestClient(app)
    assert client.get("/maybe").json() == {"sub": None}
    token = validator.issue(sub="bob")
    assert client.get("/maybe", headers={"Authorization": f"Bearer {token}"}).json() == {
        "sub": "bob"
    }
    assert client.get("/maybe", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_without_init_app_fastapi_still_sends_the_status_and_challenge(clock: FakeClock) -> None:
    protector, _ = _protector(clock)
    app = FastAPI()
    guarded = Security(protector("profile"))

    @app.get("/r")
    async def endpoint(token: Any = guarded) -> None: ...

    answer = TestClient(app).get("/r", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", error="invalid_token"'
    )
    assert answer.headers["Cache-Control"] == "no-store"


def test_a_cache_hit_needs_no_worker_thread(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The miss goes to a thread (it may block); the hit stays on the loop."""
    import anyio.to_thread

    protector, validator = _protector(clock)
    client = FRONT_BUILDERS["fastapi"](protector)
    real = anyio.to_thread.run_sync
    threads: list[Any] = []

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        threads.append(func)
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    token = validator.issue()
    assert client.get("/r", {"Authorization": f"Bearer {token}"}).status == 200
    assert threads == [protector.guard.authorize]
    for _ in range(3):
        assert client.get("/r", {"Authorization": f"Bearer {token}"}).status == 200
    assert threads == [protector.guard.authorize]
    assert validator.calls == 1


def test_two_authorization_headers_are_refused_not_one_picked(clock: FakeClock) -> None:
    protector, validator = _protector(clock)
    client = FRONT_BUILDERS["starlette"](protector)
    good = validator.issue()
    answer = client.client.get(
        "/r", headers=[("Authorization", f"Bearer {good}"), ("Authorization", "Bearer other")]
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


# -- Starlette ------------------------------------------------------------------------


def test_a_sync_endpoint_runs_behind_the_decorator(clock: FakeClock) -> None:
    protector, validator = _protector(clock)

    @protector.route("profile")
    def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.state.token["sub"])

    client = TestClient(Starlette(routes=[Route("/r", endpoint)]))
    assert client.get("/r").status_code == 401
    token = validator.issue(sub="carol")
    assert client.get("/r", headers={"Authorization": f"Bearer {token}"}).text == "carol"


def test_the_bare_decorator(clock: FakeClock) -> None:
    protector, validator = _protector(clock)

    @protector.route
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("ok")

    client = TestClient(Starlette(routes=[Route("/r", endpoint)]))
    assert client.get("/r").status_code == 401
    token = validator.issue(scope="")
    assert client.get("/r", headers={"Authorization": f"Bearer {token}"}).text == "ok"


def test_the_middleware_protects_every_route(clock: FakeClock) -> None:
    protector, validator = _protector(clock)

    async def endpoint(request: Request) -> Response:
        return JSONResponse({"sub": request.state.token["sub"]})

    middleware = [Middleware(BearerMiddleware, protector=protector, scope="profile")]
    app = Starlette(routes=[Route("/a", endpoint), Route("/b", endpoint)], middleware=middleware)
    client = TestClient(app)
    for path in ("/a", "/b"):
        answer = client.get(path)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    token = validator.issue(sub="dave")
    assert client.get("/b", headers={"Authorization": f"Bearer {token}"}).json() == {"sub": "dave"}
    narrow = validator.issue(scope="email")
    assert client.get("/a", headers={"Authorization": f"Bearer {narrow}"}).status_code == 403


def test_the_middleware_refuses_websockets_it_cannot_vouch_for(clock: FakeClock) -> None:
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    protector, validator = _protector(clock)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("unprotected")
        await websocket.close()

    middleware = [Middleware(BearerMiddleware, protector=protector, scope="profile")]
    client = TestClient(Starlette(routes=[WebSocketRoute("/ws", echo)], middleware=middleware))
    token = validator.issue()
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws", headers={"Authorization": f"Bearer {token}"}) as ws,
    ):
        ws.receive_text()
    assert closed.value.code == 1008


def test_the_middleware_refuses_form_tokens_at_set_up() -> None:
    protector = ResourceProtector(allow_form_token=True)
    with pytest.raises(ValueError, match="form tokens"):
        BearerMiddleware(Starlette(), protector=protector)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        (("a", "XOR"), {}, ValueError),
        ((42,), {}, TypeError),
        ((), {"colour": ["blue"]}, TypeError),
        (("a",), {"scopes": "b"}, TypeError),
    ],
    ids=["bad-operator", "bad-scope", "unknown-kwarg", "scope-and-scopes"],
)
@pytest.mark.parametrize("use", ["dependency", "route"])
def test_misuse_fails_at_import_time(use: str, args: Any, kwargs: Any, exc: type) -> None:
    protector = ResourceProtector()
    with pytest.raises(exc):
        (protector if use == "dependency" else protector.route)(*args, **kwargs)


def test_a_guard_or_options_not_both() -> None:
    from bearerguard.core.guard import Guard

    with pytest.raises(TypeError):
        ResourceProtector(Guard(), realm="x")


# -- the import ----------------------------------------------------------------------------


def test_importing_the_asgi_front_loads_neither_flask_nor_fastapi() -> None:
    code = (
        "import json, sys; import bearerguard.starlette; "
        "print(json.dumps(sorted(m for m in ('flask', 'werkzeug', 'fastapi') if m in sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(loaded.stdout) == []
