"""RedisRevocationStore against the real Redis on 127.0.0.1:6379 (db 13).

Several stores in one test stand for several processes: each has its own
subscriber thread, connection and local deny-list, exactly as a worker has.
Outages are real: a TCP proxy in front of Redis is cut and restored, or Redis
is told to ``CLIENT KILL`` a subscriber. One test forks a real child process.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from flask import Flask, jsonify

from bearerguard import ResourceProtector, TokenCache, ValidatorUnavailableError
from bearerguard.core.credentials import digest
from bearerguard.redis import RedisBroadcast, RedisRevocationStore
from bearerguard.revocation import RevocationStore
from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator, TokenInfo

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    assert_refused,
    cached_keypair,
    call,
    ecdsa_twin,
    jwks,
    make_token,
    protected_app,
)
from .servers import TCPProxy, free_port

pytestmark = pytest.mark.services


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        time.sleep(0.005)


def info(**facts: Any) -> TokenInfo:
    return TokenInfo(token=facts, scopes=frozenset({"profile"}), **facts)


@dataclass
class Shared:
    """Makes stores that share one channel and key prefix, unique to the test."""

    url: str
    channel: str
    prefix: str
    raw: redis.Redis
    stores: list[RedisRevocationStore]

    def store(self, url: str | None = None, **options: Any) -> RedisRevocationStore:
        options.setdefault("backoff", (0.02, 0.2))
        store = RedisRevocationStore(
            url or self.url, channel=self.channel, key_prefix=self.prefix, **options
        )
        self.stores.append(store)
        return store

    def started(self, url: str | None = None, **options: Any) -> RedisRevocationStore:
        store = self.store(url, **options)
        store.start()
        assert store.stats()["connected"], "the store did not reach Redis"
        return store

    def members(self, kind: str) -> dict[str, float]:
        rows: Any = self.raw.zrange(self.prefix + kind, 0, -1, withscores=True)
        return {member.decode(): score for member, score in rows}

    def kill_subscribers(self, client_name: str) -> int:
        ids = [c["id"] for c in self.raw.client_list("pubsub") if c["name"] == client_name]
        for client_id in ids:
            self.raw.client_kill_filter(_id=client_id)
        return len(ids)


@pytest.fixture
def shared(redis_url: str) -> Iterator[Shared]:
    tag = uuid.uuid4().hex[:8]
    raw = redis.Redis.from_url(redis_url)
    made = Shared(redis_url, f"bg-test:{tag}", f"bg-test:{tag}:", raw, [])
    yield made
    for store in made.stores:
        store.broadcast._stop.set()  # all at once: each takes up to a poll (0.25 s) to notice
    for store in made.stores:
        store.close()
    raw.close()


@pytest.fixture
def proxy() -> Iterator[TCPProxy]:
    made = TCPProxy("127.0.0.1", 6379)
    yield made
    made.close()


def via(proxy: TCPProxy, redis_url: str) -> str:
    return redis_url.replace(":6379/", f":{proxy.port}/")


KEY = digest("token-1")
LATER = time.time() + 3600


# -- the protector, two "processes" ------------------------------------------------


class DictValidator(BearerTokenValidator):
    def __init__(self, tokens: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.tokens, self.calls = tokens, 0

    def authenticate_token(self, token_string: str) -> Any:
        self.calls += 1
        return self.tokens.get(token_string)


def _app(
    store: RedisRevocationStore, clock: Callable[[], float] = time.time
) -> tuple[Flask, ResourceProtector, DictValidator]:
    exp = clock() + 3600
    validator = DictValidator({"tok-a": {"scope": "profile", "sub": "alice", "exp": exp}})
    protector = ResourceProtector(
        cache=TokenCache(ttl=300, clock=clock), revocations=store, clock=clock
    )
    protector.register_token_validator(validator)
    app = Flask(__name__)

    @app.get("/r")
    @protector("profile")
    def resource() -> Any:
        return jsonify(ok=True)

    return app, protector, validator


def test_a_revocation_in_one_process_is_enforced_by_another_at_once(shared: Shared) -> None:
    app_a, protector_a, validator_a = _app(shared.store())
    app_b, protector_b, validator_b = _app(shared.store())
    headers = {"Authorization": "Bearer tok-a"}
    assert app_b.test_client().get("/r", headers=headers).status_code == 200
    assert app_a.test_client().get("/r", headers=headers).status_code == 200
    cache_b = protector_b.cache
    assert cache_b is not None and len(cache_b) == 1

    protector_a.revoke("tok-a")

    wait_until(lambda: len(cache_b) == 0, what="B evicts its cached validation")
    response = app_b.test_client().get("/r", headers=headers)
    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": "token revoked"}
    assert validator_b.calls == 2
    # Redis holds the digest, never the token, until the token's own expiry.
    expiry = validator_a.tokens["tok-a"]["exp"]
    assert shared.members("token") == {hashlib.sha256(b"tok-a").hexdigest(): expiry}


def test_an_ecdsa_twin_of_a_token_revoked_elsewhere_is_refused(shared: Shared) -> None:
    key = cached_keypair("ES256", "ec-1")
    protectors = []
    for store in (shared.store(), shared.store()):
        protector = ResourceProtector(revocations=store)
        protector.register_token_validator(
            JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key))
        )
        protectors.append(protector)
    app_b = protected_app(protectors[1])
    token = make_token(key)
    twin = ecdsa_twin(token, key.alg)
    assert call(app_b, twin).status == 200

    protectors[0].revoke(token)

    wait_until(lambda: call(app_b, twin).status == 401, what="B refuses the twin")
    assert_refused(call(app_b, twin), "token revoked")
    # A third process, started now, loads the same key from Redis.
    late = ResourceProtector(revocations=shared.store())
    late.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    assert_refused(call(protected_app(late), twin), "token revoked")


@pytest.mark.parametrize(
    ("revoke", "facts"),
    [
        (lambda s: s.revoke_jti("j-1", LATER), {"jti": "j-1"}),
        (lambda s: s.revoke_subject("alice", time.time()), {"subject": "alice", "issued_at": 1.0}),
        (lambda s: s.revoke_client("app-1", time.time()), {"client_id": "app-1", "issued_at": 1.0}),
    ],
    ids=["jti", "subject", "client"],
)
def test_rules_reach_other_processes(
    shared: Shared, revoke: Callable[[RevocationStoreT], None], facts: dict[str, Any]
) -> None:
    a, b = shared.started(), shared.started()
    token = info(**facts)
    assert not b.is_revoked(KEY, token, time.time())
    revoke(a)
    wait_until(lambda: b.is_revoked(KEY, token, time.time()), what="B applies the rule")
    assert a.is_revoked(KEY, token, time.time())


RevocationStoreT = RedisRevocationStore


def test_an_eviction_reaches_other_processes_without_refusing(shared: Shared) -> None:
    a, b = shared.started(), shared.started()
    heard: list[bytes] = []
    b.add_listener(heard.append)
    a.evict(KEY)
    wait_until(lambda: heard == [KEY], what="B hears the eviction")
    assert not b.is_revoked(KEY, info(), time.time())


def test_a_process_that_starts_later_loads_the_deny_list(shared: Shared) -> None:
    a = shared.started()
    a.revoke_token(KEY, LATER)
    a.revoke_subject("bob", time.time())
    late = shared.store()
    # Its very first check already knows: the load happens before any answer.
    assert late.is_revoked(KEY, info(), time.time())
    assert late.is_revoked(digest("other"), info(subject="bob", issued_at=1.0), time.time())
    assert not late.is_revoked(digest("other"), info(subject="carol"), time.time())


def test_entries_expire_with_their_tokens(shared: Shared, clock: FakeClock) -> None:
    a = shared.started(clock=clock)
    a.revoke_token(KEY, clock() + 100)
    assert shared.members("token") == {KEY.hex(): clock() + 100}
    ttl = shared.raw.pttl(shared.prefix + "token")
    assert 100_000 <= ttl <= 101_000
    clock.advance(101)
    # A later process does not load what can no longer match ...
    late = shared.store(clock=clock)
    assert not late.is_revoked(KEY, info(), clock())
    assert late.stats()["tokens"] == 0
    # ... and the next write drops it from Redis.
    other = digest("token-2")
    a.revoke_token(other, clock() + 50)
    assert shared.members("token") == {other.hex(): clock() + 50}


DAY = 86400.0


def test_a_revocation_lasts_as_long_as_its_token_in_redis(shared: Shared, clock: FakeClock) -> None:
    """A revoked 48 h JWT stays refused for 48 h, also by a process started on day two."""
    key = cached_keypair("ES256", "ec-1")
    protector = ResourceProtector(clock=clock, revocations=shared.store(clock=clock))
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    exp = int(clock()) + 2 * 86400
    token = make_token(key, now=clock(), exp=exp)
    protector.revoke(token)
    [(_, score)] = shared.members("token").items()
    assert score == exp
    assert shared.raw.pttl(shared.prefix + "token") > 47 * 3600 * 1000
    clock.advance(DAY + 3600)
    late = ResourceProtector(clock=clock, revocations=shared.store(clock=clock))
    late.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    assert_refused(call(protected_app(late), token), "token revoked")


def test_entries_kept_for_ever_persist_and_reach_everyone(shared: Shared) -> None:
    """A token without expiry, and a rule without max_token_lifetime, last for ever:
    the sets persist (no TTL), and the messages carry "never" as JSON can."""
    a, b = shared.started(), shared.started()
    a.revoke_token(KEY, float("inf"))
    a.revoke_subject("alice", time.time())
    wait_until(lambda: b.is_revoked(KEY, info(), time.time()), what="B applies the token")
    wait_until(lambda: b.subjects.get("alice"), what="B applies the rule")
    assert shared.members("token") == {KEY.hex(): float("inf")}
    assert shared.raw.pttl(shared.prefix + "token") == -1
    assert shared.raw.pttl(shared.prefix + "sub") == -1
    a.revoke_token(digest("token-2"), time.time() + 60)  # a later, shorter entry
    assert shared.raw.pttl(shared.prefix + "token") == -1, "still persists"
    late = shared.store(clock=lambda: time.time() + 400 * DAY)
    assert late.is_revoked(KEY, info(), time.time() + 400 * DAY)
    old = info(subject="alice", issued_at=1.0)
    assert late.is_revoked(digest("x"), old, time.time() + 400 * DAY)


def test_revoking_junk_writes_nothing_to_redis(shared: Shared) -> None:
    _, protector, _ = _app(shared.store())
    for n in range(200):
        protector.revoke(f"junk-{n}")
    assert shared.members("token") == {}
    assert protector.revocations.stats()["tokens"] == 0


def test_the_stricter_of_two_revocations_wins(shared: Shared) -> None:
    a, b = shared.started(), shared.started()
    now = time.time()
    a.revoke_subject("alice", now)
    b.revoke_subject("alice", now - 100)  # older news, arriving later
    assert shared.members("sub") == {"alice": now}
    wait_until(lambda: b.subjects.get("alice") == now, what="B keeps the stricter rule")


def test_a_process_ignores_its_own_messages_and_garbage(shared: Shared) -> None:
    a, b = shared.started(), shared.started()
    junk_messages: list[bytes | str] = [
        b"not json",
        json.dumps({"k": "token", "v": "zz", "w": LATER}),
        json.dumps({"k": "token", "v": "ab" * 16 + "cd", "w": "soon"}),
        json.dumps({"k": "sub", "v": "alice", "w": float("inf")}),
        json.dumps({"k": "nuke", "v": "everything", "w": LATER}),
        json.dumps({"v": KEY.hex()}),
        json.dumps([1, 2, 3]),
    ]
    for junk in junk_messages:
        shared.raw.publish(shared.channel, junk)
    a.revoke_token(KEY, LATER)
    wait_until(lambda: b.is_revoked(KEY, info(), time.time()), what="B survives the junk")
    assert b.stats()["messages"] == 1
    assert not b.subjects, "a time that is not finite is not a time"
    assert a.stats()["messages"] == 0
    assert a.stats()["applied"] == 1


# -- outages -------------------------------------------------------------------------


def test_without_redis_a_process_serves_from_local_state(
    shared: Shared, caplog: pytest.LogCaptureFixture
) -> None:
    store = shared.store(f"redis://127.0.0.1:{free_port()}/13")
    started = time.monotonic()
    assert not store.is_revoked(KEY, info(), time.time())
    assert time.monotonic() - started < 1.5, "a refused connection must not hold requests"
    store.revoke_token(KEY, LATER)
    assert store.is_revoked(KEY, info(), time.time())
    stats = store.stats()
    assert (stats["connected"], stats["pending"]) == (False, 1)
    failures = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(failures) == 1, "logged once per interval, not per attempt"


def test_max_outage_turns_to_503_after_the_limit(shared: Shared, clock: FakeClock) -> None:
    store = shared.store(f"redis://127.0.0.1:{free_port()}/13", clock=clock, max_outage=30)
    app, _, _ = _app(store, clock)
    client = app.test_client()
    headers = {"Authorization": "Bearer tok-a"}
    assert client.get("/r", headers=headers).status_code == 200
    clock.advance(29)
    assert client.get("/r", headers=headers).status_code == 200
    clock.advance(1)
    response = client.get("/r", headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    with pytest.raises(ValidatorUnavailableError):
        store.is_revoked(KEY, info(), clock())


def _refusing(store: RedisRevocationStore) -> bool:
    try:
        store.is_revoked(KEY, info(), time.time())
    except ValidatorUnavailableError:
        return True
    return False


def test_a_silent_partition_turns_to_503_within_max_outage(
    shared: Shared, proxy: TCPProxy, redis_url: str
) -> None:
    """Packets dropped, no RST: nothing fails for seconds, so an outage clock
    started by a detected failure ran 12 s with max_outage=2. It must count
    from the last word heard from Redis."""
    store = shared.started(via(proxy, redis_url), max_outage=2)
    quiet_until = time.monotonic() + 3  # idle but live: longer than max_outage
    while time.monotonic() < quiet_until:
        assert not _refusing(store), "a live, idle link was taken for an outage"
        time.sleep(0.05)

    proxy.pause()
    paused = time.monotonic()
    wait_until(lambda: _refusing(store), timeout=4, what="503 after a silent partition")
    assert time.monotonic() - paused <= 2 + 1

    proxy.resume()
    wait_until(lambda: not _refusing(store), timeout=15, what="served again after it heals")


def test_a_receiver_cut_off_catches_up_on_reconnect(
    shared: Shared, proxy: TCPProxy, redis_url: str
) -> None:
    a = shared.started()
    b = shared.started(via(proxy, redis_url))
    proxy.down()
    wait_until(lambda: not b.stats()["connected"], what="B notices the outage")
    a.revoke_token(KEY, LATER)
    a.revoke_jti("j-9", LATER)
    # The documented policy: meanwhile B serves from what it knows.
    assert not b.is_revoked(KEY, info(), time.time())
    proxy.up()
    wait_until(lambda: b.is_revoked(KEY, info(), time.time()), what="B reloads on reconnect")
    assert b.is_revoked(digest("x"), info(jti="j-9"), time.time())
    assert b.stats()["outages"] == 1


def test_a_revocation_made_during_an_outage_is_pushed_on_reconnect(
    shared: Shared, proxy: TCPProxy, redis_url: str
) -> None:
    a = shared.started(via(proxy, redis_url))
    b = shared.started()
    proxy.down()
    wait_until(lambda: not a.stats()["connected"], what="A notices the outage")
    a.revoke_token(KEY, LATER)
    a.revoke_client("app-7", time.time())
    assert a.is_revoked(KEY, info(), time.time()), "enforced at once where it was made"
    assert a.stats()["pending"] == 2
    assert shared.members("token") == {}
    proxy.up()
    wait_until(lambda: b.is_revoked(KEY, info(), time.time()), what="B hears of it")
    wait_until(lambda: b.clients.get("app-7"), what="B hears of the client rule")
    assert KEY.hex() in shared.members("token")
    assert a.stats()["pending"] == 0


def test_evictions_missed_during_an_outage_are_replayed(
    shared: Shared, proxy: TCPProxy, redis_url: str
) -> None:
    a = shared.started()
    b = shared.started(via(proxy, redis_url))
    heard: list[bytes] = []
    b.add_listener(heard.append)
    proxy.down()
    wait_until(lambda: not b.stats()["connected"], what="B notices the outage")
    a.evict(KEY)  # the token row changed; B's cached copy is stale
    proxy.up()
    wait_until(lambda: KEY in heard, what="B replays the eviction")


def test_a_killed_subscription_reconnects_and_reloads(shared: Shared, redis_url: str) -> None:
    name = f"bg-kill-{uuid.uuid4().hex[:6]}"
    a = shared.started()
    b = shared.started(f"{redis_url}?client_name={name}")
    reloads = b.stats()["reloads"]
    assert shared.kill_subscribers(name) == 1
    a.revoke_token(KEY, LATER)  # possibly while B is re-subscribing
    wait_until(lambda: b.is_revoked(KEY, info(), time.time()), what="B enforces it")
    wait_until(lambda: b.stats()["reloads"] > reloads, what="B reloads after re-subscribing")
    wait_until(lambda: shared.kill_subscribers(name) == 1, what="B is subscribed again")


# -- Redis losing the deny-list -------------------------------------------------------


def _revoke_three(store: RedisRevocationStore) -> None:
    store.revoke_token(KEY, LATER)
    store.revoke_jti("j-lost", LATER)
    store.revoke_subject("bob", time.time())


def _refuses_all_three(store: RedisRevocationStore) -> bool:
    now = time.time()
    return (
        store.is_revoked(KEY, info(), now)
        and store.is_revoked(digest("x"), info(jti="j-lost"), now)
        and store.is_revoked(digest("x"), info(subject="bob", issued_at=1.0), now)
    )


def _in_redis(shared: Shared) -> bool:
    return (
        KEY.hex() in shared.members("token")
        and "j-lost" in shared.members("jti")
        and "bob" in shared.members("sub")
    )


def test_a_deny_list_flushed_from_redis_is_written_back_by_the_survivors(shared: Shared) -> None:
    """FLUSHALL, or a failover to an empty replica, while the subscriptions stay
    up: the survivors still hold every entry, and must put them back before a
    process started later loads an empty list and accepts revoked tokens."""
    a, b = shared.started(ping_interval=0.2), shared.started(ping_interval=0.2)
    _revoke_three(a)
    wait_until(lambda: _refuses_all_three(b), what="B applies the revocations")
    shared.raw.flushdb()
    wait_until(lambda: _in_redis(shared), what="the survivors write the list back")
    # The counter moves just after the write it counts: wait for it too.
    wait_until(
        lambda: a.stats()["restored"] + b.stats()["restored"] >= 3,
        what="the survivors count what they wrote back",
    )
    late = shared.store()
    assert _refuses_all_three(late)


def test_a_process_started_after_the_loss_hears_of_the_restore(shared: Shared) -> None:
    """Started between the loss and the survivors noticing it, a process loads
    an empty list: the survivor's restore tells it to load again."""
    survivor = shared.started(ping_interval=1.0)
    _revoke_three(survivor)
    shared.raw.flushdb()
    late = shared.started()
    wait_until(lambda: _refuses_all_three(late), timeout=10, what="the late process reloads")


