"""Opaque tokens in a database (SQLite, and PostgreSQL when reachable), the
hand-written references, and the deny-list cases (in process and Redis)."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from .apps import Decorator, make_app, quiet_authlib, ttlcache_decorator
from .config import PG_URL, REDIS_URL, Context, reachable
from .harness import Case, Feed, Group, Skip

HIT_CYCLE = 16
#: The floor app with Flask-SQLAlchemy bound (its teardown runs on every
#: request, protected or not): what the database cases are judged against.
SQLA_FLOOR = "floor.sqla"


class TokenDB:
    """A Flask-SQLAlchemy database seeded with ``count`` valid opaque tokens.

    Each case gets its own Flask app bound to it (``db.init_app``), as each
    protected app would be. Tokens are handed out in disjoint slices, so a
    cache-miss case never sees a token another case has cached.
    """

    def __init__(self, ctx: Context, backend: str, url: str, count: int) -> None:
        from flask_sqlalchemy import SQLAlchemy
        from sqlalchemy import insert

        self.backend = backend
        self.url = url
        self.db = db = SQLAlchemy()
        self.apps: list[Flask] = []
        self.table = f"bench_tokens_{os.getpid()}"
        self.Token = token_model(db, self.table)
        prefix = f"opq-{backend}-{secrets.token_hex(4)}"
        self._tokens = [f"{prefix}-{i:06d}-{secrets.token_urlsafe(16)}" for i in range(count)]
        self._next = 0
        seed = self.app("seed")
        now = int(time.time())
        rows = [
            {
                "access_token": token,
                "scope": "profile email",
                "user_id": i % 1000,
                "client_id": "bench-client",
                "issued_at": now,
                "expires_in": 86400,
                "revoked": False,
            }
            for i, token in enumerate(self._tokens)
        ]
        with seed.app_context():
            db.create_all()
            ctx.stack.callback(self.close)
            db.session.execute(insert(self.Token), rows)
            db.session.commit()
            db.session.remove()

    def app(self, name: str, decorate: Decorator | None = None) -> Flask:
        app = make_app(f"{self.backend}-{name}", decorate)
        app.config["SQLALCHEMY_DATABASE_URI"] = self.url
        self.db.init_app(app)
        self.apps.append(app)
        return app

    def take(self, count: int) -> list[str]:
        """``count`` tokens no case has used yet."""
        if self._next + count > len(self._tokens):
            raise RuntimeError(f"{self.backend}: token pool exhausted; raise db_tokens")
        tokens = self._tokens[self._next : self._next + count]
        self._next += count
        return tokens

    def close(self) -> None:
        if self.apps:
            with self.apps[0].app_context():
                self.db.session.remove()
                if self.backend != "sqlite":
                    self.Token.__table__.drop(self.db.engine)
        for app in self.apps:
            with app.app_context():
                self.db.session.remove()
                for engine in self.db.engines.values():
                    engine.dispose()


def token_model(db: Any, table: str) -> Any:
    class Token(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = table
        id = db.Column(db.Integer, primary_key=True)
        access_token = db.Column(db.String(255), unique=True, nullable=False)
        scope = db.Column(db.Text, default="")
        user_id = db.Column(db.Integer)
        client_id = db.Column(db.String(48))
        issued_at = db.Column(db.Integer, nullable=False)
        expires_in = db.Column(db.Integer, nullable=False)
        revoked = db.Column(db.Boolean, default=False, nullable=False)

        def get_scope(self) -> str:
            return str(self.scope)

        def get_expires_at(self) -> int:
            return int(self.issued_at + self.expires_in)

        def is_expired(self) -> bool:
            return time.time() >= self.get_expires_at()

        def is_revoked(self) -> bool:
            return bool(self.revoked)

    return Token


def bearerguard_protector(db: TokenDB, **options: Any) -> Any:
    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.sqla import create_bearer_token_validator

    protector = ResourceProtector(cache=TokenCache(ttl=3600), **options)
    validator = create_bearer_token_validator(db.db.session, db.Token)
    protector.register_token_validator(validator())
    return protector


def authlib_protector(lookup: Callable[[str], Any]) -> Any:
    """Authlib's Flask protector with an RFC 6750 validator around ``lookup``."""
    from authlib.integrations.flask_oauth2 import ResourceProtector
    from authlib.oauth2.rfc6750 import BearerTokenValidator

    quiet_authlib()

    class LookupValidator(BearerTokenValidator):  # type: ignore[misc]
        def authenticate_token(self, token_string: str) -> Any:
            return lookup(token_string)

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(LookupValidator())
    return require_oauth


