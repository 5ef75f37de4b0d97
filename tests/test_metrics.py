"""stats() and the Prometheus exposition, from real requests."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from prometheus_client import CollectorRegistry, generate_latest

from bearerguard import ResourceProtector
from bearerguard.metrics import PrometheusMetrics
from bearerguard.validators import JWTBearerTokenValidator

from .jwtkit import Keypair, make_token
from .opaquekit import OpaqueValidator, opaque_claims


def knows_good() -> OpaqueValidator:
    return OpaqueValidator({"good": opaque_claims(scope="read", exp=time.time() + 600, sub="s")})


def make_app(protector: ResourceProtector) -> Flask:
    app = Flask(__name__)

    @app.route("/r")
    @protector("read")
    def resource() -> str:
        return "ok"

    return app


def exercise(app: Flask) -> None:
    client = app.test_client()
    for header in ("Bearer good", "Bearer good", "Bearer good", "Bearer bad", None, "Bearer a b"):
        headers = {"Authorization": header} if header else {}
        client.get("/r", headers=headers)


def test_stats_count_outcomes_and_cache_events() -> None:
    protector = ResourceProtector()
    protector.register_token_validator(knows_good())
    exercise(make_app(protector))
    protector.revoke("good")
    stats = protector.stats()
    assert stats["validations"] == {
        "accepted": 3,
        "refused": {"invalid_token": 1, "missing_token": 1, "invalid_request": 1},
    }
    assert stats["cache"]["hits"] == 2
    assert stats["cache"]["misses"] == 2
    assert stats["revocations_applied"] == 1


def test_stats_include_validator_counters() -> None:
    key = Keypair.generate("ES256", kid="k1")
    protector = ResourceProtector()
    validator = JWTBearerTokenValidator(
        issuer="https://issuer.example", audience="api", jwks={"keys": [key.jwk()]}
    )
    protector.register_token_validator(validator)
    stats = protector.stats()
    assert stats["validators"] == {
        "jwt:https://issuer.example": {"jwks_fetches": 0, "jwks_fetch_failures": 0}
    }
    token = make_token(key, iss="https://issuer.example", aud="api", scope="read")
    response = (
        make_app(protector).test_client().get("/r", headers={"Authorization": f"Bearer {token}"})
    )
    assert response.status_code == 200
    assert protector.stats()["validations"]["accepted"] == 1


def test_prometheus_exposition() -> None:
    protector = ResourceProtector()
    protector.register_token_validator(knows_good())
    registry = CollectorRegistry()
    PrometheusMetrics(protector, registry=registry)
    exercise(make_app(protector))
    text = generate_latest(registry).decode()
    assert 'bearerguard_validations_total{error="",outcome="accepted"} 3.0' in text
    assert 'bearerguard_validations_total{error="invalid_token",outcome="refused"} 1.0' in text
    assert 'bearerguard_cache_events_total{event="hits"} 2.0' in text
    assert "bearerguard_cache_entries 1.0" in text
    assert "bearerguard_authorization_seconds_count 6.0" in text
    assert "good" not in text  # no token in any label


def test_every_asgi_request_is_timed_once() -> None:
    """The ASGI fronts answer a hit without a coroutine and decide the rest in
    another step: each request is still one observation, hit, miss or refusal."""
    from fastapi import FastAPI, Security
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bearerguard.starlette import BearerMiddleware
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    headers = [{"Authorization": "Bearer good"}] * 3 + [{"Authorization": "Bearer bad"}, {}]
    for entry in ("route", "fastapi", "middleware"):
        protector = ASGIProtector()
        protector.register_token_validator(knows_good())
        seen: list[float] = []
        protector.observe_latency = seen.append
        if entry == "route":

            async def resource(request: object) -> PlainTextResponse:
                return PlainTextResponse("ok")

            app: Any = Starlette(routes=[Route("/r", protector.route("read")(resource))])
        elif entry == "fastapi":
            app = FastAPI()
            protector.init_app(app)

            @app.get("/r")
            async def protected(token: object = Security(protector("read"))) -> str:
                return "ok"
        else:
            app = Starlette(routes=[Route("/r", lambda request: PlainTextResponse("ok"))])
            app.add_middleware(BearerMiddleware, protector=protector, scope="read")
        client = TestClient(app)
        statuses = [client.get("/r", headers=h).status_code for h in headers]
        assert statuses == [200, 200, 200, 401, 401], entry
        assert len(seen) == len(headers), entry
        assert all(0 <= s < 5 for s in seen), entry


def test_a_failing_latency_observer_is_a_503_never_a_500() -> None:
    """``observe_latency`` is a user's callable: what it raises answers 503
    (behind the hook guard), on a hit, a miss and a refusal, on every front."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bearerguard.starlette import ResourceProtector as ASGIProtector

    def broken(seconds: float) -> None:
        raise RuntimeError("metrics backend down")

    flask_protector = ResourceProtector()
    flask_protector.register_token_validator(knows_good())
    flask_protector.observe_latency = broken
    flask_client = make_app(flask_protector).test_client()
    asgi_protector = ASGIProtector()
    asgi_protector.register_token_validator(knows_good())
    asgi_protector.observe_latency = broken

    async def resource(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    asgi = Starlette(routes=[Route("/r", asgi_protector.route("read")(resource))])
    asgi_client = TestClient(asgi, raise_server_exceptions=False)
    for header in ("Bearer good", "Bearer good", "Bearer bad"):  # miss, hit, refusal
        for client in (flask_client, asgi_client):
            answer = client.get("/r", headers={"Authorization": header})
            assert answer.status_code == 503, (header, answer.status_code)
