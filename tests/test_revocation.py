"""The in-process deny-list: batches, purging under load, forks, counters, and
what ``revoke()`` covers (every spelling of a JWS).

The protector-level behaviour of ``revoke*`` is in ``test_rfc6750.py``; the
shared store in ``test_redis.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from flask import Flask
from sqlalchemy import create_engine
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool

from bearerguard import ResourceProtector, ValidatorUnavailableError
from bearerguard.core.credentials import digest
from bearerguard.revocation import RevocationStore
from bearerguard.sqla import create_bearer_token_validator
from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator
from bearerguard.validators.base import TokenInfo

from .conftest import FakeClock, fork_while_held
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    Keypair,
    assert_refused,
    cached_keypair,
    call,
    ecdsa_twin,
    jwks,
    make_token,
    protected_app,
)
from .models import Base, Token


def info(**facts: object) -> TokenInfo:
    return TokenInfo(token={}, scopes=frozenset(), **facts)  # type: ignore[arg-type]


def test_a_batch_merges_and_tells_listeners_only_of_new_tokens(clock: FakeClock) -> None:
    store = RevocationStore(clock=clock)
    heard: list[bytes] = []
    store.add_listener(heard.append)
    known, new, stale = digest("known"), digest("new"), digest("stale")
    store.apply_token(known, clock() + 100)
    heard.clear()
    changed = store.apply_many(
        [(known, clock() + 50), (new, clock() + 100), (stale, clock() - 1)],
        [("jti", "j1", clock() + 10), ("sub", "alice", clock())],
    )
    assert changed == 3  # new token, jti, subject; the older news about `known` is ignored
    assert heard == [new]
    assert store.tokens[known] == clock() + 100
    assert stale not in store.tokens
    assert store.is_revoked(digest("x"), info(jti="j1"), clock())
    assert store.is_revoked(digest("x"), info(subject="alice", issued_at=clock() - 5), clock())


def test_an_unknown_rule_kind_is_refused(clock: FakeClock) -> None:
    store = RevocationStore(clock=clock)
    with pytest.raises(ValueError, match="kind"):
        store.apply_rule("user", "alice", clock())
    with pytest.raises(ValueError, match="kind"):
        store.apply_many([], [("user", "alice", clock())])


class _PurgeOnEntry:
    """The store's lock, with a purge run just before each holder gets it: the
    instant at which a concurrent purge() would swap the dicts, made certain."""

    def __init__(self, store: RevocationStore) -> None:
        self.store, self.real, self.purging = store, threading.Lock(), False

    def __enter__(self) -> None:
        if not self.purging:
            self.purging = True
            try:
                self.store.purge()
            finally:
                self.purging = False
        self.real.acquire()

    def __exit__(self, *exc: object) -> None:
        self.real.release()


def test_a_rule_applied_while_a_purge_runs_is_kept() -> None:
    """purge() swaps the dicts under the lock; a rule written to the old dict
    would be lost, so the dict must be looked up under the lock too."""
    store = RevocationStore()
    far = time.time() + 3600
    store.apply_many([], [("jti", "old", far)])
    store._lock = _PurgeOnEntry(store)  # type: ignore[assignment]
    for n in range(3):
        store.apply_rule("jti", f"new-{n}", far)
    assert {"old", "new-0", "new-1", "new-2"} <= set(store.jtis)


def test_purge_keeps_what_can_still_match(clock: FakeClock) -> None:
    store = RevocationStore(clock=clock, max_token_lifetime=100)
    store.apply_token(digest("a"), clock() + 10)
    store.apply_rule("jti", "j", clock() + 10)
    store.apply_rule("client", "app", clock())
    clock.advance(50)
    store.purge()
    assert store.stats() == {
        "tokens": 0,
        "jtis": 0,
        "subjects": 0,
        "clients": 1,
        "unverified": 0,
        "applied": 3,
    }
    clock.advance(50)
    store.purge()
    assert store.stats()["clients"] == 0 and not store.has_rules


def test_a_forked_child_can_revoke_while_a_parent_thread_held_the_lock(
    clock: FakeClock,
) -> None:
    store = RevocationStore(clock=clock)

    def revoke_in_child() -> bool:
        store.apply_token(digest("t"), clock() + 10)
        return True

    assert fork_while_held(store._lock, revoke_in_child)


# -- a JWS is revoked by what it signs, whatever the spelling of its signature ----------


@pytest.fixture(params=["ES256", "ES384", "ES512"])
def ec_protector(request: pytest.FixtureRequest, clock: FakeClock) -> tuple[Keypair, Any]:
    key = cached_keypair(request.param, "ec-1")
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    return key, protector


@pytest.mark.parametrize("revoked", ["original", "twin"])
def test_revoking_an_ecdsa_token_refuses_its_twin_signature(
    ec_protector: tuple[Keypair, ResourceProtector], clock: FakeClock, revoked: str
) -> None:
    """(r, s) and (r, n - s) both verify: two strings, one header, one claim
    set, one jti. A revocation keyed on the string missed the other one."""
    key, protector = ec_protector
    app = protected_app(protector)
    token = make_token(key, now=clock())
    twin = ecdsa_twin(token, key.alg)
    assert twin != token
    assert jwt.PyJWS().decode(twin, key=key.public_key, algorithms=[key.alg])
    assert call(app, twin).status == 200  # a working token of its own

    protector.revoke(token if revoked == "original" else twin)

    assert_refused(call(app, token), "token revoked")
    assert_refused(call(app, twin), "token revoked")
    clock.advance(299)
    assert_refused(call(app, twin), "token revoked")


def test_a_forged_signature_never_hits_the_real_tokens_cache_entry(clock: FakeClock) -> None:
    """The deny-list keys a JWS by its signed content; the cache must not:
    a forged signature over the same content is a different, invalid token."""
    key = cached_keypair("ES256", "ec-1")
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    app = protected_app(protector)
    token = make_token(key, now=clock())
    assert call(app, token).status == 200  # cached
    signing_input, _, signature = token.rpartition(".")
    forged = f"{signing_input}.{'A' * len(signature)}"
    assert_refused(call(app, forged), "invalid signature")


# -- a revocation lasts as long as the token could be accepted ----------------------------

DAY = 86400


@pytest.fixture
def database(clock: FakeClock) -> Iterator[tuple[ResourceProtector, Flask, Any]]:
    """A protector over a real (SQLite) token table, as an authorization server fills it."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(create_bearer_token_validator(session, Token)())
    yield protector, protected_app(protector), session
    session.remove()
    engine.dispose()


