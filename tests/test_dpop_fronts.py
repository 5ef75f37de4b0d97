"""DPoP on each front, beyond the proof checks of test_dpop.py: the next server
nonce in a success response (RFC 9449 §8.2), and FastAPI's ``/openapi.json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, jsonify

from bearerguard import ResourceProtector, TokenCache
from bearerguard.core.dpop import NonceIssuer, ProofChecker
from bearerguard.validators import JWTBearerTokenValidator

from .conftest import FakeClock
from .dpopkit import make_proof
from .jwtkit import AUDIENCE, ISSUER, cached_keypair, jwks
from .test_dpop import KEY, bound_token

SECRET = b"nonce-secret-of-the-fronts-tests"
STEP = 300.0
#: (status, DPoP-Nonce header or None, error code or None) of one request.
Answer = tuple[int, str | None, str | None]
Get = Callable[[dict[str, str]], Answer]


def test_renewal_is_the_current_nonce_for_one_of_the_previous_step() -> None:
    issuer = NonceIssuer(SECRET, step=STEP)
    now = 1_800_000_000.0
    nonce = issuer.issue(now)
    assert issuer.renewal(nonce, now) is None
    assert issuer.renewal(nonce, now + STEP) == issuer.issue(now + STEP) != nonce
    assert issuer.renewal(nonce, now + 2 * STEP) is None  # no longer valid at all
    assert issuer.renewal("forged" + nonce[6:], now + STEP) is None


def _proofs(clock: FakeClock) -> ProofChecker:
    return ProofChecker(nonces=NonceIssuer(SECRET, step=STEP, clock=clock))


def walk_the_nonce_steps(get: Get, url: str, clock: FakeClock) -> None:
    """Each response gives the client the nonce it needs next, before it needs it."""

    def request(nonce: str | None) -> Answer:
        token = bound_token(clock)  # a new one each time: the clock moves past exp
        proof = make_proof(KEY, url=url, token=token, now=clock(), nonce=nonce)
        return get({"Authorization": f"DPoP {token}", "DPoP": proof})

    status, first, error = request(None)
    assert (status, error) == (401, "use_dpop_nonce") and first is not None
    assert request(first) == (200, None, None)  # current: nothing new to say
    clock.advance(STEP)  # first is now of the previous step: it ends with this one
    status, renewed, _ = request(first)
    assert status == 200 and renewed is not None and renewed != first
    assert request(renewed) == (200, None, None)
    clock.advance(STEP)
    assert request(first)[::2] == (401, "use_dpop_nonce")  # two steps old: refused
    status, again, _ = request(renewed)
    assert status == 200 and again not in (None, renewed)


def _flask_client(clock: FakeClock, path: str = "/r", **settings: Any) -> Any:
    """A Flask app (one worker) with its own protector, cache and replay store."""
    protector = ResourceProtector(clock=clock, cache=TokenCache(clock=clock), **settings)
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(cached_keypair("RS256", "issuer")))
    )
    app = Flask(__name__)

    @app.get(path)
    @protector("profile")
    def resource() -> Any:
        return jsonify(ok=True)

    return app.test_client()


def test_flask_success_response_carries_the_next_nonce(clock: FakeClock) -> None:
    client = _flask_client(clock, dpop_proofs=_proofs(clock))

    def get(headers: dict[str, str]) -> Answer:
        answer = client.get("/r", headers=headers)
        body = answer.get_json()
        return answer.status_code, answer.headers.get("DPoP-Nonce"), body.get("error")

    walk_the_nonce_steps(get, "http://localhost/r", clock)


def _asgi_apps(clock: FakeClock) -> dict[str, Any]:
    from fastapi import FastAPI, Security
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from bearerguard.starlette import BearerMiddleware
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    protector = ASGIProtector(
        clock=clock, cache=TokenCache(clock=clock), dpop_proofs=_proofs(clock)
    )
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(cached_keypair("RS256", "issuer")))
    )

    @protector.route("profile")
    async def routed(request: Request) -> Response:
        return JSONResponse({"ok": True})

    api = FastAPI()
    protector.init_app(api)

    dependency = Security(protector("profile"))

    @api.get("/r")
    async def fast(token: Any = dependency) -> dict[str, Any]:
        return {"ok": True}

    async def plain(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return {
        "route": Starlette(routes=[Route("/r", routed)]),
        "fastapi": api,
        "middleware": BearerMiddleware(
            Starlette(routes=[Route("/r", plain)]), protector, "profile"
        ),
    }


@pytest.mark.parametrize("entry", ["route", "fastapi", "middleware"])
def test_asgi_success_response_carries_the_next_nonce(clock: FakeClock, entry: str) -> None:
    from starlette.testclient import TestClient

    client = TestClient(_asgi_apps(clock)[entry])

    def get(headers: dict[str, str]) -> Answer:
        answer = client.get("/r", headers=headers)
        return answer.status_code, answer.headers.get("DPoP-Nonce"), answer.json().get("error")

    walk_the_nonce_steps(get, "http://testserver/r", clock)


# -- FastAPI: the DPoP scheme in /openapi.json -------------------------------------------


@pytest.mark.parametrize(
    ("protector_mode", "view_mode", "schemes"),
    [
        ("allowed", None, ["bearerAuth", "dpopAuth"]),
        ("allowed", "required", ["dpopAuth"]),
        ("allowed", "disabled", ["bearerAuth"]),
        ("required", None, ["dpopAuth"]),
        ("disabled", None, ["bearerAuth"]),
        ("disabled", "allowed", ["bearerAuth", "dpopAuth"]),
    ],
)
def test_openapi_lists_the_schemes_each_view_takes(
    protector_mode: str, view_mode: str | None, schemes: list[str]
) -> None:
    from fastapi import FastAPI, Security
    from starlette.testclient import TestClient

    from bearerguard.starlette import ResourceProtector as ASGIProtector

    protector = ASGIProtector(dpop=protector_mode)
    api = FastAPI()

    dependency = Security(protector("profile", dpop=view_mode))

    @api.get("/r")
    async def view(token: Any = dependency) -> None: ...

    spec = TestClient(api).get("/openapi.json").json()
    security = spec["paths"]["/r"]["get"]["security"]
    # Alternatives: OpenAPI's list means any one of them, each with the view's scopes.
    assert security == [{name: ["profile"]} for name in schemes]
    defined = spec["components"]["securitySchemes"]
    assert sorted(defined) == sorted(schemes)
    if "dpopAuth" in schemes:
        assert defined["dpopAuth"]["type"] == "http" and defined["dpopAuth"]["scheme"] == "DPoP"
        assert "DPoP header" in defined["dpopAuth"]["description"]


@pytest.mark.parametrize(("nonce", "shared"), [(SECRET, True), (True, False)])
def test_dpop_nonce_option_demands_nonces_shared_by_a_secret(
    clock: FakeClock, nonce: bool | bytes, shared: bool
) -> None:
    url = "http://localhost/r"
    first, second = _flask_client(clock, dpop_nonce=nonce), _flask_client(clock, dpop_nonce=nonce)

    def get(client: Any, server_nonce: str | None) -> Any:
        token = bound_token(clock)
        proof = make_proof(KEY, url=url, token=token, now=clock(), nonce=server_nonce)
        return client.get("/r", headers={"Authorization": f"DPoP {token}", "DPoP": proof})

    refused = get(first, None)
    assert (refused.status_code, refused.json["error"]) == (401, "use_dpop_nonce")
    issued = refused.headers["DPoP-Nonce"]
    assert get(first, issued).status_code == 200
    # A secret: the other worker takes the nonce; True: a secret of each process's own.
    other = get(second, issued)
    assert other.status_code == (200 if shared else 401)
    if not shared:
        assert other.json["error"] == "use_dpop_nonce"


def test_dpop_nonce_and_a_checker_with_nonces_are_one_setting_too_many() -> None:
    with pytest.raises(ValueError, match="not both"):
        ResourceProtector(dpop_proofs=ProofChecker(nonces=NonceIssuer(SECRET)), dpop_nonce=True)
    with pytest.raises(ValueError, match="16 bytes"):
        ResourceProtector(dpop_nonce=b"short")


#: Paths as a client writes them in the request line: reserved, encoded,
#: dot segments, a mount point's doubled slash.
_PATHS = ["/", "/a/b", "/a%20b", "/x;y=1", "/a/./b/../c", "/~u/x-y_z.", "/!$&'()*+,;=:@"]
_PATHS += ["/%7E", "//dbl", "/%22q%22", "/%3Cp%3E", "/a%2Fb"]


@pytest.mark.parametrize("path", _PATHS)
@pytest.mark.parametrize("base", ["http://h.example", "https://H.example:8443/app/"])
def test_the_wsgi_url_is_werkzeugs_as_a_uri(base: str, path: str) -> None:
    """htu is compared with the URL built from the WSGI environ, which names
    what Werkzeug's request.url names once both are URIs."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.urls import iri_to_uri
    from werkzeug.wrappers import Request

    from bearerguard.core.connection import environ_url
    from bearerguard.core.dpop import normalized_uri

    environ = EnvironBuilder(path=path, base_url=base).get_environ()
    werkzeugs = iri_to_uri(Request(environ).url.partition("?")[0])
    assert normalized_uri(environ_url(environ)) == normalized_uri(werkzeugs)