def open_db(ctx: Context, backend: str) -> TokenDB:
    """The seeded database of ``backend``, created once per run."""
    key = f"db.{backend}"
    if key not in ctx.shared:
        ctx.shared[key] = _open_db(ctx, backend)
    db: TokenDB = ctx.shared[key]
    return db


def _open_db(ctx: Context, backend: str) -> TokenDB:
    if backend == "sqlite":
        url = f"sqlite:///{ctx.tmp}/tokens.db"
    else:
        if not reachable("127.0.0.1", 5432):
            raise Skip("PostgreSQL is not reachable on 127.0.0.1:5432", "service")
        url = PG_URL
    return TokenDB(ctx, backend, url, ctx.profile.db_tokens)


def build(ctx: Context, group: Group) -> None:
    for backend in ("sqlite", "pg"):
        tag = f"opaque.{backend}"
        names = [f"{tag}.bg.hit", f"{tag}.bg.miss", f"{tag}.authlib"]
        try:
            db = open_db(ctx, backend)
        except Skip as skip:
            group.skip(names, skip)
            continue
        if backend == "sqlite":
            floor = Case(SQLA_FLOOR, db.app("floor"), Feed(["floor-token-not-checked"]))
            group.cases.append(floor)
        build_db_cases(ctx, group, db)
        if backend == "sqlite":
            build_references(ctx, group, db)
            build_revocation(ctx, group, db)


def build_db_cases(ctx: Context, group: Group, db: TokenDB) -> None:
    tag = f"opaque.{db.backend}"
    reference = f"{tag}.authlib"
    Token = db.Token
    group.cases.append(
        Case(
            f"{tag}.bg.hit",
            db.app("bg-hit", bearerguard_protector(db)("profile")),
            Feed(db.take(HIT_CYCLE)),
            authlib=reference,
            target="hit",
            floor=SQLA_FLOOR,
        )
    )
    group.cases.append(
        Case(
            f"{tag}.bg.miss",
            db.app("bg-miss", bearerguard_protector(db)("profile")),
            Feed(mint=db.take),
            batch=ctx.profile.fixed(60),
            authlib=reference,
        )
    )

    group.cases.append(
        Case(
            f"{tag}.query-alone",
            db.app("query-alone", query_alone(db)),
            Feed(mint=db.take),
            batch=ctx.profile.fixed(60),
        )
    )

    def documented(token_string: str) -> Any:  # Authlib's documented validator body
        return Token.query.filter_by(access_token=token_string).first()

    group.cases.append(
        Case(
            reference,
            db.app("authlib", authlib_protector(documented)("profile")),
            Feed(db.take(HIT_CYCLE)),
            batch=ctx.profile.fixed(40),
            target="authlib_sqla" if db.backend == "sqlite" else None,
            floor=SQLA_FLOOR,
        )
    )


