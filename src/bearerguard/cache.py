"""The token cache in front of every validator.

A validated token is kept until ``min(ttl, exp)``, or its validator's
``cache_until`` if sooner; a refused one for a short ``negative_ttl``, so a
flood of junk tokens does not reach the database or the authorization server.
Concurrent misses for one token share a single validation (single-flight).
Keys are SHA-256 digests: the cache never holds a raw token, and its
``repr`` never lists entries.

Why not ``cachetools.TLRUCache``: its ``__getitem__`` moves the key in an
``OrderedDict`` and reads the timer through a context manager, about 3.5 µs
with the lock it needs (it is not thread-safe), a third of the whole budget of
a cache hit, and its insert kept a second index, about 7 µs of every miss. So
the entries live in one plain dict, which the GIL makes safe to read without
a lock, and a heap of deadlines beside it, written under the lock: an insert
drops what has expired (the heap's top), then the oldest entries while full.
Eviction order is insertion order rather than recency, which suits tokens,
whose entries expire anyway.

An eviction (a token changed or was revoked) also cancels a validation in
flight for that token: its answer, read before the change, is handed to the
requests already waiting for it but never cached. The cache is fork-safe: a
child process (a gunicorn worker forked from a ``--preload`` master) starts
with a fresh lock and no validations in flight.
"""

from __future__ import annotations

import heapq
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from cachetools import Cache, TTLCache

from .core.stats import CacheStats
from .core.tokeninfo import TokenInfo
from .errors import BearerGuardError, InvalidTokenError, ValidatorUnavailableError

__all__ = ["AtomicCounter", "CacheEntry", "TokenCache"]


class CacheEntry:
    """One cached validation: the token's facts and when the entry lapses.

    ``plain``: the token needs nothing per request beyond the scope check and
    the deny-list, decided once at insert, so that a hit tests one attribute
    rather than three fields. A class attribute, not a slot: a slot would
    cost every cached token 16 bytes.
    """

    __slots__ = ("deadline", "info")
    plain = True

    def __init__(self, info: TokenInfo, deadline: float) -> None:
        self.info = info
        self.deadline = deadline


class _CheckedEntry(CacheEntry):
    """An entry whose token asks more of each request: ``is_expired()``, a
    certificate binding (RFC 8705) or the validator's hooks."""

    __slots__ = ()
    plain = False


class AtomicCounter:
    """A counter safe to bump from many threads without a lock.

    ``next()`` on an ``itertools.count`` is a single C call, so the GIL makes it
    atomic, where ``self.n += 1`` can lose updates between threads.
    """

    __slots__ = ("_count", "bump")

    def __init__(self) -> None:
        self._count = itertools.count()
        self.bump = self._count.__next__

    @property
    def value(self) -> int:
        # repr is "count(N)": the next value, i.e. how many bumps so far.
        return int(repr(self._count)[6:-1])


_stored: Callable[[Cache[Any, Any]], int] = Cache.__len__