def test_the_wsgi_url_keeps_the_clients_bytes_and_refuses_a_bad_host() -> None:
    from bearerguard.core.connection import environ_url
    from bearerguard.core.dpop import normalized_uri

    # PATH_INFO is the decoded path as latin-1 (PEP 3333): UTF-8, invalid
    # UTF-8 and a literal "%" come back as the client's percent-encodings.
    base = {"wsgi.url_scheme": "https", "HTTP_HOST": "h.example", "SCRIPT_NAME": ""}
    for raw, sent in [(b"/caf\xc3\xa9", "/caf%C3%A9"), (b"/\xff", "/%FF"), (b"/100%", "/100%25")]:
        environ = {**base, "PATH_INFO": raw.decode("latin-1")}
        assert environ_url(environ) == "https://h.example" + sent
    no_host = {"wsgi.url_scheme": "http", "SERVER_NAME": "::1", "SERVER_PORT": "8080"}
    assert environ_url({**no_host, "PATH_INFO": "/r"}) == "http://[::1]:8080/r"
    for host in ["h.example/evil", "a@h.example", "h.example:99999", "h example"]:
        url = environ_url({**base, "HTTP_HOST": host, "PATH_INFO": "/r"})
        with pytest.raises(ValueError):
            normalized_uri(url)


