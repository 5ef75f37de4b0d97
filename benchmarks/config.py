"""Run profiles (default, quick, smoke) and the context the case builders share."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any

from .tokens import Minter, Pool, SigningKey, new_key

PG_URL = os.environ.get("BEARERGUARD_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# The tests' database when they run the smoke profile (each session its own db).
REDIS_URL = os.environ.get("BEARERGUARD_BENCH_REDIS") or os.environ.get(
    "BEARERGUARD_TEST_REDIS", "redis://127.0.0.1:6379/14"
)


@dataclass(frozen=True)
class Profile:
    name: str
    rounds: int = 15
    warmup: int = 2
    batch_ms: float = 25.0  # the time one case's batch takes, for calibrated batches
    batch_bounds: tuple[int, int] = (20, 2000)
    scale: float = 1.0  # multiplies the fixed batches of slow cases (misses, uncached calls)
    db_tokens: int = 10_000
    cache_sizes: tuple[int, ...] = (1_000, 100_000, 1_000_000)
    jwks_sizes: tuple[int, ...] = (1, 20, 100)
    issuer_counts: tuple[int, ...] = (1, 10)
    revoked: int = 100_000
    memory_entries: int = 5_000
    load_seconds: float = 3.0  # per phase and round
    load_rounds: int = 5
    load_requests: int = 200_000  # per phase and round: a safety cap, not the bound
    load_connections: int = 16
    load_warm_tokens: int = 1_000

    def fixed(self, batch: int) -> int:
        """A slow case's batch, scaled for this profile, at least 2."""
        return max(2, round(batch * self.scale))


PROFILES = {
    "default": Profile("default"),
    "quick": Profile(
        "quick",
        rounds=7,
        warmup=1,
        batch_ms=10.0,
        batch_bounds=(10, 500),
        scale=0.4,
        db_tokens=5_000,
        cache_sizes=(1_000, 100_000),
        jwks_sizes=(1, 20, 100),
        issuer_counts=(1, 10),
        revoked=100_000,
        memory_entries=2_000,
        load_seconds=2.0,
        load_rounds=2,
        load_requests=50_000,
    ),
    "smoke": Profile(
        "smoke",
        rounds=2,
        warmup=1,
        batch_ms=1.0,
        batch_bounds=(3, 5),
        scale=0.05,
        db_tokens=600,
        cache_sizes=(10, 100),
        jwks_sizes=(1, 3),
        issuer_counts=(1, 3),
        revoked=1_000,
        memory_entries=100,
        load_seconds=0.5,
        load_rounds=1,
        load_requests=300,
        load_connections=4,
        load_warm_tokens=50,
    ),
}


def profile(name: str, **overrides: Any) -> Profile:
    return replace(PROFILES[name], **{k: v for k, v in overrides.items() if v is not None})


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Context:
    """What builders share: the profile, a temp dir, cleanups, keys, notes."""

    profile: Profile
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    notes: list[str] = field(default_factory=list)
    shared: dict[str, Any] = field(default_factory=dict)  # built once, used by several groups
    _keys: dict[str, SigningKey] = field(default_factory=dict)
    _pools: dict[str, Pool] = field(default_factory=dict)
    _tmp: str | None = None

    @property
    def tmp(self) -> str:
        if self._tmp is None:
            self._tmp = self.stack.enter_context(tempfile.TemporaryDirectory(prefix="bg-bench-"))
        return self._tmp

    def key(self, alg: str) -> SigningKey:
        """The one signing key per algorithm that the main cases share."""
        if alg not in self._keys:
            self._keys[alg] = new_key(alg)
        return self._keys[alg]

    def pool(self, alg: str) -> Pool:
        """Never-seen tokens of ``key(alg)``, replayed to every cache-miss case."""
        if alg not in self._pools:
            self._pools[alg] = Pool(Minter(self.key(alg)))
        return self._pools[alg]

    def close(self) -> None:
        self.stack.close()
