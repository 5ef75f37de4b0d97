"""The physical limit of a load-run hit: the least a protected view can do.

``/hello/limit`` hashes the presented token (SHA-256) and finds its digest
among the load client's ``load-NNNN`` tokens, then answers as ``/hello``
does: the load run's counterpart of ``floor.digest-lookup``, so the
throughput and p99 targets are read beside what no protector can beat on
the same server, in the same round.
"""

from __future__ import annotations

import hashlib
import os

PATH = "/hello/limit"


def load_tokens() -> list[str]:
    """The ``load-NNNN`` tokens the load client sends (``BEARERGUARD_DEMO_TOKENS``)."""
    count = int(os.environ.get("BEARERGUARD_DEMO_TOKENS") or 1000)
    return [f"load-{i:04d}" for i in range(count)]


def load_digests() -> frozenset[bytes]:
    """The SHA-256 digests of :func:`load_tokens`."""
    return frozenset(hashlib.sha256(token.encode()).digest() for token in load_tokens())


def known(authorization: str | None, digests: frozenset[bytes]) -> bool:
    """True when ``authorization`` is ``Bearer <a load token>``."""
    if authorization is None or authorization[:7] != "Bearer ":
        return False
    return hashlib.sha256(authorization[7:].encode()).digest() in digests
