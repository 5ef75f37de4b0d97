"""No token leaks: not into any log record, response body or response header.

Every log record at DEBUG and above, from the ``bearerguard`` logger and from
the root logger (so from any library the request touches), is captured while
the main scenarios run against real servers on 127.0.0.1: valid tokens of
every kind, refusals, expiry, revocation, a backend whose exceptions quote
the token, the JWKS endpoint down, the introspection endpoint failing with
the token in its error page, and Redis unreachable. Each record is rendered
whole (message, arguments, every attribute, formatted traceback) and searched
for every token sent, every JWT signature segment, and the introspection
client secret. Responses are searched the same way.

The SQLite engine is created with ``hide_parameters=True``: SQLAlchemy's own
statement log (``sqlalchemy.engine`` at INFO, which a DEBUG root enables)
prints bound parameters, and the token is one. That is the application's
logging, not bearerguard's; SECURITY.md tells deployers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from sqlalchemy import create_engine, select
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool

from bearerguard import ResourceProtector, TokenCache
from bearerguard._log import fingerprint, reset_throttle
from bearerguard.errors import InvalidTokenError, ValidatorUnavailableError
from bearerguard.sqla import create_bearer_token_validator
from bearerguard.validators import (
    BearerTokenValidator,
    IntrospectionTokenValidator,
    JWTBearerTokenValidator,
)
from bearerguard.validators.jwt import ANY_AUDIENCE

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    cached_keypair,
    forge,
    loopback_client,
    make_token,
)
from .models import Base, Token
from .servers import LoopbackServer, Reply, Seen, free_port

KEY = cached_keypair("ES256", "leak-ec")
FORGER = Keypair.generate("ES256", kid="leak-ec")
SECRET = "introspection-secret-4f9a1c"


class Capture(logging.Handler):
    """Keeps every record it sees; attached to the root and to ``bearerguard``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: dict[int, logging.LogRecord] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records[id(record)] = record  # seen twice when it propagates

    def rendered(self) -> list[str]:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        texts = []
        for record in self.records.values():
            text = formatter.format(record)  # message, args, exc_text, stack_info
            texts.append(f"{text}\n{record.msg!r}\n{record.args!r}\n{vars(record)!r}")
        return texts


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root, ours = logging.getLogger(), logging.getLogger("bearerguard")
    saved = (root.level, ours.level)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    root.addHandler(handler)
    ours.addHandler(handler)
    yield handler
    root.removeHandler(handler)
    ours.removeHandler(handler)
    root.setLevel(saved[0])
    ours.setLevel(saved[1])


# -- the world the scenarios run in ---------------------------------------------------------


