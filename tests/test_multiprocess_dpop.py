"""DPoP replay across real worker processes: four gunicorn workers, one Redis.

RFC 9449 §11.1: a proof is accepted once, whichever worker sees it first.
Each proof is sent several times at once over fresh connections, so the
kernel spreads its copies over the workers; exactly one copy may pass.

Then the replay store's Redis is killed mid-run (a private ``redis-server``
of the test's own, never the shared one): DPoP requests fail closed (503)
while it is down, and pass again once it is back on the same port; a server
in the ``iat``-window-only mode accepts meanwhile.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import REQUIRE_SERVICES
from .dpopkit import jkt, make_proof
from .jwtkit import AUDIENCE, ISSUER, cached_keypair, jwks, make_token
from .servers import free_port, preloaded_gunicorn, server_process

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parent.parent
WORKERS = 4
ISSUER_KEY = cached_keypair("RS256", "mp-dpop-issuer")
CLIENT_KEY = cached_keypair("ES256", "mp-dpop-client")
#: The soak's share of ``BEARERGUARD_SOAK_SECONDS`` (default 8): 2 s in ``make test``.
SOAK_SECONDS = float(os.environ.get("BEARERGUARD_SOAK_SECONDS", "8")) / 4


#: (status, error code or "", worker pid) of one request.
Answer = tuple[int, str, str]


class Server:
    """One gunicorn running tests/apps/dpop_app.py, and a bound token for it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/r"
        self.token = make_token(
            ISSUER_KEY, cnf={"jkt": jkt(CLIENT_KEY)}, exp=int(time.time()) + 600
        )

    def proof(self) -> str:
        return make_proof(CLIENT_KEY, url=self.url, token=self.token, now=time.time())

    def send(self, proof: str | None) -> Answer:
        """GET /r with the token and ``proof`` (a fresh one for None), on a new connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {"Authorization": f"DPoP {self.token}", "DPoP": proof or self.proof()}
        try:
            conn.request("GET", "/r", headers=headers)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        error = json.loads(body).get("error", "") if body.startswith(b"{") else ""
        return response.status, error, response.getheader("X-Worker") or ""

    def until(self, done: Callable[[dict[str, list[int]]], bool], timeout: float = 30) -> None:
        """Fresh proofs until ``done(statuses in order, by worker pid)`` (bounded)."""
        seen: dict[str, list[int]] = defaultdict(list)
        deadline = time.monotonic() + timeout
        while not done(seen):
            assert time.monotonic() < deadline, f"never got there: {dict(seen)}"
            status, _, pid = self.send(None)
            seen[pid].append(status)


@contextmanager
def gunicorn(tmp_path: Path, redis_url: str, *, iat_only: bool = False) -> Iterator[Server]:
    port = free_port()
    keys = tmp_path / f"jwks-{port}.json"
    keys.write_text(json.dumps(jwks(ISSUER_KEY)))
    env = dict(os.environ)
    env.update(
        BEARERGUARD_TEST_DPOP_JWKS=str(keys),
        BEARERGUARD_TEST_DPOP_ISSUER=ISSUER,
        BEARERGUARD_TEST_DPOP_AUDIENCE=AUDIENCE,
        BEARERGUARD_TEST_DPOP_REDIS=redis_url,
        # Keys of this run's own: another run on the same Redis never collides.
        BEARERGUARD_TEST_DPOP_PREFIX=f"bg-mp-dpop-{uuid.uuid4().hex[:8]}:",
        BEARERGUARD_TEST_DPOP_IAT_ONLY="1" if iat_only else "",
    )
    command = preloaded_gunicorn("tests.apps.dpop_app:app", port, WORKERS)
    server = Server(port)
    log = tmp_path / f"gunicorn-{port}.log"

    def ready() -> bool:
        return server.send(None)[0] in (200, 503)

    with server_process(command, log, ready, env=env, start_timeout=20, stop_timeout=5):
        yield server


def _all_workers(status: int) -> Callable[[dict[str, list[int]]], bool]:
    """Every worker's latest answer is ``status``."""
    return lambda seen: len(seen) == WORKERS and all(s[-1] == status for s in seen.values())


