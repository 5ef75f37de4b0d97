"""Introspection under real gunicorn ``--preload``: no worker reads another's answer.

The app (``tests/apps/introspected_app.py``) introspects a warm-up token when
it is imported, so in the master, before the fork. A pool that survived the
fork would hand that one kept-alive connection to all four workers: their
requests interleave on it and each reads whichever answer comes first, so a
token is answered as another user's, and junk as a user. The introspection
server here answers slowly enough (5 ms) for that to show within a few dozen
concurrent requests.
"""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from .servers import (
    LoopbackServer,
    Reply,
    Seen,
    free_port,
    preloaded_gunicorn,
    server_process,
)

ROOT = Path(__file__).resolve().parent.parent
AUDIENCE = "https://api.example"
WORKERS = 4


def introspection(seen: Seen) -> Reply:
    """``tok-<user>`` is active with ``sub`` ``<user>``; anything else is not."""
    token = parse_qs(seen.body.decode()).get("token", [""])[0]
    if not token.startswith("tok-"):
        return Reply(200, {"active": False}, delay=0.005)
    answer = {"active": True, "sub": token[4:], "aud": AUDIENCE, "scope": "profile"}
    return Reply(200, answer, delay=0.005)


def ask(port: int, token: str | None) -> tuple[int, str, str]:
    """(status, body, worker pid) over a fresh connection, so the kernel spreads them."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", "/whoami", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Worker") or ""
    finally:
        conn.close()


@contextmanager
def gunicorn(endpoint: str, log: Path) -> Iterator[int]:
    port = free_port()
    env = dict(os.environ)
    env.update(
        BEARERGUARD_TEST_INTROSPECT_URL=endpoint,
        BEARERGUARD_TEST_INTROSPECT_CLIENT_ID="rs",
        BEARERGUARD_TEST_INTROSPECT_SECRET="a-secret-long-enough",
        BEARERGUARD_TEST_INTROSPECT_AUDIENCE=AUDIENCE,
    )
    command = preloaded_gunicorn("tests.apps.introspected_app:app", port, WORKERS)
    with server_process(
        command, log, lambda: ask(port, None)[0] == 401, env=env, start_timeout=20, stop_timeout=5
    ):
        yield port


@pytest.mark.timeout(60)
def test_preloaded_workers_never_read_each_others_introspection_answers(
    tmp_path: Path,
) -> None:
    tokens = [f"tok-user-{n}" for n in range(120)] + [f"junk-{n}" for n in range(40)]
    with (
        LoopbackServer(introspection) as server,
        gunicorn(server.url + "/introspect", tmp_path / "gunicorn.log") as port,
        ThreadPoolExecutor(16) as pool,
    ):
        answers = list(pool.map(lambda token: ask(port, token), tokens))

    wrong = [
        (token, status, body)
        for token, (status, body, _) in zip(tokens, answers, strict=True)
        if (status, body if status == 200 else "")
        != ((200, token[4:]) if token.startswith("tok-") else (401, ""))
    ]
    assert not wrong, f"{len(wrong)} of {len(tokens)} answered wrongly, e.g. {wrong[:5]}"
    assert len({pid for _, _, pid in answers}) > 1, "several workers answered"
