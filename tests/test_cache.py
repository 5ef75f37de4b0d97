"""TokenCache: lifetimes, negative caching, single-flight, bounded memory, counters.

Time is a FakeClock; concurrency is real threads. The cache is exercised
directly here; ``test_cache_protector.py`` runs the same promises through a
real threaded HTTP server and the protector.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bearerguard.cache import TokenCache
from bearerguard.core.credentials import digest
from bearerguard.errors import (
    InvalidTokenError,
    SigningKeysUnavailableError,
    TokenRevokedError,
    UnknownTokenError,
    ValidatorUnavailableError,
)
from bearerguard.validators.base import TokenInfo

from .conftest import FakeClock, fork_while_held

KEY = digest("token-1")


def info(expires_at: float | None = None, sub: str = "alice") -> TokenInfo:
    return TokenInfo(token={"sub": sub}, scopes=frozenset({"profile"}), expires_at=expires_at)


class Loader:
    """A loader that counts its calls and returns (or raises) what it is told."""

    def __init__(self, result: TokenInfo | BaseException) -> None:
        self.result = result
        self.calls = 0

    def __call__(self) -> TokenInfo:
        self.calls += 1
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


# -- hits and lifetimes ----------------------------------------------------------


def test_a_hit_returns_the_cached_validation_without_the_loader(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, clock=clock)
    loader = Loader(info())
    first = cache.load(KEY, loader)
    entry = cache.get(KEY)
    assert entry is not None and entry.info is first
    assert cache.load(KEY, loader) is first
    assert loader.calls == 1


@pytest.mark.parametrize(
    ("ttl", "exp_in", "lives"),
    [(60, 10, 10), (10, 60, 10), (30, None, 30), (30, 30, 30)],
    ids=["exp-first", "ttl-first", "no-exp", "same"],
)
def test_an_entry_lives_min_of_ttl_and_expiry(
    clock: FakeClock, ttl: float, exp_in: float | None, lives: float
) -> None:
    cache = TokenCache(ttl=ttl, clock=clock)
    cache.put(KEY, info(None if exp_in is None else clock() + exp_in))
    clock.advance(lives - 0.001)
    assert cache.get(KEY) is not None
    clock.advance(0.001)
    assert cache.get(KEY) is None
    loader = Loader(info())
    cache.load(KEY, loader)
    assert loader.calls == 1, "an expired entry must be validated afresh"


@pytest.mark.parametrize(
    ("until_in", "exp_in", "lives"),
    [(20, None, 20), (20, 10, 10), (120, None, 60)],
    ids=["until-first", "exp-first", "ttl-first"],
)
def test_a_validation_is_never_cached_past_its_cache_until(
    clock: FakeClock, until_in: float, exp_in: float | None, lives: float
) -> None:
    """A shared introspection answer says how long it may be trusted."""
    cache = TokenCache(ttl=60, clock=clock)
    exp = None if exp_in is None else clock() + exp_in
    cache.put(KEY, TokenInfo({}, frozenset(), expires_at=exp, cache_until=clock() + until_in))
    clock.advance(lives - 0.001)
    assert cache.get(KEY) is not None
    clock.advance(0.001)
    assert cache.get(KEY) is None


def test_an_already_expired_validation_is_not_cached(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, clock=clock)
    cache.put(KEY, info(clock() - 1))
    assert cache.get(KEY) is None
    assert len(cache) == 0


def test_newer_news_of_expiry_drops_the_older_entry(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, clock=clock)
    cache.put(KEY, info(clock() + 30))
    cache.put(KEY, info(clock()))  # revalidated: it has expired after all
    assert cache.get(KEY) is None
    assert len(cache._index) == 0


def test_repr_never_lists_entries(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    cache.put(KEY, info())
    text = repr(cache)
    assert KEY.hex() not in text and "alice" not in text and "1 entries" in text


# -- negative caching -------------------------------------------------------------


def test_a_refusal_is_cached_for_negative_ttl(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, negative_ttl=5, clock=clock)
    loader = Loader(UnknownTokenError())
    for _ in range(3):
        with pytest.raises(UnknownTokenError):
            cache.load(KEY, loader)
    assert loader.calls == 1
    assert cache.stats()["negative_hits"] == 2
    clock.advance(5)
    loader.result = info()
    assert cache.load(KEY, loader).token == {"sub": "alice"}
    assert loader.calls == 2


def test_the_cached_refusal_keeps_its_kind(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    with pytest.raises(TokenRevokedError):
        cache.load(KEY, Loader(TokenRevokedError()))
    with pytest.raises(TokenRevokedError) as caught:
        cache.load(KEY, Loader(info()))
    assert caught.value.description == TokenRevokedError.description


def test_negative_ttl_zero_turns_negative_caching_off(clock: FakeClock) -> None:
    cache = TokenCache(negative_ttl=0, clock=clock)
    loader = Loader(UnknownTokenError())
    for _ in range(3):
        with pytest.raises(UnknownTokenError):
            cache.load(KEY, loader)
    assert loader.calls == 3


@pytest.mark.parametrize(
    "outage",
    [ValidatorUnavailableError(), SigningKeysUnavailableError()],
    ids=["unavailable-503", "no-signing-keys-401"],
)
def test_an_outage_is_never_cached_and_recovery_is_immediate(
    clock: FakeClock, outage: InvalidTokenError
) -> None:
    cache = TokenCache(negative_ttl=5, clock=clock)
    loader = Loader(outage)
    for _ in range(2):
        with pytest.raises(type(outage)):
            cache.load(KEY, loader)
    assert loader.calls == 2
    loader.result = info()
    assert cache.load(KEY, loader) is loader.result


def test_evict_forgets_a_refusal_too(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    with pytest.raises(UnknownTokenError):
        cache.load(KEY, Loader(UnknownTokenError()))
    cache.evict(KEY)
    assert cache.load(KEY, Loader(info())).token == {"sub": "alice"}


# -- bounded memory ---------------------------------------------------------------


def test_memory_stays_bounded_under_a_stream_of_distinct_tokens(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, maxsize=100, negative_maxsize=50, clock=clock)
    for n in range(3000):
        cache.load(digest(f"good-{n}"), Loader(info()))
        with pytest.raises(UnknownTokenError):
            cache.load(digest(f"junk-{n}"), Loader(UnknownTokenError()))
        assert len(cache) <= 100
    assert len(cache._index) == 100
    assert len(cache._deadlines) <= 2 * 100 + 64  # stale deadlines are bounded too
    assert len(cache._negative) <= 50
    assert not cache._flights
    assert cache.stats()["evictions"] == 2900
    # The newest stay; the oldest went first.
    assert cache.get(digest("good-2999")) is not None
    assert cache.get(digest("good-0")) is None


def test_expired_entries_do_not_pile_up(clock: FakeClock) -> None:
    cache = TokenCache(ttl=1, maxsize=10_000, clock=clock)
    for n in range(2000):
        cache.put(digest(f"t-{n}"), info())
        clock.advance(0.01)
    # Only the last ~1 s of entries can be live; the rest were dropped on insert.
    assert len(cache) <= 101
    assert cache.stats()["evictions"] == 0


class _Model:
    """What the cache must answer: the last put value until its deadline."""

    def __init__(self) -> None:
        self.entries: dict[bytes, tuple[TokenInfo, float]] = {}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["put", "get", "evict", "tick"]),
            st.integers(0, 7),
            st.floats(0, 40, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_the_cache_agrees_with_a_model(ops: list[tuple[str, int, float]]) -> None:
    clock = FakeClock()
    cache = TokenCache(ttl=20, maxsize=5, clock=clock)
    model = _Model()
    for op, n, amount in ops:
        key = digest(f"k{n}")
        if op == "put":
            value = info(clock() + amount)
            cache.put(key, value)
            deadline = min(clock() + 20, clock() + amount)
            if deadline > clock():
                model.entries[key] = (value, deadline)
            else:  # already expired: nothing older may stay either
                model.entries.pop(key, None)
        elif op == "evict":
            cache.evict(key)
            model.entries.pop(key, None)
        elif op == "tick":
            clock.advance(amount)
        else:
            entry = cache.get(key)
            expected = model.entries.get(key)
            if entry is not None:
                # Never stale, and never anything but the last value put.
                assert expected is not None and entry.info is expected[0]
                assert clock() < expected[1]
        assert len(cache._index) <= 5 and len(cache._deadlines) <= 2 * 5 + 64
        # Every entry has its deadline in the heap, or it would never be purged.
        assert set(cache._index) <= {key for _, key in cache._deadlines}


# -- single-flight ----------------------------------------------------------------


def _race(cache: TokenCache, loader: Callable[[], TokenInfo], n: int) -> list[Any]:
    """``n`` threads load one key at once; the loader only returns once the
    other ``n - 1`` are waiting on it. Returns each thread's result or error."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def worker(i: int) -> None:
        start.wait()
        try:
            results[i] = cache.load(KEY, loader)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)
    return results


