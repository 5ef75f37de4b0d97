"""Memory per cached token, for JWT and opaque tokens, two ways.

Both fill a fresh cache with ``n`` validations done the way the protector does
them on a miss (``validator.validate`` then ``cache.put``) and divide the
growth by ``n``:

* **tracemalloc**: Python allocations still alive after the fill, traced from
  just before it (exact, but only what Python allocates);
* **RSS**: the resident set before and after another fill of another cache
  (what the OS sees, including allocator slack), without tracemalloc running.

Each kind runs in a fresh interpreter (``python -m benchmarks.memory``): in the
benchmark process, memory freed by earlier groups would be reused by the fill
and hide it from RSS.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Context
from .harness import Skip

Fill = Callable[[Any, list[str]], None]


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak, which only grows
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class MemoryResult:
    kind: str
    entries: int
    traced_per_entry: float
    rss_per_entry: float
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def measure(
    kind: str, fill: Fill, new_cache: Callable[[], Any], tokens: list[list[str]]
) -> MemoryResult:
    """``tokens``: two disjoint lists of the same length, one per fill."""
    first, second = tokens
    fill(new_cache(), first[:10])  # warm lazy imports and statement caches
    keep = new_cache()
    gc.collect()
    before = rss_bytes()
    fill(keep, first)
    gc.collect()
    rss = (rss_bytes() - before) / len(first)
    traced_cache = new_cache()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        fill(traced_cache, second)
        gc.collect()
        traced = (tracemalloc.get_traced_memory()[0] - start) / len(second)
    finally:
        if not was_tracing:
            tracemalloc.stop()
    assert len(keep) == len(first) and len(traced_cache) == len(second), "fill lost entries"
    return MemoryResult(kind, len(second), traced, rss)


def jwt_memory(n: int) -> MemoryResult:
    """Cached JWTs (EdDSA: the alg does not change what is cached, and it mints fast)."""
    from bearerguard import TokenCache
    from bearerguard.core.credentials import digest
    from bearerguard.validators.base import describe_token

    from .cases_jwt import bearerguard_jwt_protector
    from .tokens import ISSUER, Minter, jwks, new_key

    key = new_key("EdDSA")
    mint = Minter(key)
    tokens = [mint(n), mint(n)]
    note = "validated by JWTBearerTokenValidator"
    try:
        validator = bearerguard_jwt_protector([(ISSUER, jwks(key))]).validators[0]
        validate = validator.validate
    except Skip as skip:
        import jwt

        note = f"claims decoded by PyJWT, put directly ({skip.reason})"

        def validate(token: str) -> Any:
            return describe_token(jwt.decode(token, options={"verify_signature": False}))

    def fill(cache: Any, batch: list[str]) -> None:
        for token in batch:
            cache.put(digest(token), validate(token))

    result = measure("jwt", fill, lambda: TokenCache(ttl=3600, maxsize=n + 16), tokens)
    result.note = note
    return result


def opaque_memory(n: int, url: str, table: str) -> MemoryResult:
    """Cached rows of the run's SQLite token table (detached copies, as the cache keeps)."""
    from flask import Flask
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import select

    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.core.credentials import digest
    from bearerguard.sqla import create_bearer_token_validator

    from .cases_opaque import token_model

    db = SQLAlchemy()
    Token = token_model(db, table)
    app = Flask("bench-memory")
    app.config["SQLALCHEMY_DATABASE_URI"] = url
    db.init_app(app)
    with app.app_context():
        found = db.session.execute(select(Token.access_token).limit(2 * n)).scalars().all()
    if len(found) < 2 * n:
        raise RuntimeError(f"{len(found)} tokens in {table}, need {2 * n}")
    tokens = [list(found[:n]), list(found[n:])]
    protector = ResourceProtector(cache=TokenCache(ttl=3600))
    protector.register_token_validator(create_bearer_token_validator(db.session, Token)())
    validator = protector.validators[0]

    def fill(cache: Any, batch: list[str]) -> None:
        for token in batch:
            with app.app_context():  # a request's session, removed at teardown
                cache.put(digest(token), validator.validate(token))

    result = measure("opaque", fill, lambda: TokenCache(ttl=3600, maxsize=n + 16), tokens)
    result.note = "sqla rows (detached copies), SQLite"
    with app.app_context():
        db.engine.dispose()
    return result


def measure_all(ctx: Context) -> list[dict[str, Any]]:
    """Both kinds, each in a fresh interpreter, so RSS starts from a clean heap."""
    from .cases_opaque import open_db

    n = ctx.profile.memory_entries
    db = open_db(ctx, "sqlite")
    jobs = [["jwt", str(n)], ["opaque", str(n), db.url, db.table]]
    root = Path(__file__).resolve().parent.parent
    results = []
    for args in jobs:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", *args],
            cwd=root, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"memory {args[0]} failed: {out.stderr[-2000:]}")
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def main(argv: list[str]) -> int:
    kind, n = argv[0], int(argv[1])
    result = jwt_memory(n) if kind == "jwt" else opaque_memory(n, argv[2], argv[3])
    print(json.dumps(result.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