class _Done:
    """A one-shot latch: ``wait`` returns True once ``set`` has been called.

    A Lock held from birth and released by ``set``: a fifth of the cost of a
    ``threading.Event`` (a Condition over a Lock), paid on every cache miss
    while waiters are rare. Each waiter releases it again for the next.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        self._lock.release()

    def wait(self, timeout: float) -> bool:
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True


class _Flight:
    """One validation in progress; concurrent misses wait on ``done``.

    ``done`` is made by the first waiter, not by the leader: most misses have
    no waiter, and a latch is a lock allocated and taken. Both sides touch it
    under the cache's lock only, so a waiter's latch exists by the time the
    leader, under that lock, takes its flight out, and is then released.
    """

    # Class-level defaults, no __init__: a flight is made on every miss, and
    # _Flight() then runs no Python frame. Made and given its info, it takes
    # 109 ns against 132 with slots set in an __init__ (timeit), dict and all.
    done: _Done | None = None
    info: TokenInfo | None = None
    error: BaseException | None = None

    def finish(self) -> None:
        """Release the waiters, if any came (``done`` read under the cache's lock)."""
        if self.done is not None:
            self.done.set()


# Every live cache, so a forked child can replace locks that a parent thread
# may have held at the moment of the fork (they would stay locked forever).
_caches: weakref.WeakSet[TokenCache] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for cache in list(_caches):
        cache._lock = threading.Lock()
        cache._flights = {}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


#: Stale deadlines (of entries replaced, evicted or evicted by size) the heap
#: may hold before it is rebuilt from the live entries.
_HEAP_SLACK = 64


class TokenCache:
    """A bounded TTL cache of validated tokens, keyed by token digest.

    :param ttl: the longest a validation is trusted, in seconds.
    :param maxsize: the most entries kept; the oldest go first.
    :param negative_ttl: how long a refused token stays refused without a
        new lookup (0 turns negative caching off).
    :param clock: wall-clock seconds; token expiries are epoch times.
    :param wait_timeout: how long a request waits for another thread's
        validation of the same token before answering 503.
    """

    def __init__(
        self,
        ttl: float = 300.0,
        maxsize: int = 100_000,
        *,
        negative_ttl: float = 5.0,
        negative_maxsize: int = 10_000,
        clock: Callable[[], float] = time.time,
        wait_timeout: float = 30.0,
    ) -> None:
        if ttl <= 0 or maxsize <= 0:
            raise ValueError("ttl and maxsize must be positive")
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self.wait_timeout = wait_timeout
        #: Read lock-free by ``Guard.try_cached`` (a hit), so never replaced: only
        #: changed in place, under the lock.
        self._index: dict[bytes, CacheEntry] = {}
        self._lock = threading.Lock()
        self._flights: dict[bytes, _Flight] = {}
        self.hits, self.misses = AtomicCounter(), AtomicCounter()
        self.negative_hits, self.evictions, self.waits = (AtomicCounter() for _ in range(3))
        self.maxsize = maxsize
        #: ``(deadline, key)``: a min-heap of when entries lapse; an item whose
        #: key now has a later entry (or none) is skipped when popped.
        self._deadlines: list[tuple[float, bytes]] = []
        self._negative: TTLCache[bytes, tuple[type[BearerGuardError], str]] = TTLCache(
            negative_maxsize, max(negative_ttl, 1e-9), timer=clock
        )
        self._owner: weakref.ref[Any] | None = None
        _caches.add(self)

    def bind(self, owner: Any) -> None:
        """Serve ``owner`` (a protector) alone; called by the protector.

        An entry says "these validators accepted this token": another
        protector, with other validators, must not take it for its own, so a
        cache that serves one protector refuses a second (``ValueError``). Once
        its protector is gone, the cache is cleared and may serve another.
        """
        current = self._owner() if self._owner is not None else None
        if current is owner:
            return
        if current is not None:
            raise ValueError(
                "this TokenCache serves another ResourceProtector: its entries are "
                "that protector's validations; give each protector its own cache"
            )
        if self._owner is not None:
            self.clear()  # the last owner's validations
        self._owner = weakref.ref(owner)

    def __repr__(self) -> str:
        return f"<TokenCache {len(self._index)} entries, ttl={self.ttl}>"

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: bytes) -> CacheEntry | None:
        """The live entry for ``key``, without locking, counted as a hit; None on a miss."""
        entry = self._index.get(key)
        if entry is not None and self.clock() < entry.deadline:
            self.hits.bump()
            return entry
        return None

    def peek(self, key: bytes, now: float) -> CacheEntry | None:
        """The entry for ``key`` if it is live at ``now``, without locking and
        counting nothing: the guard's hit path (which counts a hit only once
        it has checked the deny-list too) and ``revoke``."""
        entry = self._index.get(key)
        return entry if entry is not None and now < entry.deadline else None

    def digests(self) -> list[bytes]:
        """The cached digests (never tokens), oldest first: for tests and tools."""
        return list(self._index)

    def entries(self) -> list[CacheEntry]:
        """The cached entries, oldest first: for tests and tools."""
        return list(self._index.values())

    def load(self, key: bytes, loader: Callable[[], TokenInfo]) -> TokenInfo:
        """Validate through ``loader`` once for all concurrent callers, and cache.

        Definitive refusals (``InvalidTokenError``) are cached for
        ``negative_ttl``; outages (``cacheable = False``) never are. Neither
        is cached if :meth:`evict` was called for ``key`` meanwhile.
        """
        with self._lock:
            entry = self._index.get(key)
            if entry is not None and self.clock() < entry.deadline:
                self.hits.bump()  # another thread stored it since our lock-free look
                return entry.info
            # An empty negative cache (no refusal lately) is not asked: a
            # TTLCache lookup reads its timer through a context manager, and
            # so do its len() and bool(); the plain Cache's len() counts the
            # entries stored, expired ones too, with no timer (~1.5 us a miss).
            negative = self._negative
            stored = _stored(negative) and self.negative_ttl > 0
            refused = negative.get(key) if stored else None
            if refused is not None:
                self.negative_hits.bump()
                raise refused[0](refused[1])
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                self.misses.bump()
                done = None
            else:
                done = flight.done
                if done is None:
                    done = flight.done = _Done()
        if done is not None:
            return self._wait(flight, done)
        return self._lead(key, flight, loader)

    def _lead(self, key: bytes, flight: _Flight, loader: Callable[[], TokenInfo]) -> TokenInfo:
        """Run the one validation of ``key``, hand it to the waiters, cache it."""
        try:
            flight.info = info = loader()
        except BaseException as exc:
            flight.error = exc
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                    self._remember_refusal(key, exc)
                # Under the lock: a waiter that found the flight made its latch
                # before we could take the lock; none can find it from now on.
                flight.finish()
            raise
        with self._lock:
            # Not ours any more: evict() ran while we validated, so this answer
            # may predate the change that caused it. Waiters still get it.
            if self._flights.get(key) is flight:
                del self._flights[key]
                self._put_locked(key, info, self.clock())
            flight.finish()
        return info

    def _remember_refusal(self, key: bytes, exc: BaseException) -> None:
        # Only definitive refusals: an outage must not outlive itself here.
        if isinstance(exc, InvalidTokenError) and exc.cacheable and self.negative_ttl > 0:
            self._negative[key] = (type(exc), exc.description)

    def _wait(self, flight: _Flight, done: _Done) -> TokenInfo:
        self.waits.bump()
        if not done.wait(self.wait_timeout):
            raise ValidatorUnavailableError("token validation timed out")
        if flight.error is not None:
            error = flight.error
            if isinstance(error, BearerGuardError):
                raise type(error)(error.description)
            # Not "from error": a backend's error may quote the token.
            raise ValidatorUnavailableError() from None
        assert flight.info is not None
        return flight.info

    def put(self, key: bytes, info: TokenInfo) -> None:
        """Cache ``info`` until ``min(now + ttl, expires_at, cache_until)``; skip if past."""
        with self._lock:
            self._put_locked(key, info, self.clock())

    def _put_locked(self, key: bytes, info: TokenInfo, now: float) -> None:
        deadline = now + self.ttl
        if info.expires_at is not None and info.expires_at < deadline:
            deadline = info.expires_at
        if info.cache_until is not None and info.cache_until < deadline:
            deadline = info.cache_until
        if deadline <= now:
            # Newer news says it has expired: an older entry must not outlive it.
            self._index.pop(key, None)
            return
        index, heap = self._index, self._deadlines
        while heap and heap[0][0] <= now:
            old_key = heapq.heappop(heap)[1]
            old = index.get(old_key)
            if old is not None and old.deadline <= now:
                del index[old_key]
        index.pop(key, None)  # a new entry is the youngest
        while len(index) >= self.maxsize:
            del index[next(iter(index))]
            self.evictions.bump()
        plain = info.expiry_check is None and info.confirmation is None and info.hooks is None
        entry = (CacheEntry if plain else _CheckedEntry)(info, deadline)
        index[key] = entry
        heapq.heappush(heap, (deadline, key))
        if len(heap) > 2 * len(index) + _HEAP_SLACK:
            self._deadlines = [(e.deadline, k) for k, e in index.items()]
            heapq.heapify(self._deadlines)

    def evict(self, key: bytes) -> bool:
        """Forget ``key`` (positive and negative) and disown a validation in
        flight for it; True if it was cached."""
        with self._lock:
            self._negative.pop(key, None)
            self._flights.pop(key, None)
            found = self._index.pop(key, None) is not None
        return found

    def clear(self) -> None:
        """Forget everything, including validations in flight."""
        with self._lock:
            self._index.clear()
            self._deadlines.clear()
            self._negative.clear()
            self._flights.clear()

    def stats(self) -> CacheStats:
        """Counters: hits, misses, negative hits, evictions, single-flight waits, size."""
        return {
            "hits": self.hits.value,
            "misses": self.misses.value,
            "negative_hits": self.negative_hits.value,
            "evictions": self.evictions.value,
            "single_flight_waits": self.waits.value,
            "size": len(self._index),
        }
