"""RFC 7662 introspection against a loopback server in a background thread.

bearerguard's validator (keep-alive connections, a cache) against Authlib's
``IntrospectTokenValidator`` written as Authlib documents it, with
``requests.post`` per call: a new connection each time, no cache.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from .apps import make_app, quiet_authlib, require_bearerguard_feature
from .config import Context
from .harness import Case, Feed, Group, Skip

PREFIX = "intro-"
CLIENT_ID, CLIENT_SECRET = "bench-rs", "bench-secret"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        token = form.get("token", [""])[0]
        now = int(time.time())
        if token.startswith(PREFIX):
            answer: dict[str, Any] = {
                "active": True,
                "scope": "profile email",
                "sub": "user-1",
                "client_id": "bench-client",
                "token_type": "Bearer",
                "iat": now,
                "exp": now + 3600,
            }
        else:
            answer = {"active": False}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # Headers and body in one write: written apart, the body waits for the
        # ACK of the headers, which a keep-alive client delays (Nagle and
        # delayed ACK), and every call takes ~40 ms instead of ~0.3.
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(body)
        self.flush_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class IntrospectionServer:
    """A threaded introspection endpoint on 127.0.0.1: active for ``intro-*`` tokens."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/introspect"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


_serial = itertools.count()


def mint_opaque(count: int) -> list[str]:
    """Distinct opaque tokens the server calls active."""
    return [f"{PREFIX}{next(_serial):07d}-{secrets.token_urlsafe(16)}" for _ in range(count)]


def bearerguard_app(name: str, url: str) -> Any:
    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.validators import IntrospectionTokenValidator
    from bearerguard.validators.jwt import ANY_AUDIENCE

    require_bearerguard_feature(IntrospectionTokenValidator, "IntrospectionTokenValidator")
    protector = ResourceProtector(cache=TokenCache(ttl=3600))
    # ANY_AUDIENCE: Authlib's introspection validator checks no aud either.
    validator = IntrospectionTokenValidator(
        endpoint=url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, audience=ANY_AUDIENCE
    )
    protector.register_token_validator(validator)
    return make_app(name, protector("profile"))


def authlib_app(name: str, url: str) -> Any:
    import requests
    from authlib.integrations.flask_oauth2 import ResourceProtector
    from authlib.oauth2.rfc7662 import IntrospectTokenValidator

    quiet_authlib()

    class RequestsIntrospectValidator(IntrospectTokenValidator):  # type: ignore[misc]
        def introspect_token(self, token_string: str) -> Any:
            data = {"token": token_string, "token_type_hint": "access_token"}
            resp = requests.post(url, data=data, auth=(CLIENT_ID, CLIENT_SECRET), timeout=5)
            resp.raise_for_status()
            return resp.json()

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(RequestsIntrospectValidator())
    return make_app(name, require_oauth("profile"))


def build(ctx: Context, group: Group) -> None:
    server = IntrospectionServer()
    ctx.stack.callback(server.close)
    reference = "introspection.authlib.requests"
    names = ["introspection.bg.hit", "introspection.bg.miss"]
    try:
        group.cases.append(
            Case(
                names[0],
                bearerguard_app("intro-hit", server.url),
                Feed(mint_opaque(16)),
                authlib=reference,
                target="hit",
            )
        )
        group.cases.append(
            Case(
                names[1],
                bearerguard_app("intro-miss", server.url),
                Feed(mint=mint_opaque),
                batch=ctx.profile.fixed(40),
                authlib=reference,
            )
        )
    except Skip as skip:
        group.skip(names, skip)
    import importlib.util

    if importlib.util.find_spec("requests") is None:
        group.skip(reference, Skip("requests is not installed", "package"))
        return
    group.cases.append(
        Case(
            reference,
            authlib_app("intro-authlib", server.url),
            Feed(mint_opaque(16)),
            batch=ctx.profile.fixed(15),
            target="authlib_introspection",
        )
    )
