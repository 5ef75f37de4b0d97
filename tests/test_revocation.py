"""The in-process deny-list: batches, purging under load, forks, counters, and
what ``revoke()`` covers (every spelling of a JWS).

The protector-level behaviour of ``revoke*`` is in ``test_rfc6750.py``; the
shared store in ``test_redis.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import pytest

from bearerguard import ResourceProtector
from bearerguard._credentials import digest
from bearerguard.revocation import RevocationStore
from bearerguard.validators import JWTBearerTokenValidator
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


def test_a_rule_applied_while_a_purge_runs_is_kept() -> None:
    """purge() swaps the dicts under the lock; a rule written to the old dict
    would be lost, so the dict must be looked up under the lock too."""
    store = RevocationStore()
    far = time.time() + 3600
    store.apply_many([], [("jti", f"old-{n}", far) for n in range(50_000)])
    stop = threading.Event()

    def purge_forever() -> None:
        while not stop.is_set():
            store.purge()

    purger = threading.Thread(target=purge_forever)
    purger.start()
    try:
        for n in range(300):
            store.apply_rule("jti", f"new-{n}", far)
    finally:
        stop.set()
        purger.join(10)
    lost = [n for n in range(300) if f"new-{n}" not in store.jtis]
    assert lost == []


def test_purge_keeps_what_can_still_match(clock: FakeClock) -> None:
    store = RevocationStore(clock=clock, max_token_lifetime=100)
    store.apply_token(digest("a"), clock() + 10)
    store.apply_rule("jti", "j", clock() + 10)
    store.apply_rule("client", "app", clock())
    clock.advance(50)
    store.purge()
    assert store.stats() == {"tokens": 0, "jtis": 0, "subjects": 0, "clients": 1, "applied": 3}
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