def issue(session: Any, value: str, now: float, lifetime: int) -> str:
    session.add(Token(access_token=value, scope="profile", issued_at=int(now), expires_in=lifetime))
    session.commit()
    return value


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "uncached"])
def test_a_revoked_30_day_database_token_stays_refused_until_its_expiry(
    database: tuple[ResourceProtector, Flask, Any], clock: FakeClock, cached: bool
) -> None:
    protector, app, session = database
    token = issue(session, "db-30-days", clock(), 30 * DAY)
    if cached:
        assert call(app, token).status == 200
    protector.revoke(token)
    for day in (1, 2, 10, 29):
        clock.now = FakeClock().now + day * DAY
        assert_refused(call(app, token), "token revoked")
    clock.now = FakeClock().now + 30 * DAY
    assert_refused(call(app, token), "token expired")


def test_a_revoked_48_hour_jwt_stays_refused_until_its_expiry(clock: FakeClock) -> None:
    key = cached_keypair("ES256", "ec-1")
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    app = protected_app(protector)
    token = make_token(key, now=clock(), exp=int(clock()) + 2 * DAY)
    protector.revoke(token)
    clock.advance(DAY + 1)
    assert_refused(call(app, token), "token revoked")
    clock.advance(DAY - 2)
    assert_refused(call(app, token), "token revoked")
    clock.advance(1)
    assert_refused(call(app, token), "token expired")


@pytest.mark.parametrize("rule", ["subject", "client"])
def test_a_rule_covers_a_long_lived_token_for_as_long_as_it_lives(
    clock: FakeClock, rule: str
) -> None:
    """Without max_token_lifetime nothing bounds how long a token lives (the
    demo seeds ten-year ones), so the rule is kept for ever: it lapsed after
    a day, and the old token was accepted again."""
    protector, backend = _opaque_protector(clock)
    app = protected_app(protector)
    facts = {"scope": "profile", "sub": "alice", "client_id": "app-1", "iat": clock()}
    backend.tokens["old"] = facts | {"exp": clock() + 3650 * DAY}
    assert call(app, "old").status == 200
    if rule == "subject":
        protector.revoke_subject("alice")
    else:
        protector.revoke_client("app-1")
    for days in (2, 400, 3649):
        clock.now = FakeClock().now + days * DAY
        protector.revocations.purge()
        assert_refused(call(app, "old"), "token revoked")
    backend.tokens["new"] = facts | {"iat": clock(), "exp": clock() + DAY}
    assert call(app, "new").status == 200


def test_a_rule_is_kept_for_ever_without_a_token_lifetime(clock: FakeClock) -> None:
    store = RevocationStore(clock=clock)
    old = info(subject="alice", client_id="app", issued_at=clock() - 10)
    store.revoke_subject("alice", clock())
    store.revoke_client("app", clock())
    clock.advance(400 * DAY)
    store.purge()
    assert store.is_revoked(digest("t"), old, clock())
    older = info(client_id="app", issued_at=clock() - 500 * DAY)
    assert store.is_revoked(digest("t"), older, clock())
    assert not store.is_revoked(digest("t"), info(subject="alice", issued_at=clock()), clock())


