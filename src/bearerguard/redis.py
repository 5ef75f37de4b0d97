"""Revocations shared by every process and machine, through Redis.

Needs the ``redis`` extra (redis-py 5 or later, Redis 6.2 or later). Example::

    from bearerguard.redis import RedisRevocationStore

    require_oauth = ResourceProtector(
        revocations=RedisRevocationStore("redis://127.0.0.1:6379/0")
    )

Each process keeps the whole deny-list in memory, as the in-process
:class:`~bearerguard.revocation.RevocationStore` does, so a request never
waits on the network. Redis holds the shared copy and carries the news:

* a revocation is written to a sorted set per kind (``{prefix}token``,
  ``{prefix}jti``, ``{prefix}sub``, ``{prefix}client``), scored by its expiry
  (a token's ``until``) or its time (a rule's ``before``), and published on
  ``channel``, in one Lua call: a revocation is never stored without its
  message, nor the other way round;
* a background thread in each process applies the others' messages at once,
  evicting the token from the local cache;
* a process that starts, or reconnects, loads the current deny-list after its
  subscription is confirmed, so nothing published meanwhile is missed, and
  writes its own whole list back (``ZADD GT`` makes that idempotent): Redis
  may have lost entries (a restart without persistence, a failover to an
  empty replica) that only the surviving processes still hold;
* a loss without a reconnect (``FLUSHALL`` while the subscription stays up)
  is seen by ``{prefix}epoch``, a mark set at each resync and checked every
  ``ping_interval``: gone or changed, the process resyncs. A write that put
  back anything missing broadcasts a reload, so a process that started
  after the loss, and loaded an empty list, learns what was restored.

Sorted sets rather than one key per entry: a process loads the whole list in
one round trip (no ``SCAN`` over the keyspace), and ``ZADD GT`` keeps the
stricter of two concurrent revocations. Each write trims the entries whose
tokens have expired, every load skips them, and each set's own TTL is pushed
out to its last entry's expiry (a set holding an entry kept for ever
persists), so an idle deny-list disappears with its tokens. Only SHA-256
digests of tokens are stored, never the tokens.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from ._log import logger, throttled
from .errors import ValidatorUnavailableError
from .revocation import RULE_KINDS, RevocationStore
from .validators.base import TokenInfo

__all__ = ["RedisIntrospectionCache", "RedisRevocationStore"]

# ZADD GT keeps the later expiry of each (score, member) pair in ARGV[5..];
# CH counts what was missing or older, which a restore needs to know. The
# trim and TTL keep the set no bigger and no longer-lived than its live
# entries; PUBLISH in the same call (unless ARGV[4] is empty) makes the write
# and the message one event. A want of -1 is an entry kept for ever (a token
# without expiry, a rule without max_token_lifetime): the set then persists;
# such an entry is never trimmed, so a set that persists always holds one.
_WRITE = """
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local changed = redis.call('ZADD', KEYS[1], 'GT', 'CH', unpack(ARGV, 5))
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
local want = tonumber(ARGV[2])
if want < 0 then
    redis.call('PERSIST', KEYS[1])
else
    local ttl = redis.call('PTTL', KEYS[1])
    if (fresh and ttl == -1) or (ttl >= 0 and ttl < want) then
        redis.call('PEXPIRE', KEYS[1], want)
    end
end
if ARGV[4] ~= '' then
    redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return changed
"""
#: Pairs per restore call: Lua's unpack() is limited to a few thousand values.
RESTORE_CHUNK = 1000

# One page of a set, as one JSON string: redis-py's parser takes ~0.8 s for the
# 200k items of 100k entries, json.loads ~30 ms. Pages (PAGE entries, highest
# score first) keep Redis free for others between calls. Paging by rank is safe
# here: trims only remove the lowest scores (the tail), inserts only repeat an
# entry, and a score raised past the cursor is also published to us.
_LOAD = """
local rows = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', ARGV[1], 'WITHSCORES',
                        'LIMIT', ARGV[2], ARGV[3])
