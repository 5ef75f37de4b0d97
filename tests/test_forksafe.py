"""A worker forked while another thread holds one of bearerguard's locks still works.

gunicorn ``--preload`` forks its workers from a master whose threads may be
mid-way through a JWKS fetch, a refusal's count or a log line at that instant;
the held lock would stay held in the child for ever. Each test holds a real
lock in a parent thread, forks, and has the child do what a worker does with
it (tests for the cache, the deny-list and the HTTP client are in their files).
"""

from __future__ import annotations

import os
from typing import Any

from bearerguard import ResourceProtector
from bearerguard._log import reset_throttle, throttled
from bearerguard.core.dpop import MemoryReplayStore
from bearerguard.validators.jwt import JWTBearerTokenValidator

from .conftest import fork_while_held
from .jwtkit import (
    AUDIENCE,
    JWKS_PATH,
    IssuerStub,
    cached_keypair,
    call,
    loopback_client,
    make_token,
    protected_app,
)
from .servers import LoopbackServer

KEY = cached_keypair("ES256", "fork-ec")
ISSUER = "https://as.example.com"


def _protector(server: LoopbackServer) -> tuple[ResourceProtector, JWTBearerTokenValidator]:
    protector = ResourceProtector()
    validator = JWTBearerTokenValidator(
        ISSUER, AUDIENCE, jwks_uri=server.url + JWKS_PATH, http=loopback_client()
    )
    protector.register_token_validator(validator)
    return protector, validator


def test_a_worker_forked_during_a_jwks_fetch_fetches_its_own_keys(serve: Any) -> None:
    """The fetch lock is held for a whole fetch: the likeliest one to be held."""
    server = serve(IssuerStub(KEY))
    protector, validator = _protector(server)
    app = protected_app(protector)
    assert validator.fetcher is not None

    def child() -> bool:
        return call(app, make_token(KEY, iss=ISSUER)).status == 200

    assert fork_while_held(validator.fetcher._lock, child)


def test_a_worker_forked_while_a_refusal_was_counted_counts_its_own(serve: Any) -> None:
    protector, _ = _protector(serve(IssuerStub(KEY)))
    app = protected_app(protector)

    def child() -> bool:
        refused = call(app, "not-a-known-token").status == 401
        return refused and sum(protector.stats()["validations"]["refused"].values()) == 1

    assert fork_while_held(protector.guard._outcomes_lock, child)


def test_a_worker_forked_while_a_log_line_was_throttled_still_logs() -> None:
    import bearerguard._log as log

    reset_throttle()

    def child() -> bool:
        return throttled(f"fork-test-{os.getpid()}", "a child's first line")

    assert fork_while_held(log._lock, child)


def test_a_worker_forked_while_a_proof_was_recorded_checks_its_own() -> None:
    store = MemoryReplayStore()

    def child() -> bool:
        return store.first_use("jti-1", 60.0) and not store.first_use("jti-1", 60.0)

    assert fork_while_held(store._lock, child)


def test_only_the_child_gets_a_new_lock(serve: Any) -> None:
    """The parent's threads go on using (and releasing) the lock they hold."""
    _, validator = _protector(serve(IssuerStub(KEY)))
    fetcher = validator.fetcher
    assert fetcher is not None
    before = fetcher._lock
    assert fork_while_held(before, lambda: fetcher._lock is not before)
    assert fetcher._lock is before and before.acquire(blocking=False)
    before.release()
