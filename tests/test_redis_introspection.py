"""Introspection answers shared through the real Redis: one call for N processes.

Two validators stand for two worker processes; the introspection server is a
real loopback server, and Redis the real one (db 13, flushed per test).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
from flask import Flask

from bearerguard import ResourceProtector, TokenCache, current_token
from bearerguard.errors import InvalidTokenError, UnknownTokenError
from bearerguard.redis import RedisIntrospectionCache
from bearerguard.transport import HTTPClient
from bearerguard.validators import IntrospectionTokenValidator
from bearerguard.validators.jwt import ANY_AUDIENCE

from .conftest import FakeClock
from .servers import LoopbackServer, Reply, Seen, free_port

pytestmark = pytest.mark.services

TOKEN = "opaque-shared-1"
DIGEST = hashlib.sha256(TOKEN.encode()).hexdigest()
PREFIX = "bg-test:introspection:"
SECRET = "s3cr3t-of-16-bytes"


class Answers:
    def __init__(self) -> None:
        self.tokens: dict[str, dict[str, Any]] = {}

    def __call__(self, seen: Seen) -> Reply:
        token = parse_qs(seen.body.decode())["token"][0]
        return Reply(200, self.tokens.get(token, {"active": False}))


@pytest.fixture(scope="module")
def _server() -> Iterator[LoopbackServer]:
    # One server for the module; each test gets a fresh handler and request log.
    server = LoopbackServer(Answers())
    yield server
    server.close()


@pytest.fixture
def server(_server: LoopbackServer) -> LoopbackServer:
    _server.handler = Answers()
    _server.requests.clear()
    return _server


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def worker(server: LoopbackServer, redis_url: str) -> Iterator[Callable[..., Any]]:
    """Makes the validator of one worker process: its own HTTP client and
    Redis connection, the shared server and prefix."""
    made: list[Any] = []

    def make(
        secret: str = SECRET, url: str | None = None, **options: Any
    ) -> IntrospectionTokenValidator:
        http, shared = HTTPClient(), RedisIntrospectionCache(url or redis_url, key_prefix=PREFIX)
        made.extend([http, shared])
        options.setdefault("audience", ANY_AUDIENCE)  # the answers here carry no aud
        return IntrospectionTokenValidator(
            server.url + "/introspect", "rs", secret, http=http, shared_cache=shared, **options
        )

    yield make
    for thing in made:
        thing.close()


def answers(server: LoopbackServer) -> Answers:
    assert isinstance(server.handler, Answers)
    return server.handler


def test_n_workers_make_one_introspection_call(
    server: LoopbackServer, worker: Callable[..., Any], raw: redis.Redis
) -> None:
    exp = int(time.time()) + 30
    answers(server).tokens[TOKEN] = {"active": True, "sub": "alice", "scope": "a b", "exp": exp}
    workers = [worker() for _ in range(4)]
    infos = [w.validate(TOKEN) for w in workers]
    assert len(server.requests) == 1
    assert {i.subject for i in infos} == {"alice"}
    assert all(i.expires_at == exp and i.scopes == {"a", "b"} for i in infos)
    assert [w.stats().get("shared_hits") for w in workers] == [0, 1, 1, 1]
    # Keyed by digest, never by the token; kept no longer than the token lives.
    assert raw.keys(PREFIX + "*") == [(PREFIX + DIGEST).encode()]
    assert 0 < raw.pttl(PREFIX + DIGEST) <= 30_000
    stored = raw.get(PREFIX + DIGEST)
    assert isinstance(stored, bytes) and TOKEN.encode() not in stored


def test_an_inactive_answer_is_shared_briefly(
    server: LoopbackServer, worker: Callable[..., Any], raw: redis.Redis
) -> None:
    first, second = worker(), worker()
    for validator in (first, second):
        with pytest.raises(UnknownTokenError):
            validator.validate(TOKEN)
    assert len(server.requests) == 1
    assert 0 < raw.pttl(PREFIX + DIGEST) <= 5_000


def test_the_checks_still_run_on_a_shared_answer(
    server: LoopbackServer, worker: Callable[..., Any]
) -> None:
    answers(server).tokens[TOKEN] = {"active": True, "sub": "alice", "token_type": "DPoP"}
    for validator in (worker(), worker()):
        with pytest.raises(InvalidTokenError, match="bearer"):
            validator.validate(TOKEN)
    assert len(server.requests) == 1


@pytest.mark.parametrize("forger", ["raw-write", "other-secret"])
def test_a_forged_or_foreign_answer_is_ignored(
    server: LoopbackServer,
    worker: Callable[..., Any],
    raw: redis.Redis,
    forger: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forged = {"active": True, "sub": "mallory", "scope": "admin"}
    if forger == "raw-write":
        # Write access to Redis without the secret: a well-formed but unsigned answer.
        raw.set(PREFIX + DIGEST, b"00" * 32 + b"." + json.dumps(forged).encode(), px=60_000)
    else:
        # A resource server with other credentials shares the Redis prefix.
        answers(server).tokens[TOKEN] = forged
        worker(secret="another-secret-of-16").validate(TOKEN)
        answers(server).tokens.clear()
    caplog.set_level(logging.WARNING, "bearerguard")
    with pytest.raises(UnknownTokenError):
        worker().validate(TOKEN)  # asks the server, which says: not active
    assert any("does not verify" in r.getMessage() for r in caplog.records)


def test_without_redis_each_worker_asks_the_server(
    server: LoopbackServer, worker: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    down = f"redis://127.0.0.1:{free_port()}/13"  # nothing listens there
    answers(server).tokens[TOKEN] = {"active": True, "sub": "alice"}
    caplog.set_level(logging.WARNING, "bearerguard")
    for validator in (worker(url=down), worker(url=down)):
        assert validator.validate(TOKEN).subject == "alice"
    assert len(server.requests) == 2
    failures = [r for r in caplog.records if "shared introspection cache" in r.getMessage()]
    assert len(failures) == 1


def test_an_answer_made_persistent_in_redis_is_not_trusted_past_its_time(
    server: LoopbackServer, worker: Callable[..., Any], raw: redis.Redis
) -> None:
    """Whoever can write to Redis can PERSIST an entry: the expiry is inside the
    MAC, so a token revoked since is not kept alive by it."""
    clock = FakeClock()
    answers(server).tokens[TOKEN] = {"active": True, "sub": "alice"}
    assert worker(clock=clock, shared_ttl=60).validate(TOKEN).subject == "alice"
    assert raw.persist(PREFIX + DIGEST)
    answers(server).tokens.clear()  # revoked at the authorization server
    clock.advance(60)

    with pytest.raises(UnknownTokenError):
        worker(clock=clock, shared_ttl=60).validate(TOKEN)
    assert len(server.requests) == 2, "asked the server again"


def test_the_revocation_lag_across_workers_is_at_most_shared_ttl(
    server: LoopbackServer, worker: Callable[..., Any]
) -> None:
    """Worker B reads A's answer 50 s after A fetched it; with a 300 s cache ttl
    it used to trust it until 350 s. Every worker's entry ends at 60 s."""
    clock = FakeClock()
    answers(server).tokens[TOKEN] = {"active": True, "sub": "alice", "scope": "profile"}

    def app() -> Any:
        guard = ResourceProtector(cache=TokenCache(ttl=300, clock=clock), clock=clock)
        guard.register_token_validator(worker(clock=clock, shared_ttl=60))
        flask = Flask(__name__)
        flask.add_url_rule("/r", "r", guard("profile")(lambda: current_token["sub"]))
        client = flask.test_client()
        return lambda: client.get("/r", headers={"Authorization": f"Bearer {TOKEN}"}).status_code

    a, b = app(), app()
    assert a() == 200
    clock.advance(50)
    assert b() == 200
    assert len(server.requests) == 1, "B read A's answer"
    answers(server).tokens.clear()  # revoked at the authorization server

    clock.advance(9)
    assert (a(), b()) == (200, 200), "both still trust their cached entry"
    clock.advance(1)  # 60 s after the answer was fetched
    assert (a(), b()) == (401, 401)


@pytest.mark.parametrize(
    ("secret", "shared"),
    [("", False), ("", True), ("short-secret", True), ("x" * 15, True)],
    ids=["empty", "empty-shared", "short-shared", "15-bytes-shared"],
)
def test_an_empty_or_short_secret_is_refused(
    server: LoopbackServer, redis_url: str, secret: str, shared: bool
) -> None:
    cache = RedisIntrospectionCache(redis_url, key_prefix=PREFIX) if shared else None
    try:
        with pytest.raises(ValueError, match="client_secret"):
            IntrospectionTokenValidator(
                server.url, "rs", secret, audience=ANY_AUDIENCE, shared_cache=cache
            )
    finally:
        if cache is not None:
            cache.close()


def test_a_short_secret_is_accepted_without_a_shared_cache(server: LoopbackServer) -> None:
    """Without a shared cache it only authenticates us: the server's policy."""
    IntrospectionTokenValidator(server.url, "rs", "short", audience=ANY_AUDIENCE)
    IntrospectionTokenValidator(
        server.url, "rs", "x" * 16, audience=ANY_AUDIENCE, shared_cache=Answerless()
    )


class Answerless:
    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes, ttl: float) -> None:
        pass