def test_with_a_token_lifetime_longer_tokens_are_refused_and_rules_lapse(
    clock: FakeClock,
) -> None:
    """max_token_lifetime=L keeps rules L seconds; that is sound only because
    no token that could outlive a rule is accepted at all."""
    key = cached_keypair("ES256", "ec-1")
    protector = ResourceProtector(
        clock=clock, revocations=RevocationStore(clock=clock, max_token_lifetime=3600)
    )
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    app = protected_app(protector)
    now = int(clock())
    assert_refused(
        call(app, make_token(key, now=now, exp=now + 3601)), "token lifetime exceeds the limit"
    )
    assert_refused(call(app, make_token(key, now=now, iat=None)), "token states no issue time")
    token = make_token(key, now=now, exp=now + 3600, sub="alice")
    assert call(app, token).status == 200
    protector.revoke_subject("alice")
    clock.advance(3599)
    assert_refused(call(app, token), "token revoked")
    clock.advance(1)
    protector.revocations.purge()
    assert not protector.revocations.subjects, "every token it covered has expired"
    assert_refused(call(app, token), "token expired")


# -- revoke() stores only what can matter ------------------------------------------------


class Backend(BearerTokenValidator):
    """Opaque tokens in a dict; ``down`` makes every lookup fail (database down)."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.tokens: dict[str, dict[str, Any]] = {}
        self.down = False
        self._clock = clock

    def authenticate_token(self, token_string: str) -> Any:
        if self.down:
            raise ConnectionError(f"database down; query was for {token_string}")
        return self.tokens.get(token_string)


def _opaque_protector(clock: FakeClock, **store: Any) -> tuple[ResourceProtector, Backend]:
    protector = ResourceProtector(clock=clock, revocations=RevocationStore(clock=clock, **store))
    backend = Backend(clock)
    protector.register_token_validator(backend)
    key = cached_keypair("ES256", "ec-1")
    protector.register_token_validator(JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(key)))
    return protector, backend


def test_revoking_junk_stores_nothing(clock: FakeClock) -> None:
    """Tokens nobody issued, or long expired, are refused anyway: revoking
    them (50,000 junk strings grew every worker by 7 MB) must not grow the list."""
    protector, backend = _opaque_protector(clock)
    key = cached_keypair("ES256", "ec-1")
    backend.tokens["gone"] = {"scope": "profile", "exp": clock() - 1}
    expired_jwt = make_token(key, now=clock() - 600)
    for token in [f"junk-{n:05d}" for n in range(2000)] + ["gone", expired_jwt]:
        protector.revoke(token)
    assert protector.revocations.stats()["tokens"] == 0
    assert_refused(call(protected_app(protector), "junk-00007"), "unknown token")


def test_an_unverifiable_revocation_is_bounded_in_time_and_number(clock: FakeClock) -> None:
    """The one kind of entry a caller can make up: while the database is down
    (or for a forged JWS) the token's word is all there is."""
    protector, backend = _opaque_protector(clock, max_unverified=3, unverified_lifetime=7 * DAY)
    app = protected_app(protector)
    backend.tokens["real"] = {"scope": "profile", "exp": clock() + 30 * DAY}
    backend.down = True
    protector.revoke("real")
    protector.revoke("junk-1")
    signing_input = make_token(cached_keypair("ES256", "ec-1"), now=clock()).rpartition(".")[0]
    protector.revoke(f"{signing_input}.{'A' * 86}")  # forged: exp is only its word
    assert protector.revocations.stats()["unverified"] == 3
    with pytest.raises(ValidatorUnavailableError) as raised:
        protector.revoke("junk-2")  # full: refused loudly, nothing dropped
    assert raised.value.__context__ is None, "the backend's error quotes the token"
    assert "junk-2" not in str(raised.value)
    backend.down = False
    assert_refused(call(app, "real"), "token revoked")
    clock.advance(7 * DAY - 1)
    assert_refused(call(app, "real"), "token revoked")
    clock.advance(1)
    assert call(app, "real").status == 200, "the bound is the documented policy"
    backend.down = True
    for n in range(3):
        protector.revoke(f"junk-{n + 2}")  # the lapsed ones no longer count


def test_a_verified_revocation_is_not_counted_against_the_unverified_bound(
    clock: FakeClock,
) -> None:
    protector, backend = _opaque_protector(clock, max_unverified=1)
    for n in range(5):
        backend.tokens[f"real-{n}"] = {"scope": "profile", "exp": clock() + DAY}
        protector.revoke(f"real-{n}")
    assert protector.revocations.stats() | {"applied": 0} == {
        "tokens": 5,
        "jtis": 0,
        "subjects": 0,
        "clients": 0,
        "unverified": 0,
        "applied": 0,
    }
