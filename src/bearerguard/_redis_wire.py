"""What the shared deny-list looks like in Redis, and how it is written and read.

One sorted set per kind (``{prefix}token``, ``{prefix}jti``, ``{prefix}sub``,
``{prefix}client``, ``{prefix}evict``), each member scored by its time (see
:mod:`bearerguard.redis`), an epoch mark (``{prefix}epoch``), and JSON
messages on the channel: ``{"o": origin, "k": kind, "v": value, "w": time}``.
Only SHA-256 digests of tokens are stored or sent, never the tokens. Also the
redis-py client bearerguard makes from a URL.

Sorted sets rather than one key per entry: a process loads the whole list in
one round trip (no ``SCAN`` over the keyspace), and ``ZADD GT`` keeps the
stricter of two concurrent revocations. Each write trims the entries whose
tokens have expired, every load skips them, and each set's own TTL is pushed
out to its last entry's expiry (a set holding an entry kept for ever
persists), so an idle deny-list disappears with its tokens.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

from ._log import logger
from .revocation import RULE_KINDS, RevocationStore

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

KINDS = ("token", *RULE_KINDS, "evict")
#: The kinds whose time is an expiry, which may be "never" (inf).
_UNTIL_KINDS = ("token", "jti")
_INF = float("inf")


class RedisDenyList:
    """The shared copy: the sorted sets, the epoch mark and the channel.

    :param eviction_horizon: how long an eviction is kept for replay.
    """

    def __init__(
        self,
        client: Any,
        channel: str,
        key_prefix: str,
        eviction_horizon: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.channel = channel
        self.eviction_horizon = eviction_horizon
        self.clock = clock
        self.keys = {kind: f"{key_prefix}{kind}" for kind in KINDS}
        self._epoch_key = f"{key_prefix}epoch"
        self._write = client.register_script(_WRITE)
        self._load = client.register_script(_LOAD)

    def write(
        self, kind: str, pairs: list[tuple[str, float]], rule_span: float, message: str = ""
    ) -> int:
        """ZADD GT the live ``(member, time)`` pairs to one set, trim it, push out its
        TTL, and publish ``message``; how many were missing or older (-1: none live)."""
        now = self.clock()
        if kind == "evict":
            span = self.eviction_horizon
        elif kind in ("sub", "client"):
            span = rule_span  # a rule matters this long after its time
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

    def read(self, kind: str, low: float) -> list[tuple[str, float]]:
        """The entries of one set scored above ``low``, page by page."""
        rows: list[tuple[str, float]] = []
        while True:
            page = _pairs(self._load(keys=[self.keys[kind]], args=[f"({low!r}", len(rows), PAGE]))
            rows += page
            if len(page) < PAGE:
                return rows

    def read_digests(self, kind: str, low: float) -> list[tuple[bytes, float]]:
        """As :meth:`read`, members decoded as token digests (others skipped)."""
        found = []
        for member, score in self.read(kind, low):
            key = digest_of(member)
            if key is not None:
                found.append((key, score))
        return found

    def claim_epoch(self) -> Any:
        """Mark the copy in Redis (unless marked already); the mark now in force."""
        self.client.set(self._epoch_key, secrets.token_hex(8), nx=True)
        return self.client.get(self._epoch_key)

    def epoch(self) -> Any:
        """The mark now in force: None once Redis has lost the copy."""
        return self.client.get(self._epoch_key)

    def send(self, origin: str, kind: str, value: str, when: float, rule_span: float) -> int:
        """Write one entry and publish it, in one call; as :meth:`write`."""
        return self.write(kind, [(value, when)], rule_span, encode(origin, kind, value, when))

    def apply(self, store: RevocationStore, data: Any, origin: str) -> str | None:
        """Apply one message from the channel to ``store``: its kind, or None if
        it is ``origin``'s own. Raises (ValueError, KeyError...) if malformed."""
        message = json.loads(data)
        kind, value, when = message["k"], message["v"], float(message["w"])
        if not math.isfinite(when) and not (when == _INF and kind in _UNTIL_KINDS):
            raise ValueError("not a time")  # only an expiry may be "never"
        if message.get("o") == origin:
            return None  # ours: applied when we made it
        if kind in ("token", "evict"):
            key = digest_of(value)
            if key is None:
                raise ValueError("not a token digest")
            if kind == "token":
                store.apply_token(key, when)
            else:
                store.notify(key)
        elif kind in RULE_KINDS and isinstance(value, str):
            store.apply_rule(kind, value, when)
        elif kind != "reload":
            raise ValueError("unknown kind")
        return str(kind)

    def load(self, store: RevocationStore, since: float | None) -> None:
        """Merge the whole shared list into ``store``; with ``since`` (the last
        word heard from Redis), also replay the evictions published after it."""
        now = self.clock()
        horizon = now - store.rule_span
        rules = [
            (kind, member, when)
            for kind, low in (("jti", now), ("sub", horizon), ("client", horizon))
            for member, when in self.read(kind, low)
        ]
        added = store.apply_many(
            self.read_digests("token", now),
            rules,
            # The first load in a process has nothing to evict: a cached
            # token is checked against the deny-list on every hit anyway.
            notify=since is not None,
        )
        # Evictions we may have missed while away; a minute of slack for skew.
        evicted = [] if since is None else self.read_digests("evict", since - 60.0)
        for key, _ in evicted:
            store.notify(key)
        logger.debug("Redis deny-list loaded: %d new, %d evictions replayed", added, len(evicted))

    def restore(self, store: RevocationStore, origin: str) -> int:
        """Write every live entry of ``store`` back; if Redis lacked any, tell
        everyone to reload. How many were missing or older."""
        restored = 0
        for kind, pairs in store.snapshot().items():
            for start in range(0, len(pairs), RESTORE_CHUNK):
                restored += max(
                    0, self.write(kind, pairs[start : start + RESTORE_CHUNK], store.rule_span)
                )
        if restored:
            logger.warning("Redis had lost %d deny-list entries; written back", restored)
            self.client.publish(self.channel, encode(origin, "reload", "", self.clock()))
        return restored


def encode(origin: str, kind: str, value: str, when: float) -> str:
    # "inf" as a string: JSON has no infinity (Python's json would write
    # Infinity, which other JSON readers refuse).
    message = {"o": origin, "k": kind, "v": value, "w": when if when < _INF else "inf"}
    return json.dumps(message, separators=(",", ":"))


def digest_of(value: Any) -> bytes | None:
    """The token digest in a member or message, or None if it is not one."""
    try:
        key = bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))
    except (ValueError, UnicodeDecodeError):
        return None
    return key if len(key) == 32 else None


def _pairs(blob: Any) -> list[tuple[str, float]]:
    """``[member, score, ...]`` (a JSON array from ``_LOAD``) as pairs."""
    rows = json.loads(blob)
    return list(zip(rows[::2], map(float, rows[1::2]), strict=True))


def client_from_url(url: str, socket_timeout: float) -> Any:
    """A redis-py client for ``url`` that fails fast (the ``redis`` extra)."""
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


def client_of(url_or_client: str | Any, socket_timeout: float) -> tuple[Any, bool]:
    """A client for a ``redis://`` URL (made here, so owned: closed by its user's
    ``close()``), or the redis-py client given (the caller's, left open)."""
    if isinstance(url_or_client, str):
        return client_from_url(url_or_client, socket_timeout), True
    return url_or_client, False
