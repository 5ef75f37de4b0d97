"""The ASGI front under a real uvicorn over HTTP on 127.0.0.1.

The app is ``tests/asgi_app.py`` (FastAPI, an introspection validator whose
authorization server is a loopback server here, so every validation is a
request it counts). Each server gets a free port, is bounded in time, and is
always stopped.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from .servers import LoopbackServer, Reply, Seen, free_port, server_process

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "https://api.example"


class AuthServer:
    """Knows the tokens a test makes; counts introspections per token; may be slow."""

    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}
        self.delays: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()

    def new(self, *, delay: float = 0.0, sub: str = "alice") -> str:
        token = secrets.token_urlsafe(16)
        exp = int(time.time()) + 600
        self.tokens[token] = {"active": True, "scope": "profile", "sub": sub, "aud": AUDIENCE}
        self.tokens[token]["exp"] = exp
        self.delays[token] = delay
        return token

    def __call__(self, seen: Seen) -> Reply:
        token = parse_qs(seen.body.decode()).get("token", [""])[0]
        with self.lock:
            self.calls[token] = self.calls.get(token, 0) + 1
        answer = self.tokens.get(token, {"active": False})
        return Reply(200, answer, delay=self.delays.get(token, 0.0))


@dataclass
class Uvicorn:
    port: int
    log: Path

    def request(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body), "application/json"
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        return response.status, json.loads(raw) if raw.startswith(b"{") else raw


@contextmanager
def uvicorn(tmp_path: Path, env: dict[str, str], workers: int = 1) -> Iterator[Uvicorn]:
    port = free_port()
    log = tmp_path / f"uvicorn-{port}.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.asgi_app:create_app",
        "--factory",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--workers={workers}",
        "--log-level=warning",
        "--timeout-graceful-shutdown=3",
    ]
    server = Uvicorn(port, log)
    with server_process(
        command,
        log,
        lambda: server.request("GET", "/health")[0] == 200,
        env={**os.environ, **env},
        cwd=ROOT,
    ):
        yield server


@pytest.fixture
def auth(serve: Any) -> tuple[AuthServer, LoopbackServer]:
    handler = AuthServer()
    return handler, serve(handler)


def _introspect_env(server: LoopbackServer) -> dict[str, str]:
    return {"BG_INTROSPECT": server.url + "/introspect"}


def test_concurrent_misses_of_one_token_make_one_introspection(
    tmp_path: Path, auth: tuple[AuthServer, LoopbackServer]
) -> None:
    handler, server = auth
    token = handler.new(delay=0.5)  # long enough for all 20 to arrive while it is pending
    with uvicorn(tmp_path, _introspect_env(server)) as app:
        answers: list[tuple[int, Any]] = []
        start = threading.Barrier(20)

        def ask() -> None:
            start.wait(10)
            answers.append(app.request("GET", "/r", token))

        threads = [threading.Thread(target=ask) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert [status for status, _ in answers] == [200] * 20
        assert all(body["sub"] == "alice" for _, body in answers)
        assert handler.calls[token] == 1
        stats = app.request("GET", "/stats")[1]["stats"]
        assert stats["validations"]["accepted"] == 20


def test_a_cache_hit_is_answered_while_a_slow_miss_waits(
    tmp_path: Path, auth: tuple[AuthServer, LoopbackServer]
) -> None:
    handler, server = auth
    fast, slow = handler.new(), handler.new(delay=4.0)
    with uvicorn(tmp_path, _introspect_env(server)) as app:
        assert app.request("GET", "/r", fast)[0] == 200  # now cached
        slow_answer: list[int] = []
        waiting = threading.Thread(
            target=lambda: slow_answer.append(app.request("GET", "/r", slow)[0])
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while handler.calls.get(slow, 0) == 0:  # the miss is at the introspection server
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # The loop answers the hit (and a request with no token) while the miss waits.
        assert app.request("GET", "/r", fast)[0] == 200
        assert app.request("GET", "/r")[0] == 401
        assert waiting.is_alive() and not slow_answer
        waiting.join(20)
        assert slow_answer == [200]
        assert handler.calls[fast] == 1


@pytest.mark.services
def test_a_revocation_through_one_worker_reaches_both_workers(
    tmp_path: Path, auth: tuple[AuthServer, LoopbackServer], redis_url: str
) -> None:
    handler, server = auth
    token = handler.new()
    # Pub/sub channels are global to a Redis server: one of this test's own.
    channel = f"bg-asgi-{uuid.uuid4().hex[:8]}"
    env = {**_introspect_env(server), "BG_REDIS_URL": redis_url, "BG_CHANNEL": channel}
    with uvicorn(tmp_path, env, workers=2) as app:
        accepted_by = _until_both(app, token, 200)
        assert len(accepted_by) == 2
        status, _ = app.request("POST", "/admin/revoke", body={"token": token})
        assert status == 200
        refused_by = _until_both(app, token, 401)
        assert refused_by == accepted_by
        # From now on, every worker refuses it.
        assert {app.request("GET", "/r", token)[0] for _ in range(20)} == {401}


def _until_both(app: Uvicorn, token: str, status: int) -> set[int]:
    """Ask with ``token`` over fresh connections until both workers have
    answered ``status`` (their pids, from /stats between the asks); bounded."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2:
        assert time.monotonic() < deadline, f"only workers {pids} answered {status}"
        got, body = app.request("GET", "/r", token)
        if got == status:
            pid = body["pid"] if got == 200 else _pid_of_refusal(app, token)
            if pid is not None:
                pids.add(pid)
    return pids


def _pid_of_refusal(app: Uvicorn, token: str) -> int | None:
    """A refusal names no worker; the one whose counters show a refused token did."""
    status, body = app.request("GET", "/stats")
    refused = body["stats"]["validations"]["refused"].get("invalid_token", 0)
    return body["pid"] if status == 200 and refused else None