def _only(status: int) -> Callable[[dict[str, list[int]]], bool]:
    """Every worker has answered, and every answer was ``status``."""
    return lambda seen: len(seen) == WORKERS and all(set(s) == {status} for s in seen.values())


def _sent_at_once(server: Server, proofs: list[str], copies: int) -> dict[str, list[Answer]]:
    """Each of ``proofs`` sent ``copies`` times, all at once over 16 connections."""
    batch = [p for p in proofs for _ in range(copies)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(server.send, batch))
    by_proof: dict[str, list[Answer]] = defaultdict(list)
    for proof, answer in zip(batch, answers, strict=True):
        by_proof[proof].append(answer)
    return by_proof


def _assert_each_accepted_once(by_proof: dict[str, list[Answer]], copies: int) -> int:
    """Exactly one 200 per proof, every other copy a 401 invalid_dpop_proof;
    returns how many proofs had copies answered by more than one worker."""
    across = 0
    for proof, answers in by_proof.items():
        outcomes = Counter((status, error) for status, error, _ in answers)
        assert outcomes == {(200, ""): 1, (401, "invalid_dpop_proof"): copies - 1}, (
            proof[-12:],
            answers,
        )
        across += len({pid for _, _, pid in answers}) > 1
    return across


def test_each_proof_is_accepted_exactly_once_across_four_workers(
    tmp_path: Path, redis_url: str
) -> None:
    copies = 4
    with gunicorn(tmp_path, redis_url) as server:
        server.until(_all_workers(200))  # every worker up, and taking DPoP
        proofs = [server.proof() for _ in range(24)]
        by_proof = _sent_at_once(server, proofs, copies)
    across = _assert_each_accepted_once(by_proof, copies)
    # The copies of most proofs met different workers: replay was caught across processes.
    assert across > len(proofs) // 2, across
    workers = {pid for answers in by_proof.values() for _, _, pid in answers}
    assert len(workers) == WORKERS


@pytest.mark.soak
def test_replays_across_workers_stay_refused_for_a_while(tmp_path: Path, redis_url: str) -> None:
    """The same, in rounds for a quarter of ``BEARERGUARD_SOAK_SECONDS`` (2 s by default)."""
    copies, rounds = 3, 0
    with gunicorn(tmp_path, redis_url) as server:
        server.until(_all_workers(200))
        stop_at = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < stop_at:
            by_proof = _sent_at_once(server, [server.proof() for _ in range(16)], copies)
            _assert_each_accepted_once(by_proof, copies)
            rounds += 1
    assert rounds >= 1


# -- Redis killed mid-run -------------------------------------------------------------------


class PrivateRedis:
    """A ``redis-server`` of this test's own on a free port, to kill and restart."""

    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: a crash, not a shutdown
        self.process.wait(10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (BEARERGUARD_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.kill()


@pytest.mark.timeout(120)
def test_redis_killed_mid_run_fails_closed_then_recovers(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    with (
        gunicorn(tmp_path, private_redis.url) as strict,
        gunicorn(tmp_path, private_redis.url, iat_only=True) as lenient,
    ):
        strict.until(_all_workers(200))
        lenient.until(_all_workers(200))
        replayed = strict.proof()
        assert strict.send(replayed)[0] == 200

        private_redis.kill()
        # Every worker of the strict server answers 503, never a 200 or a 500.
        strict.until(_only(503))
        down = [strict.send(None) for _ in range(12)]
        assert {(status, error) for status, error, _ in down} == {(503, "temporarily_unavailable")}
        # The iat-window-only server goes on accepting fresh proofs.
        lenient.until(_only(200))
        assert {lenient.send(None)[0] for _ in range(12)} == {200}

        private_redis.start()  # the same port, empty: a restarted cache
        strict.until(_all_workers(200))
        assert {strict.send(None)[0] for _ in range(12)} == {200}
        # Replay is caught again, across workers, once the store is back.
        proof = strict.proof()
        by_proof = _sent_at_once(strict, [proof], 4)
        _assert_each_accepted_once(by_proof, 4)
