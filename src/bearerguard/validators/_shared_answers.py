"""Introspection answers shared between processes: signed, and time-bound.

An answer is stored as ``MAC "." JSON``, the JSON holding the answer and the
absolute time it may be trusted until; the MAC (HMAC-SHA-256) covers both and
is keyed by a key derived from the client secret, this endpoint and client.
Whoever can write to the shared store but does not know the secret can then
neither forge an answer nor keep one alive past its time (``PERSIST``), and
an answer for another server or resource server does not verify.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any, Protocol

from .._log import throttled
from ..core.values import number_or_none

__all__ = ["MIN_SHARED_SECRET_BYTES", "AnswerCache", "SharedAnswers", "check_secret"]

#: The least secret that may key the shared answers' MAC (HMAC-SHA-256).
MIN_SHARED_SECRET_BYTES = 16


class AnswerCache(Protocol):
    """Where answers are shared between processes (``bearerguard.redis_cache``).

    ``get`` and ``put`` must not raise: a cache that cannot answer is a miss.
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes, ttl: float) -> None: ...


def check_secret(secret: str, *, shared: bool) -> None:
    """Refuse an empty secret, and a short one when it keys the shared MAC."""
    # Empty is always a mistake (an unset environment variable): no server
    # authenticates a client by it. A short one is the server's business
    # until it keys our MAC: then whoever guesses it can forge answers.
    if not secret:
        raise ValueError("client_secret is empty")
    if shared and len(secret.encode()) < MIN_SHARED_SECRET_BYTES:
        raise ValueError(
            f"a shared_cache needs a client_secret of at least {MIN_SHARED_SECRET_BYTES}"
            " bytes: it keys the MAC that keeps shared answers from being forged"
        )


class SharedAnswers:
    """Signed, time-bound answers in an :class:`AnswerCache`."""

    def __init__(
        self,
        cache: AnswerCache,
        secret: str,
        endpoint: str,
        client_id: str,
        clock: Callable[[], float],
    ) -> None:
        self.cache = cache
        self.endpoint = endpoint
        self.clock = clock
        # "v2": entries carry their expiry; older ones (without) never verify.
        label = f"bearerguard:v2:{endpoint} {client_id}".encode()
        self._key = hmac.digest(secret.encode(), label, "sha256")

    def _mac(self, key: str, body: bytes) -> bytes:
        return hmac.digest(self._key, key.encode() + b"." + body, "sha256").hex().encode()

    def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """A shared answer that verifies and has not expired, and its expiry."""
        value = self.cache.get(key)
        if value is None:
            return None
        mac, _, body = value.partition(b".")
        if not hmac.compare_digest(mac, self._mac(key, body)):
            throttled(
                f"introspection-shared:{self.endpoint}",
                "ignoring a shared introspection answer that does not verify",
            )
            return None
        entry = json.loads(body)  # ours: it verified
        if not isinstance(entry, dict):
            return None
        answer, until = entry.get("answer"), number_or_none(entry.get("until"))
        if not isinstance(answer, dict) or until is None:
            return None
        if self.clock() >= until:
            # The store kept it past its TTL: made persistent, or clocks apart.
            throttled(
                f"introspection-shared-late:{self.endpoint}",
                "ignoring a shared introspection answer past its expiry",
            )
            return None
        return answer, until

    def put(self, key: str, answer: dict[str, Any], ttl: float) -> float | None:
        """Share ``answer`` for ``ttl`` (at most until its ``exp``); the expiry
        put inside the MAC, or None when nothing was left to share."""
        now = self.clock()
        until = now + ttl
        exp = number_or_none(answer.get("exp")) if answer["active"] else None
        if exp is not None:
            until = min(until, exp)
        if until <= now:
            return None
        body = json.dumps({"until": until, "answer": answer}, separators=(",", ":")).encode()
        self.cache.put(key, self._mac(key, body) + b"." + body, until - now)
        return until