def query_alone(db: TokenDB) -> Decorator:
    """The query ``create_bearer_token_validator`` issues, alone, through the
    same scoped session, for the token of each request: what a database miss
    cannot avoid."""
    from flask import request
    from sqlalchemy import select

    session = db.db.session
    try:
        from bearerguard.sqla import token_query
    except ImportError:  # before issue 15 (a before/after run): built per request
        column = db.Token.access_token

        def lookup(token: str) -> Any:
            query = select(db.Token).where(column == token).limit(1)
            return session.execute(query).scalars().first()
    else:
        query = token_query(db.Token, "access_token")

        def lookup(token: str) -> Any:
            return session.execute(query, {"bearerguard_token": token}).scalars().first()

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if lookup(request.environ["HTTP_AUTHORIZATION"][7:]) is None:
                raise RuntimeError("token not found")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def build_references(ctx: Context, group: Group, db: TokenDB) -> None:
    """What a user could write instead: a TTLCache decorator; Authlib over a cache."""
    Token = db.Token

    def as_dict(token_string: str) -> dict[str, Any] | None:
        row = Token.query.filter_by(access_token=token_string).first()
        return None if row is None else {"scope": row.scope.split(), "user_id": row.user_id}

    group.cases.append(
        Case(
            "ref.ttlcache-decorator.hit",
            db.app("ref-ttlcache", ttlcache_decorator(as_dict)),
            Feed(db.take(HIT_CYCLE)),
            target="ttlcache_hit",
            floor=SQLA_FLOOR,
        )
    )
    from cachetools import TTLCache

    cache: TTLCache[str, Any] = TTLCache(maxsize=100_000, ttl=3600)

    def cached(token_string: str) -> Any:
        row = cache.get(token_string)
        if row is None:
            row = cache[token_string] = Token.query.filter_by(access_token=token_string).first()
        return row

    group.cases.append(
        Case(
            "ref.authlib-wrapping-cache.hit",
            db.app("ref-authlib-cache", authlib_protector(cached)("profile")),
            Feed(db.take(HIT_CYCLE)),
            authlib="opaque.sqlite.authlib",
            target="authlib_wrap_hit",
            floor=SQLA_FLOOR,
        )
    )


def build_revocation(ctx: Context, group: Group, db: TokenDB) -> None:
    """Cache hits while the deny-list holds ``profile.revoked`` other tokens."""
    from bearerguard import RevocationStore

    count = ctx.profile.revoked
    protector = bearerguard_protector(db, revocations=RevocationStore())
    fill_denylist(protector, count)
    group.cases.append(
        Case(
            f"revocation.inproc-{_k(count)}.bg.hit",
            db.app("revoked-inproc", protector("profile")),
            Feed(db.take(HIT_CYCLE)),
            authlib="opaque.sqlite.authlib",
            target="hit",
            floor=SQLA_FLOOR,
        )
    )
    name = f"revocation.redis-{_k(count)}.bg.hit"
    try:
        store = redis_store(ctx)
        protector = bearerguard_protector(db, revocations=store)
        fill_denylist(protector, count)
        group.cases.append(
            Case(
                name,
                db.app("revoked-redis", protector("profile")),
                Feed(db.take(HIT_CYCLE)),
                authlib="opaque.sqlite.authlib",
                target="hit",
                floor=SQLA_FLOOR,
            )
        )
    except Skip as skip:
        group.skip(name, skip)


def redis_store(ctx: Context) -> Any:
    import importlib.util

    if importlib.util.find_spec("bearerguard.redis") is None:
        raise Skip("bearerguard.redis (RedisRevocationStore) has not landed in src/", "stub")
    if importlib.util.find_spec("redis") is None:
        raise Skip("redis-py is not installed (the redis extra)", "package")
    if not reachable("127.0.0.1", 6379):
        raise Skip("Redis is not reachable on 127.0.0.1:6379", "service")
    import redis

    from bearerguard.redis import RedisRevocationStore

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    ctx.stack.callback(client.close)
    ctx.stack.callback(client.flushdb)
    store = RedisRevocationStore(REDIS_URL)
    ctx.stack.callback(store.close)
    return store


def fill_denylist(protector: Any, count: int) -> None:
    """Revoke ``count`` tokens that are never sent, through the store's public API
    (``protector.revoke`` stores nothing for a token no validator knows)."""
    from bearerguard.core.credentials import digest

    until = time.time() + 86400
    for i in range(count):
        protector.revocations.revoke_token(digest(f"revoked-{i:07d}-never-sent"), until)


def _k(count: int) -> str:
    return f"{count // 1000}k" if count >= 1000 else str(count)
