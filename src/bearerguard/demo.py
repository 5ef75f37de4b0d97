"""The example resource server: ``make demo`` (or ``python -m bearerguard.demo``).

Runs on its embedded defaults: SQLite opaque tokens seeded for two demo users,
the in-process cache, and a built-in issuer whose RS256 key signs JWT access
tokens. ``--check`` starts it, makes the printed requests over real HTTP and
exits 0 only if every answer is the expected one.

Also a factory for real servers: ``gunicorn 'bearerguard.demo:create_app()'``,
configured by the environment:

* ``BEARERGUARD_DEMO_DB`` — SQLAlchemy URL (default: a SQLite file in the temp dir);
* ``BEARERGUARD_REDIS_URL`` — share revocations through Redis;
* ``BEARERGUARD_DEMO_TOKENS`` — also seed ``load-0000`` ... tokens (scope "profile email").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
from authlib.integrations.sqla_oauth2 import OAuth2TokenMixin
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request
from sqlalchemy import ForeignKey, Integer, String, create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)

from . import ResourceProtector, current_token
from .errors import BearerGuardError
from .sqla import create_bearer_token_validator
from .validators import JWTBearerTokenValidator

ISSUER = "http://127.0.0.1:5000"
AUDIENCE = "bearerguard-demo"
KID = "demo-1"
SEED_TOKENS = {
    # token: (user, scope, revoked)
    "demo-good": ("alice", "profile email", False),
    "demo-noscope": ("alice", "email", False),
    "demo-revoked": ("bob", "profile email", True),
    "demo-admin": ("bob", "admin", False),
}


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "demo_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


class Token(Base, OAuth2TokenMixin):  # type: ignore[misc]
    """Authlib 1.x's token model, as an authorization server would store it."""

    __tablename__ = "demo_token"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey(User.id))
    user: Mapped[User] = relationship(User)


def _demo_key() -> rsa.RSAPrivateKey:
    """The built-in issuer's key: made once per machine, shared by every worker."""
    path = os.environ.get("BEARERGUARD_DEMO_KEY") or os.path.join(
        tempfile.gettempdir(), "bearerguard-demo-key.pem"
    )
    if not os.path.exists(path):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path))
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # atomic: of racing workers, exactly one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    with open(path, "rb") as f:
        loaded = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def demo_jwks() -> dict[str, Any]:
    """The built-in issuer's public keys as a JWKS."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_demo_key().public_key()))
    jwk.update(kid=KID, use="sig", alg="RS256")
    return {"keys": [jwk]}


def mint(scope: str = "profile email", expires_in: int = 600, subject: str = "alice") -> str:
    """A JWT access token (RFC 9068) from the built-in issuer, for local testing."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "client_id": "demo-client",
        "scope": scope,
        "iat": now,
        "exp": now + expires_in,
        "jti": os.urandom(8).hex(),
    }
    headers = {"kid": KID, "typ": "at+jwt"}
    return jwt.encode(claims, _demo_key(), algorithm="RS256", headers=headers)


def _seed(factory: sessionmaker[Any], extra_tokens: int) -> None:
    with factory() as session:
        if session.execute(select(User).limit(1)).first() is not None:
            return
        users = {name: User(name=name) for name in ("alice", "bob")}
        session.add_all(users.values())
        now = int(time.time())
        for value, (user, scope, revoked) in SEED_TOKENS.items():
            token = Token(access_token=value, scope=scope, user=users[user])
            token.issued_at, token.expires_in = now, 10 * 365 * 86400
            token.access_token_revoked_at = now if revoked else 0
            session.add(token)
        for i in range(extra_tokens):
            load = Token(access_token=f"load-{i:04d}", scope="profile email", user=users["alice"])
            load.issued_at, load.expires_in = now, 10 * 365 * 86400
            session.add(load)
        try:
            session.commit()
        except IntegrityError:  # another worker seeded it first
            session.rollback()


