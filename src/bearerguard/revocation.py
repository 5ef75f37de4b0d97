"""The deny-list the protector checks on every request, cache hit or not.

Four kinds of entry, each kept only as long as it can matter:

* a token (by digest), until the token would have expired;
* a ``jti``, until the given expiry;
* a subject, or a client: every token of it issued up to a time, kept for
  ``max_token_lifetime`` after that time (no token issued before it can still
  be alive then). A token that states no issue time is refused (fail closed).

:class:`RevocationStore` keeps them in this process. A shared store (see
``bearerguard.redis``) subclasses it: the local dicts stay the hot-path copy,
and the subclass publishes each change and applies the others' changes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .validators.base import TokenInfo

__all__ = ["RevocationStore"]

EvictListener = Callable[[bytes], None]


class RevocationStore:
    """An in-process deny-list of tokens, ``jti``\\ s, subjects and clients.

    :param max_token_lifetime: the longest any token lives, in seconds; how long
        subject and client rules are kept, and how long a revoked token whose
        expiry is unknown stays refused.
    :param clock: wall-clock seconds.
    """

    def __init__(
        self, *, max_token_lifetime: float = 86400.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_token_lifetime = max_token_lifetime
        self.clock = clock
        self.tokens: dict[bytes, float] = {}
        self.jtis: dict[str, float] = {}
        self.subjects: dict[str, float] = {}
        self.clients: dict[str, float] = {}
        self.has_rules = False
        self._lock = threading.Lock()
        self._listeners: list[EvictListener] = []
        self._next_purge = 0.0
        self.applied = 0

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} tokens={len(self.tokens)} jtis={len(self.jtis)} "
            f"subjects={len(self.subjects)} clients={len(self.clients)}>"
        )

    # -- the hot path ----------------------------------------------------------

    def is_revoked(self, key: bytes, info: TokenInfo, now: float) -> bool:
        """True when the token, its ``jti``, subject or client is revoked."""
        until = self.tokens.get(key)
        if until is not None and now < until:
            return True
        if not self.has_rules:
            return False
        return self._rule_matches(info, now)

    def _rule_matches(self, info: TokenInfo, now: float) -> bool:
        if info.jti is not None:
            until = self.jtis.get(info.jti)
            if until is not None and now < until:
                return True
        for owner, rules in ((info.subject, self.subjects), (info.client_id, self.clients)):
            if owner is None:
                continue
            before = rules.get(owner)
            if before is None or now >= before + self.max_token_lifetime:
                continue
            # <=: a token issued in the very second of the revocation is
            # refused too (iat has one-second resolution); fail closed.
            if info.issued_at is None or info.issued_at <= before:
                return True
        return False

    # -- changes ---------------------------------------------------------------

    def add_listener(self, listener: EvictListener) -> None:
        """Call ``listener(digest)`` whenever a token must leave local caches."""
        self._listeners.append(listener)

    def revoke_token(self, key: bytes, until: float) -> None:
        """Refuse the token with digest ``key`` until ``until``."""
        self.apply_token(key, until)
        self.publish("token", key.hex(), until)

    def revoke_jti(self, jti: str, until: float) -> None:
        self.apply_rule("jti", jti, until)
        self.publish("jti", jti, until)

    def revoke_subject(self, subject: str, before: float) -> None:
        self.apply_rule("sub", subject, before)
        self.publish("sub", subject, before)

    def revoke_client(self, client_id: str, before: float) -> None:
        self.apply_rule("client", client_id, before)
        self.publish("client", client_id, before)

    def evict(self, key: bytes) -> None:
        """Drop ``key`` from every cache that listens (this process and, for a
        shared store, the others) without refusing it: for a token that changed."""
        self.notify(key)
        self.publish("evict", key.hex(), 0.0)

    def publish(self, kind: str, value: str, when: float) -> None:
        """Tell other processes; a no-op for the in-process store."""

    def apply_token(self, key: bytes, until: float) -> None:
        if until <= self.clock():
            return
        with self._lock:
            if self.tokens.get(key, 0.0) < until:
                self.tokens[key] = until
            self.applied += 1
        self._purge_maybe()
        self.notify(key)

    def apply_rule(self, kind: str, value: str, when: float) -> None:
        """Record a ``jti`` (until ``when``), ``sub`` or ``client`` (before ``when``)."""
        rules = {"jti": self.jtis, "sub": self.subjects, "client": self.clients}[kind]
        with self._lock:
            if rules.get(value, float("-inf")) < when:
                rules[value] = when
            self.has_rules = True
            self.applied += 1
        self._purge_maybe()

    def notify(self, key: bytes) -> None:
        for listener in self._listeners:
            listener(key)

    def _purge_maybe(self) -> None:
        now = self.clock()
        if now < self._next_purge:
            return
        self._next_purge = now + 60.0
        self.purge(now)

    def purge(self, now: float | None = None) -> None:
        """Drop entries that can no longer match any live token."""
        now = self.clock() if now is None else now
        horizon = now - self.max_token_lifetime
        with self._lock:
            self.tokens = {k: u for k, u in self.tokens.items() if u > now}
            self.jtis = {k: u for k, u in self.jtis.items() if u > now}
            self.subjects = {k: b for k, b in self.subjects.items() if b > horizon}
            self.clients = {k: b for k, b in self.clients.items() if b > horizon}
            self.has_rules = bool(self.jtis or self.subjects or self.clients)

    def close(self) -> None:
        """Release background resources (none here)."""
