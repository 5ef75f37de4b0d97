"""The example resource server: ``make demo`` (or ``python examples/demo.py``).

Runs on its embedded defaults: SQLite opaque tokens seeded for two demo users,
the in-process cache, and a built-in issuer whose RS256 key signs JWT access
tokens, and a demo client whose DPoP key (RFC 9449) the issuer binds tokens
to. ``--check`` starts it, makes the printed requests over real HTTP (a DPoP
proof accepted once, then refused replayed; its bound token refused as a
Bearer token) and exits 0 only if every answer is the expected one.

Not part of the installed package: the issuer it trusts is
``bearerguard._demo_issuer``, which ``bearerguard mint`` also uses.

The key and the SQLite file live in a directory only the current user can
use (``$XDG_RUNTIME_DIR/bearerguard-demo``, else ``bearerguard-demo-<uid>`` in
the temp dir, mode 0700); bearerguard refuses a directory or key that another
user owns or can write, since whoever plants the key mints admin tokens. The
admin token is random, made afresh by each ``make demo`` and printed.

``create_app()`` also runs under a WSGI server, to try workers and Redis:
``gunicorn --pythonpath examples 'demo:create_app()'``. It is a demo, never a
server for real users: its seeded tokens are publicly known strings.
Configured by the environment:

* ``BEARERGUARD_DEMO_DB`` — SQLAlchemy URL (default: a SQLite file in the private directory);
* ``BEARERGUARD_DEMO_KEY`` — the issuer's key file (default: in the private directory);
* ``BEARERGUARD_DEMO_ADMIN_TOKEN`` — the admin token (default: a random one, printed);
* ``BEARERGUARD_REDIS_URL`` — share revocations through Redis;
* ``BEARERGUARD_REDIS_CHANNEL`` — their pub/sub channel and key prefix (default
  ``bearerguard:revocations``, ``bearerguard:``): apps that share one Redis but
  not their revocations each need their own;
* ``BEARERGUARD_DEMO_TOKENS`` — also seed ``load-0000`` ... tokens (scope "profile email").
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from authlib.integrations.sqla_oauth2 import OAuth2TokenMixin
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

from bearerguard import ResourceProtector, current_token
from bearerguard._demo_issuer import (
    AUDIENCE,
    ISSUER,
    client_key_path,
    client_proof,
    demo_jwks,
    mint,
    mint_bound,
    private_dir,
)
from bearerguard.errors import BearerGuardError
from bearerguard.redis import RedisRevocationStore
from bearerguard.sqla import create_bearer_token_validator
from bearerguard.validators import JWTBearerTokenValidator

__all__ = ["AUDIENCE", "ISSUER", "SEED_TOKENS", "Token", "User", "create_app", "main", "mint"]

SEED_TOKENS = {
    # token: (user, scope, revoked); the admin token is random (see _admin_token)
    "demo-good": ("alice", "profile email", False),
    "demo-noscope": ("alice", "email", False),
    "demo-revoked": ("bob", "profile email", True),
}
ADMIN_USER, ADMIN_SCOPE = "bob", "admin"
#: How long a seeded token lives; each start renews those past half of it.
TOKEN_LIFETIME = 24 * 3600


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


def _issue(session: Any, value: str, user: User, scope: str, revoked: bool, now: int) -> None:
    """Make the token ``value``, or renew it once past half its lifetime."""
    token = session.execute(select(Token).filter_by(access_token=value)).scalar_one_or_none()
    if token is not None and token.issued_at + token.expires_in > now + TOKEN_LIFETIME // 2:
        return
    if token is None:
        token = Token(access_token=value)
        session.add(token)
    token.user, token.scope = user, scope
    token.issued_at, token.expires_in = now, TOKEN_LIFETIME
    token.access_token_revoked_at = now if revoked else 0


def _admin_token(session: Any, wanted: str | None, user: User, now: int) -> str:
    """The admin token: ``wanted`` (every other one is deleted), else a live
    one already seeded (the workers of one server agree), else a new one."""
    admins = session.execute(select(Token).filter_by(scope=ADMIN_SCOPE)).scalars().all()
    if wanted is None:
        # Not one of an older demo's 10-year tokens (a known string, "demo-admin").
        live = [
            t
            for t in admins
            if t.expires_in <= TOKEN_LIFETIME
            and t.issued_at + t.expires_in > now + TOKEN_LIFETIME // 2
        ]
        if live:
            return str(live[0].access_token)
        wanted = secrets.token_urlsafe(24)
        print(f"bearerguard demo: admin token {wanted}", file=sys.stderr)
    for token in admins:
        if token.access_token != wanted:
            session.delete(token)
    _issue(session, wanted, user, ADMIN_SCOPE, False, now)
    return wanted


def _seed(factory: sessionmaker[Any], extra_tokens: int, admin: str | None) -> str:
    """Seed (or renew) the demo tokens; return the admin token."""
    try:
        return _seed_once(factory, extra_tokens, admin)
    except IntegrityError:  # another worker seeded at the same moment: read theirs
        return _seed_once(factory, extra_tokens, admin)


def _seed_once(factory: sessionmaker[Any], extra_tokens: int, admin: str | None) -> str:
    with factory() as session:
        users = {u.name: u for u in session.execute(select(User)).scalars()}
        for name in ("alice", "bob"):
            if name not in users:
                users[name] = User(name=name)
                session.add(users[name])
        now = int(time.time())
        for value, (user, scope, revoked) in SEED_TOKENS.items():
            _issue(session, value, users[user], scope, revoked, now)
        for i in range(extra_tokens):
            _issue(session, f"load-{i:04d}", users["alice"], "profile email", False, now)
        admin_token = _admin_token(session, admin, users[ADMIN_USER], now)
        session.commit()
    return admin_token


def create_app(
    database_url: str | None = None,
    *,
    redis_url: str | None = None,
    extra_tokens: int | None = None,
    admin_token: str | None = None,
) -> Flask:
    """The demo resource server; arguments default to the environment.

    A demo only: never serve real users with it (its seeded tokens are
    public). ``app.config["DEMO_ADMIN_TOKEN"]`` is the admin token in effect.
    """
    database_url = (
        database_url
        or os.environ.get("BEARERGUARD_DEMO_DB")
        or ("sqlite:///" + os.path.join(private_dir(), "demo.db"))
    )
    admin_token = admin_token or os.environ.get("BEARERGUARD_DEMO_ADMIN_TOKEN") or None
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
    admin_token = _seed(factory, extra_tokens, admin_token)
    session = scoped_session(factory)

    revocations = None
    if redis_url:
        channel = os.environ.get("BEARERGUARD_REDIS_CHANNEL")
        revocations = (
            RedisRevocationStore(redis_url, channel=channel, key_prefix=f"{channel}:")
            if channel
            else RedisRevocationStore(redis_url)
        )
    require_oauth = ResourceProtector(realm="bearerguard-demo", revocations=revocations)
    require_oauth.register_token_validator(create_bearer_token_validator(session, Token)())
    require_oauth.register_token_validator(
        JWTBearerTokenValidator(issuer=ISSUER, audience=AUDIENCE, jwks=demo_jwks())
    )

    app = Flask(__name__)
    app.extensions["bearerguard"] = require_oauth
    app.config["DEMO_ADMIN_TOKEN"] = admin_token

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


def _expectations(
    jwt_token: str, admin_token: str | None = None
) -> list[tuple[str, str, str | None, int]]:
    cases = [
        ("a working token", "/user", "demo-good", 200),
        ("a token lacking the scope", "/user", "demo-noscope", 403),
        ("a revoked token", "/user", "demo-revoked", 401),
        ("no token", "/user", None, 401),
        ("an unknown token", "/user", "no-such-token", 401),
        ("a JWT from the built-in issuer", "/jwt/user", jwt_token, 200),
    ]
    if admin_token is not None:
        cases.append(("this start's admin token", "/admin/stats", admin_token, 200))
    return cases


def _curl(base: str, path: str, token: str | None) -> str:
    header = f' -H "Authorization: Bearer {token}"' if token else ""
    return f"curl -i{header} {base}{path}"


#: The DPoP requests go to the JWT view: DPoP is allowed there, as everywhere by default.
DPOP_PATH = "/jwt/user"


def _dpop_lines(base: str, token: str) -> list[str]:
    """The DPoP part of the start banner: a request that works (once), how to
    make the next one, and the same token refused as a Bearer token."""
    url = base + DPOP_PATH
    script = os.path.join(os.path.dirname(sys.executable), "bearerguard")
    script = script if os.path.exists(script) else "bearerguard"
    command = shlex.join(
        [script, "dpop-proof", "--key", client_key_path(), "--url", url, "--token", token]
    )
    auth = f'-H "Authorization: DPoP {token}"'
    return [
        "# a DPoP-bound JWT with its proof (RFC 9449) -> 200, once: a proof is single-use",
        f'curl -i {auth} -H "DPoP: {client_proof(url, token)}" {url}',
        "# a fresh proof for each request (each is good for a few minutes only):",
        f"PROOF=$({command})",
        f'curl -i {auth} -H "DPoP: $PROOF" {url}',
        "# the same token sent as a Bearer token, as a thief would -> 401",
        _curl(base, DPOP_PATH, token),
    ]


def _dpop_cases(base: str) -> list[tuple[str, dict[str, str], int, str]]:
    """(what, headers, status, error) of the self-check's DPoP requests, in order."""
    token = mint_bound()
    dpop = {"Authorization": f"DPoP {token}", "DPoP": client_proof(base + DPOP_PATH, token)}
    fresh = {**dpop, "DPoP": client_proof(base + DPOP_PATH, token)}
    return [
        ("a DPoP-bound JWT with its proof", dpop, 200, ""),
        ("the same proof replayed", dpop, 401, "invalid_dpop_proof"),
        ("a fresh proof for the same token", fresh, 200, ""),
        ("the DPoP-bound JWT replayed as a Bearer token", _bearer(token), 401, "invalid_token"),
    ]


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _status(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """The answer's status and its ``WWW-Authenticate`` (empty when none)."""
    req = urllib.request.Request(url, headers=headers)  # noqa: S310 (http to loopback only)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:  # noqa: S310 (loopback)
            return int(response.status), ""
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers.get("WWW-Authenticate", "")


def _check(app: Flask, host: str, port: int) -> int:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    base = f"http://{host}:{server.server_port}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    failures = 0
    cases = [
        (what, path, _bearer(token), expected, "")
        for what, path, token, expected in _expectations(mint(), app.config["DEMO_ADMIN_TOKEN"])
    ]
    cases += [(what, DPOP_PATH, h, want, error) for what, h, want, error in _dpop_cases(base)]
    try:
        for what, path, headers, expected, error in cases:
            status, challenge = _status(base + path, headers)
            ok = status == expected and (not error or f'error="{error}"' in challenge)
            failures += not ok
            print(f"{'ok ' if ok else 'BAD'} {status} (want {expected}) {what}: GET {path}")
    finally:
        server.shutdown()
    print("demo check:", "all answers as expected" if not failures else f"{failures} wrong")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--db", help="SQLAlchemy URL (default: SQLite in a private directory)")
    parser.add_argument("--redis", help="share revocations through this Redis URL")
    parser.add_argument("--check", action="store_true", help="self-test over real HTTP, then exit")
    args = parser.parse_args(argv)
    # A new admin token each start (unless the environment names one): the
    # one of an earlier start stops working.
    admin = os.environ.get("BEARERGUARD_DEMO_ADMIN_TOKEN") or secrets.token_urlsafe(24)
    app = create_app(args.db, redis_url=args.redis, admin_token=admin)
    if args.check:
        return _check(app, args.host, 0)
    base = f"http://{args.host}:{args.port}"
    print(f"bearerguard demo resource server on {base}\nTry:")
    for what, path, token, expected in _expectations(mint(), admin):
        print(f"  # {what} -> {expected}\n  {_curl(base, path, token)}")
    print("\n".join("  " + line for line in _dpop_lines(base, mint_bound())), flush=True)
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