def _gated(cache: TokenCache, n: int, result: TokenInfo | BaseException) -> Loader:
    class Gated(Loader):
        def __call__(self) -> TokenInfo:
            wait_until(lambda: cache.waits.value >= n - 1)
            return super().__call__()

    return Gated(result)


N = 24


def test_concurrent_misses_share_one_validation(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    loader = _gated(cache, N, info())
    results = _race(cache, loader, N)
    assert loader.calls == 1
    assert all(r is loader.result for r in results)
    stats = cache.stats()
    assert (stats["misses"], stats["single_flight_waits"]) == (1, N - 1)


@pytest.mark.parametrize(
    ("error", "cached"),
    [(UnknownTokenError(), True), (ValidatorUnavailableError(), False)],
    ids=["refusal", "outage"],
)
def test_concurrent_misses_share_one_error(
    clock: FakeClock, error: BaseException, cached: bool
) -> None:
    cache = TokenCache(clock=clock)
    loader = _gated(cache, N, error)
    results = _race(cache, loader, N)
    assert loader.calls == 1
    assert all(type(r) is type(error) for r in results)
    again = Loader(info())
    if cached:
        with pytest.raises(type(error)):
            cache.load(KEY, again)
    else:
        cache.load(KEY, again)
    assert again.calls == (0 if cached else 1)


def test_an_unexpected_loader_error_reaches_waiters_as_503(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    loader = _gated(cache, 4, RuntimeError("database said something with the token in it"))
    results = _race(cache, loader, 4)
    assert sum(isinstance(r, RuntimeError) for r in results) == 1
    assert sum(isinstance(r, ValidatorUnavailableError) for r in results) == 3
    for r in results:
        assert "token in it" not in str(getattr(r, "description", ""))
        if isinstance(r, ValidatorUnavailableError):  # nor in its chain
            assert r.__cause__ is None and r.__context__ is None


def test_a_waiter_gives_up_after_wait_timeout(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock, wait_timeout=0.05)
    release = threading.Event()

    def slow() -> TokenInfo:
        release.wait(5)
        return info()

    leader = threading.Thread(target=cache.load, args=(KEY, slow))
    leader.start()
    wait_until(lambda: KEY in cache._flights)
    with pytest.raises(ValidatorUnavailableError):
        cache.load(KEY, Loader(info()))
    release.set()
    leader.join(5)
    assert cache.get(KEY) is not None


def test_an_eviction_during_a_validation_wins(clock: FakeClock) -> None:
    """A token changed (say, revoked in the database) while a request was
    validating the old row: the old answer must not be cached afterwards."""
    cache = TokenCache(clock=clock)
    reading, release = threading.Event(), threading.Event()

    def stale_read() -> TokenInfo:
        reading.set()
        release.wait(5)
        return info(sub="old row")

    leader = threading.Thread(target=cache.load, args=(KEY, stale_read))
    leader.start()
    assert reading.wait(5)
    cache.evict(KEY)
    release.set()
    leader.join(5)
    assert cache.get(KEY) is None
    fresh = Loader(info(sub="new row"))
    assert cache.load(KEY, fresh).token == {"sub": "new row"}
    assert fresh.calls == 1


def test_a_refusal_read_before_an_eviction_is_not_cached(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    reading, release = threading.Event(), threading.Event()

    def stale_refusal() -> TokenInfo:
        reading.set()
        release.wait(5)
        raise UnknownTokenError()

    def leader() -> None:
        with pytest.raises(UnknownTokenError):
            cache.load(KEY, stale_refusal)

    thread = threading.Thread(target=leader)
    thread.start()
    assert reading.wait(5)
    cache.evict(KEY)  # the token was just created
    release.set()
    thread.join(5)
    assert cache.load(KEY, Loader(info())).token == {"sub": "alice"}


# -- counters and thread safety ------------------------------------------------------


def test_counters_add_up_under_threads(clock: FakeClock) -> None:
    cache = TokenCache(ttl=60, maxsize=50, clock=clock)
    lookups_per_thread, threads_n = 400, 8
    keys = [digest(f"t{n}") for n in range(80)]

    def loader_for(n: int) -> Callable[[], TokenInfo]:
        def load() -> TokenInfo:
            if n % 5 == 0:
                raise UnknownTokenError()
            return info()

        return load

    def worker(seed: int) -> None:
        for i in range(lookups_per_thread):
            n = (seed * 7 + i * 13) % len(keys)
            if cache.get(keys[n]) is not None:
                continue
            with contextlib.suppress(UnknownTokenError):
                cache.load(keys[n], loader_for(n))
            if i % 50 == 0:
                cache.evict(keys[(n + 1) % len(keys)])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stats = cache.stats()
    total = stats["hits"] + stats["misses"] + stats["negative_hits"] + stats["single_flight_waits"]
    assert total == lookups_per_thread * threads_n
    assert stats["size"] == len(cache._index) <= 50
    assert set(cache._index) <= {key for _, key in cache._deadlines}
    assert not cache._flights


def test_a_forked_child_does_not_inherit_a_held_lock(clock: FakeClock) -> None:
    """gunicorn --preload forks workers from a process whose threads may hold
    the cache lock at that moment; the child must still be able to load."""
    cache = TokenCache(clock=clock)
    assert fork_while_held(
        cache._lock, lambda: cache.load(KEY, Loader(info())).token == {"sub": "alice"}
    )
