"""DPoP proofs seen by every worker and machine, through Redis (RFC 9449 §11.1).

Needs the ``redis`` extra. Also importable from ``bearerguard.redis``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._log import throttled
from ._redis_wire import client_of
from .errors import ValidatorUnavailableError

__all__ = ["RedisReplayStore"]


class RedisReplayStore:
    """A :class:`~bearerguard.core.dpop.ReplayStore` shared in Redis.

    Example::

        proofs = ProofChecker(replay=RedisReplayStore("redis://127.0.0.1:6379/0"))
        require_oauth = ResourceProtector(dpop_proofs=proofs)

    Each proof's ``jti`` (scoped to its key's thumbprint) is claimed with one
    atomic ``SET key 1 NX PX ttl``: of any number of workers, exactly one
    sees it first. Redis failing fails closed, a 503, unless
    ``iat_window_only``: then the proof's ``iat`` window is the only guard
    against replay (the mode stateless servers use), and the failure is
    logged once per interval.
    """

    def __init__(
        self,
        url_or_client: str | Any,
        *,
        key_prefix: str = "bearerguard:dpop:",
        socket_timeout: float = 0.5,
        iat_window_only: bool = False,
    ) -> None:
        self.client: Any
        self.client, self._owns_client = client_of(url_or_client, socket_timeout)
        self.key_prefix = key_prefix
        self.iat_window_only = iat_window_only

    def first_use(self, key: str, ttl: float) -> bool:
        # Hashed: the jti is the client's text, of any length.
        name = self.key_prefix + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        try:
            return bool(self.client.set(name, b"1", nx=True, px=max(1, int(ttl * 1000))))
        except Exception as exc:
            throttled(
                f"redis-dpop:{self.key_prefix}",
                "DPoP replay store unavailable (%s); %s",
                type(exc).__name__,
                "checking the iat window only" if self.iat_window_only else "answering 503",
            )
            if self.iat_window_only:
                return True
            raise ValidatorUnavailableError("DPoP replay store unavailable") from None

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