return #rows > 0 and cjson.encode(rows) or '[]'
"""
PAGE = 20_000

_KINDS = ("token", *RULE_KINDS, "evict")
#: The kinds whose time is an expiry, which may be "never" (inf).
_UNTIL_KINDS = ("token", "jti")
_INF = float("inf")


class RedisRevocationStore(RevocationStore):
    """A deny-list shared through Redis; the local copy answers every request.

    Outage policy: while Redis is unreachable, each process keeps serving
    from its local deny-list (availability first). A revocation made during
    the outage is enforced at once by the process that made it, queued, and
    written to Redis on reconnection; a process reconnecting reloads the full
    deny-list and replays the cache evictions published while it was away, so
    no revocation is lost, only delayed by the outage in the other processes.
    With ``max_outage`` set, a process that has been cut off for longer
    answers every request with 503 instead (consistency first). Reconnection
    backs off exponentially, with jitter, from ``backoff[0]`` to
    ``backoff[1]`` seconds; the failure is logged once per interval.

    Fork-safe: nothing starts in the constructor. The subscriber thread starts
    on first use in each process (``os.getpid()`` is checked), so an app
    created in a gunicorn ``--preload`` master works in every worker. The
    first request in a process waits up to ``startup_timeout`` for the
    deny-list to load.

    :param url_or_client: a ``redis://`` URL, or a redis-py ``Redis`` client
        (then its own timeouts and retries apply, and :meth:`close` leaves it
        open).
    :param channel: the pub/sub channel; share it between the processes that
        share a deny-list.
    :param key_prefix: the prefix of the sorted sets.
    :param max_token_lifetime: see
        :class:`~bearerguard.revocation.RevocationStore`, as are
        ``max_unverified`` and ``unverified_lifetime``; give every process
        that shares the deny-list the same value.
    :param max_outage: seconds without a word from Redis (a message or a
        PING answer) after which requests get 503, whether the link failed
        or went silent (a partition that drops packets); a live link is
        pinged every ``max_outage / 4`` seconds to prove it. None (the
        default) serves from local state however long it lasts.
    :param ping_interval: how long a PING may go unanswered before the link
        is dropped and reopened; also how often a loss of the list in Redis
        is looked for.
    :param eviction_horizon: how long cache evictions stay replayable; make it
        longer than the cache ``ttl``.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        channel: str = "bearerguard:revocations",
        key_prefix: str = "bearerguard:",
        max_token_lifetime: float | None = None,
        max_unverified: int = 10_000,
        unverified_lifetime: float | None = None,
        max_outage: float | None = None,
        backoff: tuple[float, float] = (0.05, 5.0),
        startup_timeout: float = 2.0,
        socket_timeout: float = 1.0,
        ping_interval: float = 5.0,
        eviction_horizon: float = 600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            max_token_lifetime=max_token_lifetime,
            max_unverified=max_unverified,
            unverified_lifetime=unverified_lifetime,
            clock=clock,
        )
        self._owns_client = isinstance(url_or_client, str)
        self.client: Any = (
            _client_from_url(url_or_client, socket_timeout)
            if isinstance(url_or_client, str)
            else url_or_client
        )
        self.channel = channel
        self.keys = {kind: f"{key_prefix}{kind}" for kind in _KINDS}
        self._epoch_key = f"{key_prefix}epoch"
        self.max_outage = max_outage
        self.backoff = backoff
        self.startup_timeout = startup_timeout
        self.ping_interval = ping_interval
        self.eviction_horizon = eviction_horizon
        self._write = self.client.register_script(_WRITE)
        self._load = self.client.register_script(_LOAD)
        self._counters = {"messages": 0, "reloads": 0, "outages": 0, "written": 0, "restored": 0}
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        """What belongs to one process: its thread, locks, and identity."""
        self._pid = 0
        self._origin = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._healthy = False
        self._epoch: Any = None  # the mark of the Redis copy we last synced with
        self._delay = self.backoff[0]
        self._pending: dict[tuple[str, str], float] = getattr(self, "_pending", {})
        self._down_since: float | None = None
        # The hot path's one check. -inf: not started in this process (again
        # after a fork); inf: serve (no max_outage); else max_outage after the
        # last word from Redis, moved on by the subscriber as words arrive.
        self._refuse_after = -_INF
        self._last_alive: float | None = getattr(self, "_last_alive", None)

    def _after_fork(self) -> None:
        super()._after_fork()
        # The parent's thread did not survive the fork and its pub/sub socket
        # is the parent's; redis-py's pool replaces its connections itself.
        self._reset_process_state()

    # -- the hot path ------------------------------------------------------------

    def is_revoked(self, key: bytes, info: TokenInfo, now: float) -> bool:
        if now >= self._refuse_after:
            self._start()
            if now >= self._refuse_after:
                raise ValidatorUnavailableError("revocation list unavailable")
        # RevocationStore.is_revoked, inlined: a call is a quarter of its cost.
        until = self.tokens.get(info.revocation_key or key)
        if until is not None and now < until:
            return True
        return self.has_rules and self._rule_matches(info, now)

    # -- starting, in the process that uses it -----------------------------------

    def start(self) -> None:
        """Subscribe and load the deny-list now (otherwise on first use)."""
        self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            if self._pid:  # forked without at-fork hooks: start afresh
                self._reset_process_state()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="bearerguard-redis", daemon=True)
            self._thread.start()
            # Other first requests wait on the lock: none is answered before
            # the deny-list is loaded or the first attempt has failed.
            if not self._synced.wait(self.startup_timeout):
                throttled(
                    f"redis-start:{self.channel}",
                    "Redis deny-list not loaded after %.1fs; serving from local state",
                    self.startup_timeout,
                )
            with self._state_lock:
                if self._down_since is None and not self._healthy:
                    self._down_since = self.clock()
                self._update_gate()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # whatever breaks, the thread must live on
                self._went_down(exc)
            self._synced.set()  # the first attempt is over, for better or worse
            delay, self._delay = self._delay, min(self._delay * 2, self.backoff[1])
            self._stop.wait(delay * random.uniform(0.5, 1.0))

    def _listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            synced, awaiting = False, False
            pinged = checked = time.monotonic()
            beat = self._beat()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=min(0.25, beat))
                kind = message["type"] if message is not None else None
                if kind == "subscribe":  # the first, or redis-py re-subscribed
                    self._resync()
                    synced = True
                elif kind == "message":
                    self._on_message(message["data"])
                elif kind == "pong":
                    awaiting = False
                    self._alive()
                if synced and self._pending:
                    # A request's write failed while we stayed subscribed.
                    self._flush()
                    self._mark_healthy()
                now = time.monotonic()
                if awaiting and now - pinged >= self.ping_interval:
                    raise ConnectionError("no answer to PING")  # half-open: reads never fail
                if not awaiting and now - pinged >= beat:
                    pubsub.ping()
                    pinged, awaiting = now, True
                if synced and now - checked >= self.ping_interval:
                    checked = now
                    if self._lost():
                        self._resync()
        finally:
            pubsub.close()

    def _beat(self) -> float:
        """Seconds between PINGs: ``ping_interval``, or often enough under
        ``max_outage`` that a live but idle link keeps the gate open."""
        if self.max_outage is None:
            return self.ping_interval
        return max(0.01, min(self.ping_interval, self.max_outage / 4))

    def _alive(self) -> None:
        """Redis answered: the outage clock restarts from now (subscriber thread).

        A silent partition (packets dropped, no RST) raises nothing for
        seconds; counting from the last answer rather than from a detected
        failure is what bounds it by ``max_outage``. One float store: the hot
        path's gate moves without a lock.
        """
        now = self._last_alive = self.clock()
        if self.max_outage is not None:
            self._refuse_after = now + self.max_outage

    # -- keeping in step -----------------------------------------------------------

    def _resync(self) -> None:
        """After (re)subscribing, or a loss: push our queue, load everything,
        replay evictions, and write our whole list back."""
        self._flush()
        # Marked before the restore: a loss after this takes the mark too.
        self._claim_epoch()
        self._reload()
        self._restore()
        self._alive()
        self._mark_healthy()
        self._flush()  # revocations queued while we reloaded
        self._delay = self.backoff[0]
        self._synced.set()

    def _claim_epoch(self) -> None:
        """Mark the Redis copy this process holds (if none is marked) and remember it."""
        self.client.set(self._epoch_key, secrets.token_hex(8), nx=True)
        self._epoch = self.client.get(self._epoch_key)

    def _lost(self) -> bool:
        """True when Redis lost its copy (or another process found it lost) since our sync."""
        return bool(self.client.get(self._epoch_key) != self._epoch)

    def _restore(self) -> None:
        """Write every live local entry back; if Redis lacked any, tell everyone to reload."""
        with self._lock:
            tables: dict[str, list[tuple[str, float]]] = {
                "token": [(key.hex(), until) for key, until in self.tokens.items()],
                "jti": list(self.jtis.items()),
                "sub": list(self.subjects.items()),
                "client": list(self.clients.items()),
            }
        restored = 0
        for kind, pairs in tables.items():
            for start in range(0, len(pairs), RESTORE_CHUNK):
                restored += max(0, self._write_pairs(kind, pairs[start : start + RESTORE_CHUNK]))
        if restored:
            with self._state_lock:
                self._counters["restored"] += restored
            logger.warning("Redis had lost %d deny-list entries; written back", restored)
            message = {"o": self._origin, "k": "reload", "v": "", "w": self.clock()}
            self.client.publish(self.channel, json.dumps(message, separators=(",", ":")))

    def _mark_healthy(self) -> None:
        with self._state_lock:
            self._healthy = True
            self._down_since = None
            self._update_gate()

    def _update_gate(self) -> None:
        """Set the hot path's deadline (state lock held): ``max_outage`` after
        the last answer from Redis, or after the first attempt if none came."""
        if self.max_outage is None:
            self._refuse_after = _INF
        else:
            since = self._last_alive or self._down_since or self.clock()
            self._refuse_after = since + self.max_outage

    def _reload(self) -> None:
        now = self.clock()
        since = self._last_alive
        horizon = now - self.rule_span
        rules = [
            (kind, member, when)
            for kind, low in (("jti", now), ("sub", horizon), ("client", horizon))
            for member, when in self._read(kind, low)
        ]
        added = self.apply_many(
            _digests(self._read("token", now)),
            rules,
            # The first load in a process has nothing to evict: a cached
            # token is checked against the deny-list on every hit anyway.
            notify=since is not None,
        )
        # Evictions we may have missed while away; a minute of slack for skew.
        evicted = [] if since is None else _digests(self._read("evict", since - 60.0))
        for key, _ in evicted:
            self.notify(key)
        self._bump("reloads")
        logger.debug("Redis deny-list loaded: %d new, %d evictions replayed", added, len(evicted))

    def _read(self, kind: str, low: float) -> list[tuple[str, float]]:
        """The live entries of one set: scores above ``low``, page by page."""
        rows: list[tuple[str, float]] = []
        while True:
            page = _pairs(self._load(keys=[self.keys[kind]], args=[f"({low!r}", len(rows), PAGE]))
            rows += page
            if len(page) < PAGE:
                return rows

    def _on_message(self, data: Any) -> None:
        reload = False
        try:
            message = json.loads(data)
            kind, value, when = message["k"], message["v"], float(message["w"])
            if not math.isfinite(when) and not (when == _INF and kind in _UNTIL_KINDS):
                raise ValueError("not a time")  # only an expiry may be "never"
            if message.get("o") == self._origin:
                return  # ours: applied when we made it
            if kind == "reload":
                reload = True
            elif kind == "token" or kind == "evict":
                key = _digest(value)
                if key is None:
                    raise ValueError("not a token digest")
                if kind == "token":
                    self.apply_token(key, when)
                else:
                    self.notify(key)
            elif kind in RULE_KINDS and isinstance(value, str):
                self.apply_rule(kind, value, when)
            else:
                raise ValueError("unknown kind")
        except Exception as exc:
            throttled(
                f"redis-message:{self.channel}",
                "ignoring a malformed revocation message on %s (%s)",
                self.channel,
                type(exc).__name__,
            )
            return
        self._bump("messages")
        self._alive()
        if reload:  # out of the try: a failure here is Redis's, not the message's
            self._reload()

    def _went_down(self, exc: BaseException) -> None:
        with self._state_lock:
            was_healthy, self._healthy = self._healthy, False
            if self._down_since is None:
                self._down_since = self.clock()
            self._update_gate()  # only ever after _start: the gate opens or closes
        if was_healthy:
            self._bump("outages")
        throttled(
            f"redis:{self.channel}",
            "Redis unreachable (%s); serving revocations from local state, reconnecting",
            type(exc).__name__,
        )

    # -- publishing ----------------------------------------------------------------

    def publish(self, kind: str, value: str, when: float) -> None:
        """Write the entry to Redis and broadcast it; queue it if Redis is down."""
        if self._pid != os.getpid():
            self._start()
        if kind == "evict":
            when = self.clock()
        with self._state_lock:
            if not self._healthy:
                self._queue(kind, value, when)
                return
        try:
            self._send(kind, value, when)
        except Exception as exc:
            with self._state_lock:
                self._queue(kind, value, when)
            self._went_down(exc)

    def _queue(self, kind: str, value: str, when: float) -> None:
        # Keyed by entry: a long outage queues each revocation once.
        slot = (kind, value)
        self._pending[slot] = max(when, self._pending.get(slot, when))

    def _flush(self) -> None:
        with self._state_lock:
            pending, self._pending = self._pending, {}
        try:
            while pending:
                (kind, value), when = next(iter(pending.items()))
                self._send(kind, value, when)
                del pending[(kind, value)]
        finally:
            if pending:  # put back what was not sent; the caller reconnects
                with self._state_lock:
                    for (kind, value), when in pending.items():
                        self._queue(kind, value, when)

    def _send(self, kind: str, value: str, when: float) -> None:
        # "inf" as a string: JSON has no infinity (Python's json would write
        # Infinity, which other JSON readers refuse).
        message = json.dumps(
            {"o": self._origin, "k": kind, "v": value, "w": when if when < _INF else "inf"},
            separators=(",", ":"),
        )
        if self._write_pairs(kind, [(value, when)], message) >= 0:
            self._bump("written")

    def _write_pairs(self, kind: str, pairs: list[tuple[str, float]], message: str = "") -> int:
        """ZADD GT the live ``(member, time)`` pairs to one set, trim it, push out its
        TTL, and publish ``message``; how many were missing or older (-1: none live)."""
        now = self.clock()
        if kind == "evict":
            span = self.eviction_horizon
        elif kind in ("sub", "client"):
            span = self.rule_span  # a rule matters this long after its time
        else:
            span = 0.0  # a token's or jti's time is its expiry
        live = [(member, when) for member, when in pairs if when + span > now]
        if not live:
            return -1  # nothing left to refuse
        expires = max(when for _, when in live) + span
        ttl_ms = -1 if expires == _INF else int((expires - now) * 1000) + 1000
        args: list[Any] = [repr(now - span), ttl_ms, self.channel, message]
        for member, when in live:
            args += [repr(when), member]
        return int(self._write(keys=[self.keys[kind]], args=args))

    # -- the rest --------------------------------------------------------------------

    def _bump(self, name: str) -> None:
        with self._state_lock:
            self._counters[name] += 1

    def stats(self) -> dict[str, Any]:
        """The local deny-list's sizes plus the link: connected, queued, outages."""
        counters = super().stats()
        with self._state_lock:
            counters.update(self._counters)
        counters["connected"] = self._healthy
        counters["pending"] = len(self._pending)
        return counters

    def close(self) -> None:
        """Stop the subscriber; close the client if this store made it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(2.0)
        if self._owns_client:
            self.client.close()


class RedisIntrospectionCache:
    """Introspection answers shared by every process, in Redis.

    Example::

        shared = RedisIntrospectionCache("redis://127.0.0.1:6379/0")
        IntrospectionTokenValidator(
            endpoint, client_id, secret, audience=api, shared_cache=shared
        )

    N workers then make one introspection call per token (per expiry of its
    entry) instead of N. The validator signs what it stores, expiry included
    (see its ``shared_cache``): an entry kept past its TTL, by ``PERSIST`` or
    otherwise, is ignored. Keys are SHA-256 digests of tokens. Redis failing
    is a miss: the validator asks the authorization server itself, and the
    failure is logged once per interval.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        key_prefix: str = "bearerguard:introspection:",
        socket_timeout: float = 0.5,
    ) -> None:
        self._owns_client = isinstance(url_or_client, str)
        self.client: Any = (
            _client_from_url(url_or_client, socket_timeout)
            if isinstance(url_or_client, str)
            else url_or_client
        )
        self.key_prefix = key_prefix

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(self.key_prefix + key)
        except Exception as exc:
            self._failed(exc)
            return None
        return value.encode() if isinstance(value, str) else value

    def put(self, key: str, value: bytes, ttl: float) -> None:
        try:
            self.client.set(self.key_prefix + key, value, px=max(1, int(ttl * 1000)))
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        throttled(
            f"redis-introspection:{self.key_prefix}",
            "shared introspection cache unavailable (%s); asking the server directly",
            type(exc).__name__,
        )

    def close(self) -> None:
        if self._owns_client:
            self.client.close()


def _client_from_url(url: str, socket_timeout: float) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # redis-py's default retries ten times with backoff, which would hold a
    # revoking request for seconds when Redis is down; one immediate retry
    # covers a pooled connection the server closed.
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1),
        client_name="bearerguard",
    )


def _pairs(blob: Any) -> list[tuple[str, float]]:
    """``[member, score, ...]`` (a JSON array from ``_LOAD``) as pairs."""
    rows = json.loads(blob)
    return list(zip(rows[::2], map(float, rows[1::2]), strict=True))


def _digests(pairs: list[tuple[str, float]]) -> list[tuple[bytes, float]]:
    """The pairs whose member is a token digest, decoded; others skipped."""
    found = []
    for member, score in pairs:
        try:
            key = bytes.fromhex(member)
        except (ValueError, TypeError):
            continue
        if len(key) == 32:
            found.append((key, score))
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _digest(value: Any) -> bytes | None:
    """The token digest in a member or message, or None if it is not one."""
    try:
        key = bytes.fromhex(_text(value))
    except (ValueError, UnicodeDecodeError):
        return None
    return key if len(key) == 32 else None
