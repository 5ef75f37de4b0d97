"""Revocations shared by every process and machine, through Redis.

Needs the ``redis`` extra (redis-py 5 or later, Redis 6.2 or later). Example::

    from bearerguard.redis import RedisRevocationStore

    require_oauth = ResourceProtector(
        revocations=RedisRevocationStore("redis://127.0.0.1:6379/0")
    )

which is, spelled out, an in-process store with a broadcast::

    RevocationStore(broadcast=RedisBroadcast("redis://127.0.0.1:6379/0"))

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

What is kept in Redis, and why sorted sets: :mod:`bearerguard._redis_wire`.
Only SHA-256 digests of tokens are stored, never the tokens.
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from ._log import throttled
from ._outage import OutageGate
from ._redis_wire import RedisDenyList, client_of
from .redis_cache import RedisIntrospectionCache
from .redis_replay import RedisReplayStore
from .revocation import RevocationStore

__all__ = ["RedisBroadcast", "RedisIntrospectionCache", "RedisReplayStore", "RedisRevocationStore"]


class RedisBroadcast:
    """The link to Redis of one :class:`~bearerguard.revocation.RevocationStore`.

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
    deny-list to load. The store's clock is the broadcast's.

    :param url_or_client: a ``redis://`` URL, or a redis-py ``Redis`` client
        (then its own timeouts and retries apply, and :meth:`close` leaves it
        open).
    :param channel: the pub/sub channel; share it between the processes that
        share a deny-list.
    :param key_prefix: the prefix of the sorted sets.
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

    #: The store served, and its gate, set by :meth:`attach`.
    store: RevocationStore
    gate: OutageGate

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        channel: str = "bearerguard:revocations",
        key_prefix: str = "bearerguard:",
        max_outage: float | None = None,
        backoff: tuple[float, float] = (0.05, 5.0),
        startup_timeout: float = 2.0,
        socket_timeout: float = 1.0,
        ping_interval: float = 5.0,
        eviction_horizon: float = 600.0,
    ) -> None:
        self.client: Any
        self.client, self._owns_client = client_of(url_or_client, socket_timeout)
        self.channel = channel
        self.shared = RedisDenyList(self.client, channel, key_prefix, eviction_horizon)
        self.max_outage = max_outage
        self.backoff = backoff
        self.startup_timeout = startup_timeout
        self.ping_interval = ping_interval
        self.clock: Callable[[], float] = time.time  # the store's, once attached
        self._counters = {"messages": 0, "reloads": 0, "outages": 0, "written": 0, "restored": 0}
        self._reset_process_state()

    def attach(self, store: RevocationStore) -> None:
        """Serve ``store``: its dicts are the local copy, its clock the time."""
        if getattr(self, "store", store) is not store:
            raise ValueError("a RedisBroadcast serves one RevocationStore")
        self.store = store
        self.clock = self.shared.clock = store.clock
        self.gate = OutageGate(store, self.max_outage)  # shut: not started here

    def _reset_process_state(self) -> None:
        """What belongs to one process: its thread, locks, and identity."""
        self._pid = 0
        self._origin = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread: threading.Thread | None = None
        if hasattr(self, "gate"):
            self.gate.reset()
        self._epoch: Any = None  # the mark of the Redis copy we last synced with
        self._delay = self.backoff[0]
        self._pending: dict[tuple[str, str], float] = getattr(self, "_pending", {})

    def after_fork(self) -> None:
        # The parent's thread did not survive the fork and its pub/sub socket
        # is the parent's; redis-py's pool replaces its connections itself.
        self._reset_process_state()

    # -- starting, in the process that uses it -----------------------------------

    def start(self) -> None:
        """Subscribe and load the deny-list now (otherwise on first use)."""
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
            self.gate.started()

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
                    self.gate.alive()
                if synced and self._pending:
                    # A request's write failed while we stayed subscribed.
                    self._flush()
                    self.gate.up()
                now = time.monotonic()
                if awaiting and now - pinged >= self.ping_interval:
                    raise ConnectionError("no answer to PING")  # half-open: reads never fail
                if not awaiting and now - pinged >= beat:
                    pubsub.ping()
                    pinged, awaiting = now, True
                if synced and now - checked >= self.ping_interval:
                    checked = now
                    if self.shared.epoch() != self._epoch:
                        self._resync()  # Redis lost its copy, or another process found it lost
        finally:
            pubsub.close()

    def _beat(self) -> float:
        """Seconds between PINGs: ``ping_interval``, or often enough under
        ``max_outage`` that a live but idle link keeps the gate open."""
        if self.max_outage is None:
            return self.ping_interval
        return max(0.01, min(self.ping_interval, self.max_outage / 4))

    def _went_down(self, exc: BaseException) -> None:
        if self.gate.down():
            self._bump("outages")
        throttled(
            f"redis:{self.channel}",
            "Redis unreachable (%s); serving revocations from local state, reconnecting",
            type(exc).__name__,
        )

    # -- keeping in step -----------------------------------------------------------

    def _resync(self) -> None:
        """After (re)subscribing, or a loss: push our queue, load everything,
        replay evictions, and write our whole list back."""
        self._flush()
        # Marked before the restore: a loss after this takes the mark too.
        self._epoch = self.shared.claim_epoch()
        self._reload()
        restored = self.shared.restore(self.store, self._origin)
        if restored:
            with self._state_lock:
                self._counters["restored"] += restored
        self.gate.alive()
        self.gate.up()
        self._flush()  # revocations queued while we reloaded
        self._delay = self.backoff[0]
        self._synced.set()

    def _reload(self) -> None:
        self.shared.load(self.store, since=self.gate.last_alive)
        self._bump("reloads")

    def _on_message(self, data: Any) -> None:
        try:
            kind = self.shared.apply(self.store, data, self._origin)
        except Exception as exc:
            throttled(
                f"redis-message:{self.channel}",
                "ignoring a malformed revocation message on %s (%s)",
                self.channel,
                type(exc).__name__,
            )
            return
        if kind is None:
            return  # ours
        self._bump("messages")
        self.gate.alive()
        if kind == "reload":  # out of the try: a failure here is Redis's, not the message's
            self._reload()

    # -- publishing ----------------------------------------------------------------

    def publish(self, kind: str, value: str, when: float) -> None:
        """Write the entry to Redis and broadcast it; queue it if Redis is down."""
        if self._pid != os.getpid():
            self.start()
        if kind == "evict":
            when = self.clock()
        if not self.gate.healthy:
            # Racing a reconnection is harmless: the subscriber flushes what
            # is queued on every turn once it is in step.
            with self._state_lock:
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
        if self.shared.send(self._origin, kind, value, when, self.store.rule_span) >= 0:
            self._bump("written")

    # -- the rest --------------------------------------------------------------------

    def _bump(self, name: str) -> None:
        with self._state_lock:
            self._counters[name] += 1

    def stats(self) -> dict[str, Any]:
        """The link: connected, queued, outages, messages, reloads, written, restored."""
        with self._state_lock:
            counters: dict[str, Any] = dict(self._counters)
        counters["connected"] = self.gate.healthy
        counters["pending"] = len(self._pending)
        return counters

    def close(self) -> None:
        """Stop the subscriber; close the client if this broadcast made it."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(2.0)
        if self._owns_client:
            self.client.close()


class RedisRevocationStore(RevocationStore):
    """A deny-list shared through Redis; the local copy answers every request.

    The documented shorthand for
    ``RevocationStore(broadcast=RedisBroadcast(url_or_client, ...))``: the
    options of :class:`RedisBroadcast` (``channel``, ``key_prefix``,
    ``max_outage``, ``backoff``, ``startup_timeout``, ``socket_timeout``,
    ``ping_interval``, ``eviction_horizon``) and of
    :class:`~bearerguard.revocation.RevocationStore` (``max_token_lifetime``,
    ``max_unverified``, ``unverified_lifetime``, ``clock``) in one call. Give
    every process that shares the deny-list the same ``max_token_lifetime``.
    """

    broadcast: RedisBroadcast

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
        broadcast = RedisBroadcast(
            url_or_client,
            channel=channel,
            key_prefix=key_prefix,
            max_outage=max_outage,
            backoff=backoff,
            startup_timeout=startup_timeout,
            socket_timeout=socket_timeout,
            ping_interval=ping_interval,
            eviction_horizon=eviction_horizon,
        )
        super().__init__(
            max_token_lifetime=max_token_lifetime,
            max_unverified=max_unverified,
            unverified_lifetime=unverified_lifetime,
            clock=clock,
            broadcast=broadcast,
        )
