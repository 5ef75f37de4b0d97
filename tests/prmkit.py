"""Apps for the RFC 9728 tests, served for real on 127.0.0.1: Flask under
Werkzeug's server, FastAPI and Starlette under uvicorn, each with a protector
whose resource is the URL it is served at."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bearerguard import ResourceProtector
from bearerguard.validators import JWTBearerTokenValidator

from .jwtkit import ISSUER, cached_keypair, jwks, make_token

KEY = cached_keypair("ES256", "prm")
WELL_KNOWN = "/.well-known/oauth-protected-resource"


@contextlib.contextmanager
def served(front: str, build: Callable[[str], Any]) -> Iterator[str]:
    """Serve ``build(base_url)`` (an app of ``front``) on a loopback port; yield the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = build(base)
    if front == "flask":
        from werkzeug.serving import make_server

        sock.close()  # Werkzeug binds its own (the port was just freed)
        server = make_server("127.0.0.1", int(base.rsplit(":", 1)[1]), app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield base
        finally:
            server.shutdown()
            server.server_close()
        return
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none")
    asgi = uvicorn.Server(config)
    thread = threading.Thread(target=asgi.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not asgi.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield base
    finally:
        asgi.should_exit = True
        thread.join(10)
        sock.close()


def protector_of(front: str, **options: Any) -> Any:
    if front == "flask":
        return ResourceProtector(**options)
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    return ASGIProtector(**options)


def api(front: str, protector: Any, prefix: str = "") -> Any:
    """An app with ``{prefix}`` (scope ``profile``) and ``{prefix}/admin`` (``admin``)."""
    root = prefix or "/"
    if front == "flask":
        from flask import Flask

        app = Flask(__name__)
        protector.init_app(app)
        app.add_url_rule(root, "r", protector("profile")(lambda: {"ok": True}))
        app.add_url_rule(prefix + "/admin", "admin", protector("admin")(lambda: {"ok": True}))
        return app
    if front == "fastapi":
        from fastapi import FastAPI, Security

        fast = FastAPI()
        protector.init_app(fast)
        profile, admin = Security(protector("profile")), Security(protector("admin"))

        async def resource(token: Any = profile) -> dict[str, Any]:
            return {"ok": True}

        async def admin_view(token: Any = admin) -> dict[str, Any]:
            return {"ok": True}

        fast.add_api_route(root, resource)
        fast.add_api_route(prefix + "/admin", admin_view)
        return fast
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def ok(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        Route(root, protector.route("profile")(ok)),
        Route(prefix + "/admin", protector.route("admin")(ok)),
    ]
    star = Starlette(routes=routes)
    protector.init_app(star)
    return star


def jwt_protector(front: str, resource: Any, **options: Any) -> Any:
    """A protector for ``resource`` with a JWT validator taking its audience from it."""
    protector = protector_of(front, resource=resource, **options)
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, jwks=jwks(KEY)))
    return protector


def token(resource: str, **claims: Any) -> dict[str, str]:
    claims.setdefault("aud", resource)
    return {"Authorization": f"Bearer {make_token(KEY, **claims)}"}
