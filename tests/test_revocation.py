"""The in-process deny-list: batches, purging under load, forks, counters.

The protector-level behaviour of ``revoke*`` is in ``test_rfc6750.py``; the
shared store in ``test_redis.py``.
"""

from __future__ import annotations

import threading
import time

import pytest

from bearerguard._credentials import digest
from bearerguard.revocation import RevocationStore
from bearerguard.validators.base import TokenInfo

from .conftest import FakeClock, fork_while_held


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