def test_flask_accepts_a_proof_for_a_non_ascii_path(clock: FakeClock) -> None:
    client = _flask_client(clock, "/café")
    token = bound_token(clock)
    url = "http://localhost/caf%C3%A9"  # what a client's htu holds: a URI
    proof = make_proof(KEY, url=url, token=token, now=clock())
    answer = client.get("/caf%C3%A9", headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert answer.status_code == 200


async def _ok() -> dict[str, bool]:
    return {"ok": True}


@pytest.mark.parametrize("kind", ["route", "fastapi", "middleware"])
def test_asgi_accepts_a_proof_for_a_non_ascii_path(clock: FakeClock, kind: str) -> None:
    from fastapi import FastAPI, Security
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bearerguard.starlette import BearerMiddleware
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    protector = ASGIProtector(clock=clock, cache=TokenCache(clock=clock))
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(cached_keypair("RS256", "issuer")))
    )

    async def plain(request: Request) -> Response:
        return JSONResponse({"ok": True})

    if kind == "route":
        app: Any = Starlette(routes=[Route("/café", protector.route("profile")(plain))])
    elif kind == "fastapi":
        app = FastAPI()
        protector.init_app(app)
        app.add_api_route("/café", _ok, dependencies=[Security(protector("profile"))])
    else:
        app = BearerMiddleware(Starlette(routes=[Route("/café", plain)]), protector, "profile")
    token = bound_token(clock)
    proof = make_proof(KEY, url="http://testserver/caf%C3%A9", token=token, now=clock())
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    answer = TestClient(app).get("/caf%C3%A9", headers=headers)
    assert answer.status_code == 200, answer.text
    # Another path's proof is still refused.
    other = make_proof(KEY, url="http://testserver/cafe", token=token, now=clock())
    refused = TestClient(app).get("/caf%C3%A9", headers={**headers, "DPoP": other})
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_dpop_proof")


# -- the DPoP Authorization value's own syntax, on every front ------------------------


def _dpop_authorization_cases(
    clock: FakeClock, url: str, nonce: str | None = None
) -> list[tuple[dict[str, str], int, str]]:
    """(headers, status, error) of DPoP Authorization values, each with a valid proof."""
    token = bound_token(clock)

    def headers(authorization: str) -> dict[str, str]:
        proof = make_proof(KEY, url=url, token=token, now=clock(), nonce=nonce)
        return {"Authorization": authorization, "DPoP": proof}

    return [
        (headers(f"DPoP {token}"), 200, ""),
        (headers(f"dpop   {token}"), 200, ""),  # the scheme in any case, 1*SP (RFC 7235)
        (headers("DPoP "), 400, "invalid_request"),  # no token
        (headers("DPoP    "), 400, "invalid_request"),
        (headers(f"DPoP {token[:20]} {token[20:]}"), 400, "invalid_request"),  # not a b64token
        (headers("DPoP " + "a" * 9000), 400, "invalid_request"),  # past max_token_length
        (headers("DPoP " + " " * 9000 + token), 400, "invalid_request"),
    ]


def test_flask_reads_the_dpop_authorization_value_as_rfc_9449_writes_it(clock: FakeClock) -> None:
    client = _flask_client(clock)
    for headers, status, error in _dpop_authorization_cases(clock, "http://localhost/r"):
        answer = client.get("/r", headers=headers)
        seen = (answer.status_code, answer.get_json().get("error", ""))
        assert seen == (status, error), headers["Authorization"][:40]


@pytest.mark.parametrize("entry", ["route", "fastapi", "middleware"])
def test_asgi_reads_the_dpop_authorization_value_as_rfc_9449_writes_it(
    clock: FakeClock, entry: str
) -> None:
    from starlette.testclient import TestClient

    client = TestClient(_asgi_apps(clock)[entry])
    url = "http://testserver/r"
    token = bound_token(clock)
    first = client.get(
        "/r",
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": make_proof(KEY, url=url, token=token, now=clock()),
        },
    )
    nonce = first.headers["DPoP-Nonce"]  # these apps demand one: the first answer gives it
    for headers, status, error in _dpop_authorization_cases(clock, url, nonce):
        answer = client.get("/r", headers=headers)
        seen = (answer.status_code, answer.json().get("error", ""))
        assert seen == (status, error), headers["Authorization"][:40]
