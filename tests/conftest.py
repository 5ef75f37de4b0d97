"""Shared fixtures: services (PostgreSQL, Redis), loopback servers, a fake clock.

Tests that need PostgreSQL or Redis skip with a one-line reason when the
service is not there, except under ``BEARERGUARD_REQUIRE_SERVICES=1`` (CI),
where a missing service fails the test.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bearerguard._log import reset_throttle

from .servers import Handler, LoopbackServer

PG_URL = os.environ.get("BEARERGUARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _worker_db(url: str) -> str:
    """Each pytest-xdist worker its own Redis db (13, 12, ...): the tests flush
    theirs, and a flush must not wipe what another worker's test is using."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    base, _, db = url.rpartition("/")
    offset = int(worker[2:]) if worker[2:].isdigit() else 0
    return f"{base}/{(int(db or 0) - offset) % 16}" if offset else url


REDIS_URL = _worker_db(os.environ.get("BEARERGUARD_TEST_REDIS", "redis://127.0.0.1:6379/13"))
REQUIRE_SERVICES = os.environ.get("BEARERGUARD_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    """Skip (or, under BEARERGUARD_REQUIRE_SERVICES=1, fail) when a service is down."""
    if _reachable(host, port):
        return
    message = f"{name} not reachable on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (BEARERGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def pg_url() -> str:
    need_service("PostgreSQL", "127.0.0.1", 5432)
    return PG_URL


def pg_schema_url(base_url: str = PG_URL) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test; yields a URL whose search_path is it."""
    need_service("PostgreSQL", "127.0.0.1", 5432)
    import uuid

    from sqlalchemy import create_engine, text

    schema = f"bg_{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A dedicated Redis db, flushed before and after the test."""
    need_service("Redis", "127.0.0.1", 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


class FakeClock:
    """Wall-clock seconds that only move when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], LoopbackServer]]:
    """Start loopback HTTP servers for this test; all are closed after it."""
    servers: list[LoopbackServer] = []

    def start(handler: Handler) -> LoopbackServer:
        server = LoopbackServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def fork_while_held(lock: Any, child: Callable[[], bool]) -> bool:
    """Fork while another thread holds ``lock``, run ``child()`` in the child.

    As gunicorn ``--preload`` does: it forks workers from a process whose
    threads may hold a lock at that moment. Returns the child's answer; fails
    the test if the child deadlocks (it is killed after 5 s).
    """
    import threading

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(5)
    try:
        answer = run_in_child(child)
    finally:
        release.set()
        holder.join(5)
    if answer is None:
        pytest.fail("the child deadlocked on the inherited lock")
    return answer


def run_in_child(child: Callable[[], bool], fork: Callable[[], int] = os.fork) -> bool | None:
    """Run ``child()`` in a process made by ``fork``: its answer, or None when
    it has not answered in 5 s (it is then killed)."""
    import time
    import warnings

    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_fd, b"ok" if child() else b"no")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        deadline = time.monotonic() + 5
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return None
            time.sleep(0.01)
        return os.read(read_fd, 2) == b"ok"
    finally:
        os.close(read_fd)


@pytest.fixture(autouse=True)
def _fresh_throttle() -> None:
    reset_throttle()