def create_app(
    database_url: str | None = None,
    *,
    redis_url: str | None = None,
    extra_tokens: int | None = None,
) -> Flask:
    """The demo resource server; arguments default to the environment."""
    database_url = (
        database_url
        or os.environ.get("BEARERGUARD_DEMO_DB")
        or ("sqlite:///" + os.path.join(tempfile.gettempdir(), "bearerguard-demo.db"))
    )
    redis_url = redis_url or os.environ.get("BEARERGUARD_REDIS_URL") or None
    if extra_tokens is None:
        extra_tokens = int(os.environ.get("BEARERGUARD_DEMO_TOKENS") or 0)

    engine = create_engine(database_url)
    try:
        Base.metadata.create_all(engine)
    except OperationalError:
        # gunicorn workers importing a fresh SQLite file at once: another one
        # created the tables between our check and our CREATE TABLE.
        Base.metadata.create_all(engine)
    factory = sessionmaker(engine)
    _seed(factory, extra_tokens)
    session = scoped_session(factory)

    revocations = None
    if redis_url:
        from .redis import RedisRevocationStore

        revocations = RedisRevocationStore(redis_url)
    require_oauth = ResourceProtector(realm="bearerguard-demo", revocations=revocations)
    require_oauth.register_token_validator(create_bearer_token_validator(session, Token)())
    require_oauth.register_token_validator(
        JWTBearerTokenValidator(issuer=ISSUER, audience=AUDIENCE, jwks=demo_jwks())
    )

    app = Flask("bearerguard.demo")
    app.extensions["bearerguard"] = require_oauth

    @app.teardown_appcontext
    def _remove_session(_exc: BaseException | None) -> None:
        session.remove()

    @app.get("/hello")
    def hello() -> Any:
        return jsonify(hello="world")

    @app.get("/hello/protected")
    @require_oauth("profile")
    def hello_protected() -> Any:
        return jsonify(hello="world")

    @app.get("/user")
    @require_oauth("profile")
    def user() -> Any:
        return jsonify(current_token.user.to_dict())

    @app.get("/jwt/user")
    @require_oauth("profile")
    def jwt_user() -> Any:
        return jsonify(sub=current_token["sub"], scope=current_token.get_scope())

    @app.get("/maybe")
    @require_oauth(optional=True)
    def maybe() -> Any:
        return jsonify(authenticated=bool(current_token))

    @app.post("/admin/revoke")
    @require_oauth("admin")
    def revoke() -> Any:
        token = request.form.get("token", "")
        if not token:
            return jsonify(error="invalid_request", error_description="token is required"), 400
        try:
            require_oauth.revoke(token)
        except BearerGuardError as error:  # cannot be verified now, and the list is full
            require_oauth.raise_error_response(error)
        return "", 204

    @app.get("/admin/stats")
    @require_oauth("admin")
    def stats() -> Any:
        return jsonify(pid=os.getpid(), **require_oauth.stats())

    return app


def _expectations(jwt_token: str) -> list[tuple[str, str, str | None, int]]:
    return [
        ("a working token", "/user", "demo-good", 200),
        ("a token lacking the scope", "/user", "demo-noscope", 403),
        ("a revoked token", "/user", "demo-revoked", 401),
        ("no token", "/user", None, 401),
        ("an unknown token", "/user", "no-such-token", 401),
        ("a JWT from the built-in issuer", "/jwt/user", jwt_token, 200),
    ]


def _curl(base: str, path: str, token: str | None) -> str:
    header = f' -H "Authorization: Bearer {token}"' if token else ""
    return f"curl -i{header} {base}{path}"


def _status(url: str, token: str | None) -> int:
    req = urllib.request.Request(url)  # noqa: S310 (http to loopback only)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _check(app: Flask, host: str, port: int) -> int:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    base = f"http://{host}:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failures = 0
    try:
        for what, path, token, expected in _expectations(mint()):
            status = _status(base + path, token)
            ok = status == expected
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {status} (want {expected}) {what}: GET {path}")
    finally:
        server.shutdown()
    print("demo check:", "all answers as expected" if not failures else f"{failures} wrong")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bearerguard demo", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite in the temp dir)")
    parser.add_argument("--redis", help="share revocations through this Redis URL")
    parser.add_argument("--check", action="store_true", help="self-test over real HTTP, then exit")
    args = parser.parse_args(argv)
    app = create_app(args.db, redis_url=args.redis)
    if args.check:
        return _check(app, args.host, 0)
    base = f"http://{args.host}:{args.port}"
    print(f"bearerguard demo resource server on {base}\nTry:")
    for what, path, token, expected in _expectations(mint()):
        print(f"  # {what} -> {expected}\n  {_curl(base, path, token)}")
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