class FlakyStore(BearerTokenValidator):
    """Opaque tokens in a dict; when ``down``, fails the way drivers do: quoting the query."""

    def __init__(self, tokens: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.tokens = tokens
        self.down = False

    def authenticate_token(self, token_string: str) -> Any:
        if self.down:
            raise ConnectionError(f"timeout: SELECT * FROM token WHERE value = '{token_string}'")
        return self.tokens.get(token_string)


class AuthServer:
    """Introspection that knows ``tokens``; ``fault`` makes it fail, echoing the token."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.fault: str | None = None

    def __call__(self, seen: Seen) -> Reply:
        token = parse_qs(seen.body.decode()).get("token", [""])[0]
        if self.fault == "500":
            return Reply(500, f"<html>internal error while checking {token}</html>")
        if self.fault == "not-json":
            return Reply(200, f"token={token}; active=maybe")
        if self.fault == "slow":
            return Reply(200, {"active": True, "sub": token}, delay=0.5)
        if token in self.tokens:
            return Reply(200, {"active": True, "scope": "profile", "sub": "ia", "exp": 2e9})
        return Reply(200, {"active": False})


@dataclass
class World:
    clock: FakeClock
    protector: ResourceProtector
    client: Any
    store: FlakyStore
    stub: IssuerStub
    auth: AuthServer
    responses: list[Any] = field(default_factory=list)
    sent: set[str] = field(default_factory=set)

    def get(self, token: str | None, path: str = "/r", header: str | None = None) -> Any:
        if header is None and token is not None:
            header = f"Bearer {token}"
        if token is not None:
            self.sent.add(token)
        environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
        response = self.client.get(path, environ_overrides=environ)
        self.responses.append(response)
        return response

    def jwt(self, key: Keypair = KEY, **claims: Any) -> str:
        return make_token(key, now=self.clock(), **claims)

    def opaque(self, name: str, *, exp_in: float = 3600) -> str:
        token = f"{name}-opaque-7c1f2b9d"
        self.store.tokens[token] = {"scope": "profile", "exp": self.clock() + exp_in, "sub": name}
        return token


@pytest.fixture
def world(serve: Callable[[Any], LoopbackServer], capture: Capture) -> Iterator[World]:
    clock = FakeClock()
    stub, auth = IssuerStub(KEY), AuthServer()
    jwks_server, auth_server = serve(stub), serve(auth)
    engine = create_engine(
        "sqlite://",
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},
        hide_parameters=True,  # see the module docstring
    )
    Base.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    session.add(
        Token(
            access_token="db-token-9d2e6a71",
            scope="profile",
            issued_at=int(clock()),
            expires_in=3600,
        )
    )
    session.commit()
    http = loopback_client()
    protector = ResourceProtector(clock=clock, cache=TokenCache(clock=clock))
    protector.register_token_validator(
        JWTBearerTokenValidator(
            ISSUER,
            AUDIENCE,
            jwks_uri=jwks_server.url + JWKS_PATH,
            jwks_lifespan=100,
            jwks_max_stale=100,
            http=http,
        )
    )
    store = FlakyStore({})
    protector.register_token_validator(store)
    protector.register_token_validator(create_bearer_token_validator(session, Token)())
    protector.register_token_validator(
        IntrospectionTokenValidator(
            auth_server.url + "/introspect",
            "rs-1",
            SECRET,
            audience=ANY_AUDIENCE,  # the answers here carry no aud
            http=http,
            clock=clock,
            timeout=0.2,
        )
    )
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    app.add_url_rule("/admin", "admin", protector("admin")(lambda: "ok"))
    app.teardown_appcontext(lambda _exc: session.remove())
    yield World(clock, protector, app.test_client(), store, stub, auth)
    http.close()
    session.remove()
    engine.dispose()


# -- the scenarios ---------------------------------------------------------------------------


def valid(w: World) -> None:
    w.auth.tokens.add("intro-token-55e0c3a8")
    for token in (w.jwt(), w.opaque("alice"), "db-token-9d2e6a71", "intro-token-55e0c3a8"):
        assert w.get(token).status_code == 200
        assert w.get(token).status_code == 200  # and from the cache


def refused(w: World) -> None:
    real = w.jwt()
    head, body, _ = real.split(".")
    forged = w.jwt(FORGER)
    unknown_kid = w.jwt(Keypair("ES256", "other-kid-31", FORGER.private_key))
    for token in (
        "unknown-opaque-0b7e44c2",
        forged,
        unknown_kid,
        f"{head}.{body}.{forged.split('.')[2]}",
        forge({"alg": "none", "kid": KEY.kid}, {"iss": ISSUER, "exp": w.clock() + 60}),
        w.jwt(iss="https://untrusted.example.com"),
        w.jwt(aud="https://elsewhere.example.com"),
    ):
        assert w.get(token).status_code == 401
    assert w.get(real, "/admin").status_code == 403
    for header in (f"Bearer {real} extra", f"Bearer\t{real}", f"Basic {real}", f"Bearer {real}ä"):
        w.sent.add(real)
        assert w.get(None, header=header).status_code in (400, 401)
    w.sent.add(real)
    w.responses.append(w.client.get(f"/r?access_token={real}"))  # query tokens are off


def expired(w: World) -> None:
    jwt_token, opaque = w.jwt(exp=int(w.clock()) + 10), w.opaque("bob", exp_in=10)
    assert w.get(jwt_token).status_code == w.get(opaque).status_code == 200
    w.clock.advance(11)
    for token in (jwt_token, opaque, w.jwt(exp=int(w.clock()) - 1)):
        assert w.get(token).json["error_description"] == "token expired"


def revoked(w: World) -> None:
    tokens = [w.jwt(), w.jwt(jti="jti-to-revoke"), w.jwt(sub="carol"), w.opaque("dave")]
    for token in tokens:
        assert w.get(token).status_code == 200
    w.protector.revoke(tokens[0])
    w.protector.revoke_jti("jti-to-revoke", w.clock() + 300)
    w.protector.revoke_subject("carol")
    w.protector.revoke(tokens[3])
    w.protector.evict("db-token-9d2e6a71")
    for token in tokens:
        assert w.get(token).json["error_description"] == "token revoked"


def backend_down(w: World) -> None:
    cached = w.opaque("erin")
    assert w.get(cached).status_code == 200
    w.store.down = True
    assert w.get(w.opaque("frank")).status_code == 503
    assert w.get("never-seen-token-a1b2c3").status_code == 503
    assert w.get(cached).status_code == 200  # the cached token keeps serving


def jwks_down(w: World) -> None:
    cached = w.jwt()
    assert w.get(cached).status_code == 200
    w.stub.fault = Reply(503, "maintenance")
    w.clock.advance(150)  # lapsed: the refresh fails, stale keys serve
    assert w.get(w.jwt()).status_code == 200
    w.clock.advance(100)  # past the stale limit
    refused = w.get(w.jwt())
    assert (refused.status_code, refused.json["error_description"]) == (
        503,
        "signing keys unavailable",
    )


def introspection_failing(w: World) -> None:
    for fault in ("500", "not-json", "slow"):
        w.auth.fault = fault
        reset_throttle()  # log each failure, not just the first
        assert w.get(f"intro-{fault}-token-8e1d2f").status_code == 503


def redis_down(w: World) -> None:
    from bearerguard.redis import RedisRevocationStore

    store = RedisRevocationStore(f"redis://127.0.0.1:{free_port()}/0", backoff=(0.05, 0.1))
    try:
        protector = ResourceProtector(clock=w.clock, revocations=store)
        protector.register_token_validator(w.store)
        app = Flask(__name__)
        app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
        token = w.opaque("gina")
        w.client = app.test_client()
        assert w.get(token).status_code == 200
        protector.revoke(token)  # queued for Redis, enforced here at once
        assert w.get(token).status_code == 401
        w.sent.add(token)
        assert token not in repr(store.stats())
    finally:
        store.close()


SCENARIOS: dict[str, Callable[[World], None]] = {
    "valid": valid,
    "refused": refused,
    "expired": expired,
    "revoked": revoked,
    "backend-down": backend_down,
    "jwks-down": jwks_down,
    "introspection-failing": introspection_failing,
    "redis-down": redis_down,
}


def secrets_of(sent: set[str]) -> set[str]:
    """Every token sent, the signature segment of each JWT, and the client secret."""
    found = {SECRET}
    for token in sent:
        found.add(token)
        if token.count(".") == 2:
            found.add(token.rsplit(".", 1)[1])
    return {s for s in found if len(s) >= 8}


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS.keys()))
def test_no_token_in_any_log_record_or_response(
    world: World, capture: Capture, scenario: Callable[[World], None]
) -> None:
    scenario(world)
    secrets = secrets_of(world.sent)

    assert capture.records, "nothing was logged: is the capture attached?"
    for text in capture.rendered():
        for secret in secrets:
            assert secret not in text, f"{secret[:12]}... leaked into a log record:\n{text[:500]}"
    for response in world.responses:
        sent = response.get_data(as_text=True) + repr(list(response.headers.items()))
        for secret in secrets:
            assert secret not in sent, f"{secret[:12]}... leaked into a response: {sent[:300]}"
    stats = repr(world.protector.stats()) + repr(world.protector.cache)
    stats += repr(world.protector.revocations)
    assert not any(secret in stats for secret in secrets)
    # Nor in the guard's own state once the requests are answered (a heap dump).
    held = repr(vars(world.protector.guard))
    assert not any(secret in held for secret in secrets)


def test_records_name_tokens_by_fingerprint(world: World, capture: Capture) -> None:
    """What the search above relies on: records do name tokens, by fingerprint."""
    token = world.jwt()
    world.protector.revoke(token)

    messages = [record.getMessage() for record in capture.records.values()]
    assert f"revoked token {fingerprint(token)}" in messages


# -- no token in the exception chain of a refusal (an errorhandler logging exc_info) ---------


def chain_text(error: BaseException) -> str:
    """What any tool could print of ``error``: the traceback as ``traceback``
    prints it, and every exception reachable by __cause__ and __context__
    (suppressed or not), with its args."""
    import traceback

    texts = traceback.format_exception(error)
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        seen.add(id(exc))
        texts += [
            repr(exc),
            str(exc),
            repr(exc.args),
            repr(vars(exc) if hasattr(exc, "__dict__") else ""),
        ]
        todo += [exc.__cause__, exc.__context__]
    return "\n".join(texts)


def logging_app(protector: ResourceProtector, errors: list[BaseException]) -> Flask:
    """A view behind ``protector`` and the ordinary errorhandlers that log with exc_info."""
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector()(lambda: "ok"))
    log = logging.getLogger("app.errors")

    def handler(error: Any) -> Any:
        errors.append(error)
        log.error("refused %s", error.code, exc_info=error)
        return error

    for status in (401, 503):
        app.register_error_handler(status, handler)
    return app


def assert_no_token_in_chain(token: str, errors: list[BaseException], capture: Capture) -> None:
    assert errors
    for error in errors:
        assert token not in chain_text(error)
    logged = [t for t in capture.rendered() if "refused" in t]
    assert logged and all(token not in text for text in capture.rendered())
    assert any("Traceback" in text for text in logged), "exc_info was logged"


def test_database_failure_503_carries_no_token_in_its_chain(capture: Capture) -> None:
    """SQLite with the table dropped: SQLAlchemy's error quotes the SQL parameters."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    protector = ResourceProtector()
    protector.register_token_validator(create_bearer_token_validator(session, Token)())
    errors: list[BaseException] = []
    app = logging_app(protector, errors)
    app.teardown_appcontext(lambda _exc: session.remove())
    token = "chained-db-token-5b8e0f13"
    Base.metadata.drop_all(engine)
    try:
        with pytest.raises(Exception, match=token):  # what the driver's error says
            session.execute(select(Token).where(Token.access_token == token)).first()
        session.rollback()
        with pytest.raises(ValidatorUnavailableError) as caught:  # called directly, too
            protector.validators[0].validate(token)
        assert caught.value.__cause__ is None and caught.value.__context__ is None
        response = app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert_no_token_in_chain(token, errors, capture)
    finally:
        session.remove()
        engine.dispose()


def test_database_cut_off_503_carries_no_token_in_its_chain(capture: Capture) -> None:
    """PostgreSQL behind a real TCP proxy, cut while the pool holds a connection."""
    from sqlalchemy.engine import make_url

    from .conftest import PG_URL, pg_schema_url
    from .servers import TCPProxy

    url = make_url(PG_URL)
    proxy = TCPProxy(url.host or "127.0.0.1", url.port or 5432)
    schema_urls = pg_schema_url(PG_URL.replace(f":{url.port or 5432}/", f":{proxy.port}/"))
    engine = create_engine(next(schema_urls), connect_args={"connect_timeout": 2})
    session = scoped_session(sessionmaker(engine))
    try:
        Base.metadata.create_all(engine)
        protector = ResourceProtector()
        protector.register_token_validator(create_bearer_token_validator(session, Token)())
        errors: list[BaseException] = []
        app = logging_app(protector, errors)
        app.teardown_appcontext(lambda _exc: session.remove())
        token = "chained-pg-token-a41c77e2"
        assert (
            app.test_client().get("/r", headers={"Authorization": "Bearer warm-up"}).status_code
            == 401
        )
        proxy.down()
        response = app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert_no_token_in_chain(token, errors, capture)
    finally:
        session.remove()
        engine.dispose()
        proxy.close()
        next(schema_urls, None)


class ChainingHook(BearerTokenValidator):
    """A ported hook that raises a refusal "from" its backend's error, which quotes the token."""

    def __init__(self, refusal: type[Exception]) -> None:
        super().__init__()
        self.refusal = refusal

    def authenticate_token(self, token_string: str) -> Any:
        try:
            raise ConnectionError(f"SELECT * FROM token WHERE value = '{token_string}'")
        except ConnectionError as exc:
            raise self.refusal() from exc


@pytest.mark.parametrize(
    ("refusal", "status"),
    [(InvalidTokenError, 401), (ValidatorUnavailableError, 503)],
    ids=["invalid-token", "unavailable"],
)
def test_a_hooks_chained_refusal_goes_out_without_its_chain(
    capture: Capture, refusal: type[Exception], status: int
) -> None:
    protector = ResourceProtector()
    protector.register_token_validator(ChainingHook(refusal))
    errors: list[BaseException] = []
    app = logging_app(protector, errors)
    token = "chained-hook-token-e93d1a40"
    response = app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    assert_no_token_in_chain(token, errors, capture)
