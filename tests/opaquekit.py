"""Opaque tokens for tests: one configurable dict validator, and minting.

The opaque counterpart of ``jwtkit.py``. Tests that need "a validator that
knows some tokens" use :class:`OpaqueValidator` instead of writing their own
``BearerTokenValidator`` subclass; it counts its lookups (the cache and
single-flight tests assert on that) and can be told to fail like a backend
that is down.

Example::

    validator = OpaqueValidator(clock=clock)
    token = validator.issue(scope="profile", sub="alice")
    validator.fault = ConnectionError("db down")  # an outage: 503
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from bearerguard.validators import BearerTokenValidator

__all__ = ["OpaqueValidator", "opaque_claims"]


def opaque_claims(now: float | None = None, **overrides: Any) -> dict[str, Any]:
    """A token's record: scope ``profile``, subject ``alice``, one hour left.

    An override of None removes that field (``exp=None``: a token that never expires).
    """
    now = time.time() if now is None else now
    base: dict[str, Any] = {"scope": "profile", "sub": "alice", "exp": now + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class OpaqueValidator(BearerTokenValidator):
    """Looks tokens up in ``tokens`` (token string -> record); counts lookups.

    :param tokens: the known tokens; more are added by :meth:`issue`.
    :param clock: the time :meth:`issue` stamps records with.
    :param delay: seconds each lookup takes (a slow backend, for single-flight tests).
    """

    def __init__(
        self,
        tokens: dict[str, dict[str, Any]] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        delay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tokens: dict[str, dict[str, Any]] = dict(tokens or {})
        self.clock = clock
        self.delay = delay
        #: Raised by every lookup while set: the backend is down.
        self.fault: BaseException | None = None
        self.calls = 0
        self._lock = threading.Lock()  # misses may run in worker threads (ASGI)

    def issue(self, token: str | None = None, **claims: Any) -> str:
        """Store a record (see :func:`opaque_claims`) and return its token string."""
        token = token or secrets.token_urlsafe(24)
        self.tokens[token] = opaque_claims(self.clock(), **claims)
        return token

    def authenticate_token(self, token_string: str) -> Any:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.fault is not None:
            raise self.fault
        return self.tokens.get(token_string)
