"""Growth curves: does a request cost more as the cache, the JWKS or the set
of trusted issuers grows? Each curve is a group measured against its own floor.
"""

from __future__ import annotations

import time
from typing import Any

from .apps import make_app
from .cases_jwt import authlib_jwt_app, bearerguard_jwt_protector
from .config import Context
from .harness import Case, Feed, Group, Skip
from .memory import rss_bytes
from .tokens import AUDIENCE, ISSUER, SCOPE, filler_jwks

SAMPLE = 2048  # cached tokens a hit case cycles through, spread over the cache


class NeverValidator:
    """Stands behind a pre-filled cache: any miss is a 401 the probe would catch."""

    @staticmethod
    def create() -> Any:
        from bearerguard.validators import BearerTokenValidator

        class _Never(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> Any:
                return None

        return _Never()


def claims_for(i: int, now: int) -> dict[str, Any]:
    """What a JWT validator caches: the claims of a typical access token."""
    return {
        "iss": ISSUER,
        "sub": f"user-{i}",
        "aud": AUDIENCE,
        "client_id": "bench-client",
        "iat": now,
        "exp": now + 7200,
        "jti": f"jti-{i:08d}",
        "scope": SCOPE,
    }


def fill_cache(cache: Any, size: int, prefix: str) -> list[str]:
    """Put ``size`` real TokenInfos into ``cache``; return a sample of their tokens."""
    from bearerguard.core.credentials import digest
    from bearerguard.validators.base import describe_token

    now = int(time.time())
    put = cache.put
    for i in range(size):
        put(digest(f"{prefix}-{i:08d}"), describe_token(claims_for(i, now)))
    step = max(1, size // SAMPLE)
    return [f"{prefix}-{i:08d}" for i in range(0, size, step)][:SAMPLE]


def cache_size_group(ctx: Context, floor: Case) -> Group:
    from bearerguard import ResourceProtector, TokenCache

    group = Group("cache-size", "cache hit vs number of cached tokens", floor)
    if max(ctx.profile.cache_sizes) < 1_000_000:
        group.notes.append(
            f"capped at {max(ctx.profile.cache_sizes):,} tokens by the {ctx.profile.name} profile;"
            " the default profile fills 1,000,000 (~25 s, ~1.4 GB RSS)"
        )
    for size in ctx.profile.cache_sizes:
        protector = ResourceProtector(cache=TokenCache(ttl=3600, maxsize=size + SAMPLE))
        protector.register_token_validator(NeverValidator.create())
        before, started = rss_bytes(), time.perf_counter()
        sample = fill_cache(protector.cache, size, f"grow{size}")
        seconds, grown = time.perf_counter() - started, rss_bytes() - before
        group.notes.append(
            f"{size:>9,} cached: filled in {seconds:.1f}s, RSS +{grown / 2**20:.0f} MiB"
            f" ({grown / size:.0f} B/entry)"
        )
        group.cases.append(
            Case(
                f"growth.cache-{_k(size)}.bg.hit",
                make_app(f"cache-{size}", protector("profile")),
                Feed(sample),
                target="hit",
            )
        )
    return group


def jwks_group(ctx: Context, floor: Case) -> Group:
    """RS256 cache misses with the signing key in the middle of a JWKS of n keys."""
    group = Group("jwks-keys", "cache miss vs keys in the JWKS (RS256)", floor)
    sizes = ctx.profile.jwks_sizes
    key = ctx.key("RS256")
    fillers = filler_jwks("RS256", max(sizes) - 1)
    for n in sizes:
        keys = fillers[: n - 1]
        keys.insert(len(keys) // 2, dict(key.jwk))
        jwks = {"keys": keys}
        reference = f"growth.jwks-{n}.authlib.jwks-dict"
        name = f"growth.jwks-{n}.bg.miss"
        try:
            protector = bearerguard_jwt_protector([(ISSUER, jwks)])
            group.cases.append(
                Case(
                    name,
                    make_app(name, protector("profile")),
                    Feed(mint=ctx.pool("RS256").reader()),
                    batch=ctx.profile.fixed(60),
                    authlib=reference,
                    target="miss_rs256",
                )
            )
        except Skip as skip:
            group.skip(name, skip)
        group.cases.append(
            Case(
                reference,
                authlib_jwt_app(reference, jwks),
                Feed(ctx.pool("RS256").reader()(16)),
                batch=ctx.profile.fixed(max(2, 40 // n)),
                target="authlib_jwks20" if n == 20 else None,
            )
        )
    return group


def issuers_group(ctx: Context, floor: Case) -> Group:
    """RS256 cache misses when 1 or 10 issuers are trusted (the token's is last)."""
    group = Group("issuers", "cache miss vs trusted issuers (RS256)", floor)
    counts = ctx.profile.issuer_counts
    fillers = filler_jwks("RS256", max(counts) - 1)
    signing = {"keys": [dict(ctx.key("RS256").jwk)]}
    for n in counts:
        name = f"growth.issuers-{n}.bg.miss"
        others = [(f"{ISSUER}/tenant-{i}", {"keys": [fillers[i]]}) for i in range(n - 1)]
        try:
            protector = bearerguard_jwt_protector([*others, (ISSUER, signing)])
        except Skip as skip:
            group.skip(name, skip)
            continue
        group.cases.append(
            Case(
                name,
                make_app(name, protector("profile")),
                Feed(mint=ctx.pool("RS256").reader()),
                batch=ctx.profile.fixed(60),
                target="miss_rs256",
            )
        )
    return group


def _k(count: int) -> str:
    if count >= 1_000_000:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count >= 1000 else str(count)