def test_a_process_that_reconnects_writes_its_list_back(shared: Shared, redis_url: str) -> None:
    name = f"bg-restore-{uuid.uuid4().hex[:6]}"
    survivor = shared.started(f"{redis_url}?client_name={name}", ping_interval=60.0)
    _revoke_three(survivor)
    shared.raw.flushdb()  # Redis restarted without persistence, say
    assert shared.kill_subscribers(name) == 1
    wait_until(lambda: _in_redis(shared), what="the reconnected survivor writes back")
    assert _refuses_all_three(shared.store())


# -- processes ----------------------------------------------------------------------


def test_a_forked_child_runs_its_own_subscriber(shared: Shared) -> None:
    """What gunicorn --preload does: the store exists (and here even runs) in
    the parent; the child must subscribe on its own and not mistake the
    parent's messages for its own."""
    parent = shared.started()
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            parent.start()
            os.write(ready_w, b"r")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if parent.is_revoked(KEY, info(), time.time()):
                    code = 0
                    break
                time.sleep(0.005)
            parent.revoke_token(digest("from-child"), LATER)
        finally:
            os.write(done_w, bytes([code]))
            os._exit(code)
    try:
        assert os.read(ready_r, 1) == b"r"
        parent.revoke_token(KEY, LATER)
        assert os.read(done_r, 1) == b"\x00", "the child never applied the parent's revocation"
        wait_until(
            lambda: parent.is_revoked(digest("from-child"), info(), time.time()),
            what="the parent applies the child's revocation",
        )
    finally:
        os.waitpid(pid, 0)
        for fd in (ready_r, ready_w, done_r, done_w):
            os.close(fd)


