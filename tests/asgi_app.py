"""A FastAPI resource server for the uvicorn tests (``test_asgi_uvicorn.py``).

``uvicorn tests.asgi_app:create_app --factory``; configured by environment:
``BG_INTROSPECT`` (the introspection endpoint, required), ``BG_REDIS_URL``,
``BG_CHANNEL`` (shared revocations; else in process). Each worker process
builds its own app, so each has its own cache, as in production. The admin
route is unprotected: this app only ever listens on 127.0.0.1, for a test.
"""

from __future__ import annotations

import os
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request, Security

from bearerguard.starlette import ResourceProtector
from bearerguard.validators import IntrospectionTokenValidator

AUDIENCE = "https://api.example"


def create_app() -> FastAPI:
    revocations = None
    if os.environ.get("BG_REDIS_URL"):
        from bearerguard.redis import RedisRevocationStore

        channel = os.environ["BG_CHANNEL"]
        revocations = RedisRevocationStore(
            os.environ["BG_REDIS_URL"], channel=channel, key_prefix=channel + ":"
        )
    require_oauth = ResourceProtector(revocations=revocations)
    require_oauth.register_token_validator(
        IntrospectionTokenValidator(
            os.environ["BG_INTROSPECT"], "rs-1", "s3cr3t", audience=AUDIENCE
        )
    )
    app = FastAPI()
    require_oauth.init_app(app)
    profile = Security(require_oauth("profile"))
    pid = os.getpid()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"pid": pid}

    @app.get("/r")
    async def resource(token: Any = profile) -> dict[str, Any]:
        return {"sub": token["sub"], "pid": pid}

    @app.post("/admin/revoke")
    async def revoke(request: Request) -> dict[str, Any]:
        token = (await request.json())["token"]
        await anyio.to_thread.run_sync(require_oauth.revoke, token)  # Redis: blocking I/O
        return {"pid": pid}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return {"pid": pid, "stats": require_oauth.stats()}

    return app
