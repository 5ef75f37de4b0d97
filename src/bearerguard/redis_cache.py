"""Introspection answers shared by every worker and machine, through Redis.

Needs the ``redis`` extra. Also importable from ``bearerguard.redis``.
"""

from __future__ import annotations

from typing import Any

from ._log import throttled
from ._redis_wire import client_of

__all__ = ["RedisIntrospectionCache"]


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
        self.client: Any
        self.client, self._owns_client = client_of(url_or_client, socket_timeout)
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