def test_a_client_object_is_accepted_and_left_open(shared: Shared) -> None:
    client = redis.Redis.from_url(shared.url)
    store = RedisRevocationStore(client, channel=shared.channel, key_prefix=shared.prefix)
    store.revoke_token(KEY, LATER)
    assert KEY.hex() in shared.members("token")
    store.close()
    assert client.ping()
    client.close()


def test_close_stops_the_subscriber(shared: Shared) -> None:
    store = shared.started()
    thread = store.broadcast._thread
    assert thread is not None and thread.is_alive()
    store.close()
    assert not thread.is_alive()


# -- the composition the shorthand stands for ---------------------------------------


def test_a_store_composed_with_a_broadcast_shares_as_the_shorthand_does(shared: Shared) -> None:
    """``RevocationStore(broadcast=RedisBroadcast(...))`` and ``RedisRevocationStore``
    are one deny-list: each enforces what the other revoked, and reports the link."""
    composed = RevocationStore(
        broadcast=RedisBroadcast(shared.url, channel=shared.channel, key_prefix=shared.prefix)
    )
    try:
        composed.start()
        shorthand = shared.started()
        composed.revoke_token(KEY, LATER)
        wait_until(lambda: shorthand.is_revoked(KEY, info(), time.time()), what="shorthand hears")
        shorthand.revoke_subject("alice", time.time())
        old = info(subject="alice", issued_at=1.0)
        wait_until(lambda: composed.is_revoked(digest("x"), old, time.time()), what="B hears")
        stats = composed.stats()
        assert (stats["connected"], stats["tokens"], stats["messages"]) == (True, 1, 1)
        assert KEY.hex() in shared.members("token")
    finally:
        composed.close()


def test_a_composed_store_turns_to_503_after_max_outage(clock: FakeClock) -> None:
    broadcast = RedisBroadcast(
        f"redis://127.0.0.1:{free_port()}/13", max_outage=30, backoff=(0.02, 0.2)
    )
    store = RevocationStore(clock=clock, broadcast=broadcast)
    try:
        assert not store.is_revoked(KEY, info(), clock())
        clock.advance(30)
        with pytest.raises(ValidatorUnavailableError):
            store.is_revoked(KEY, info(), clock())
    finally:
        store.close()


def test_a_broadcast_serves_one_store(redis_url: str) -> None:
    broadcast = RedisBroadcast(redis_url)
    try:
        RevocationStore(broadcast=broadcast)
        with pytest.raises(ValueError, match="one RevocationStore"):
            RevocationStore(broadcast=broadcast)
    finally:
        broadcast.close()
