"""The documented Authlib usage, run literally on SQLite and PostgreSQL.

Every test runs over each database x token model x validator style through
the parametrized ``env`` fixture.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import g

from bearerguard import ResourceProtector, token_authenticated

from .conftest import pg_schema_url
from .sqla_app import Env, build, db


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite://"
    else:
        yield from pg_schema_url()


@pytest.fixture(
    params=[("seed", "literal"), ("seed", "factory"), ("mixin", "literal"), ("mixin", "factory")],
    ids=["seed-subclass", "seed-factory", "mixin-subclass", "mixin-factory"],
)
def env(request: pytest.FixtureRequest, database_url: str) -> Iterator[Env]:
    model, style = request.param
    environment = build(database_url, model, style)
    yield environment
    with environment.app.app_context():
        db.session.remove()
        db.engine.dispose()


def test_valid_token_reaches_view_and_lazy_relationship_loads(env: Env) -> None:
    token = env.issue("tok-valid")
    response = env.get("/user", token)
    assert response.status_code == 200
    assert response.json["name"] == "alice"


def test_cache_hit_calls_authenticate_token_once(env: Env) -> None:
    token = env.issue("tok-once")
    for _ in range(5):
        assert env.get("/any", token).status_code == 200
    assert env.calls == [token]
    stats = env.require_oauth.stats()["cache"]
    assert (stats["hits"], stats["misses"]) == (4, 1)


def test_lazy_relationship_on_cache_hit_after_session_remove(env: Env) -> None:
    """The first request never touches .user; the hit must still load it."""
    token = env.issue("tok-lazy")
    assert env.get("/any", token).status_code == 200  # caches the row, .user untouched
    with env.app.app_context():
        db.session.remove()
    for path in ("/user", "/user", "/acquire", "/methodview", "/restful"):
        response = env.get(path, token)
        assert response.status_code == 200, path
    assert env.calls == [token]


@pytest.mark.parametrize(
    ("path", "scope", "status"),
    [
        ("/user", "profile", 200),
        ("/user", "email", 403),
        ("/any", "email", 200),
        ("/none", "nothing-in-particular", 200),
        ("/and", "profile email", 200),
        ("/and", "profile", 403),
        ("/or", "email", 200),
        ("/or", "openid", 403),
        ("/custom", "admin", 200),
        ("/custom", "profile email", 200),
        ("/custom", "profile", 403),
        ("/list", "profile email", 200),
        ("/list", "admin", 200),
        ("/list", "profile", 403),
    ],
    ids=lambda v: str(v),
)
def test_scope_forms(env: Env, path: str, scope: str, status: int) -> None:
    token = env.issue(f"tok-{uuid.uuid4().hex}", scope=scope)
    response = env.get(path, token)
    assert response.status_code == status
    if status == 403:
        assert response.json["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


def test_403_names_the_scope_the_view_needs(env: Env) -> None:
    token = env.issue("tok-narrow", scope="email")
    challenge = env.get("/and", token).headers["WWW-Authenticate"]
    assert 'scope="profile email"' in challenge


@pytest.mark.parametrize("path", ["/methodview", "/restful", "/async", "/acquire"])
def test_view_styles_enforce_and_pass(env: Env, path: str) -> None:
    good = env.issue("tok-style", scope="profile")
    narrow = env.issue("tok-narrow-style", scope="email")
    assert env.get(path, good).status_code == 200
    assert env.get(path, good).json["user"] == "alice"
    assert env.get(path, narrow).status_code == 403
    assert env.get(path).status_code == 401


def test_optional_lets_anonymous_in_but_refuses_bad_tokens(env: Env) -> None:
    assert env.get("/optional").json == {"user": None}
    assert env.get("/optional", "no-such-token").status_code == 401
    assert env.get("/optional", env.issue("tok-opt")).json == {"user": "alice"}


def test_expired_token_is_refused(env: Env) -> None:
    token = env.issue("tok-expired", expires_in=-10)
    response = env.get("/any", token)
    assert response.status_code == 401
    assert response.json == {"error": "invalid_token", "error_description": "token expired"}


def test_revoked_in_database_is_refused(env: Env) -> None:
    token = env.issue("tok-revoked", revoked=True)
    response = env.get("/any", token)
    assert response.status_code == 401
    assert response.json["error_description"] == "token revoked"


def test_orm_commit_that_revokes_evicts_the_cached_token(env: Env) -> None:
    token = env.issue("tok-orm-revoke")
    assert env.get("/any", token).status_code == 200
    assert env.get("/any", token).status_code == 200  # cached
    env.revoke_in_db(token)
    response = env.get("/any", token)
    assert response.status_code == 401
    assert response.json["error_description"] == "token revoked"


def test_protector_revoke_refuses_next_request(env: Env) -> None:
    token = env.issue("tok-api-revoke")
    assert env.get("/any", token).status_code == 200
    env.require_oauth.revoke(token)
    response = env.get("/any", token)
    assert response.status_code == 401
    assert response.json["error_description"] == "token revoked"


def test_token_authenticated_signal_is_sent(env: Env) -> None:
    seen: list[Any] = []

    def receiver(sender: ResourceProtector, token: Any) -> None:
        seen.append((sender, token.access_token))

    token = env.issue("tok-signal")
    with token_authenticated.connected_to(receiver):
        env.get("/any", token)
        env.get("/any", token)
    assert seen == [(env.require_oauth, token)] * 2


def test_current_token_is_per_request(env: Env) -> None:
    alice = env.issue("tok-alice", user="alice")
    bob = env.issue("tok-bob", user="bob")
    for _ in range(2):
        assert env.get("/user", alice).json["name"] == "alice"
        assert env.get("/user", bob).json["name"] == "bob"


def test_view_can_modify_and_commit_its_token_on_a_cache_hit(env: Env) -> None:
    """Writes go to a per-request copy in the session, never the shared cached row."""
    token = env.issue("tok-write")

    @env.app.route("/touch")
    @env.require_oauth()
    def touch() -> Any:
        from bearerguard import current_token

        current_token.scope = "profile email touched"
        db.session.commit()
        return {"scope": current_token.get_scope()}

    assert env.get("/any", token).status_code == 200  # cached now
    assert env.get("/touch", token).json["scope"] == "profile email touched"
    with env.app.app_context():
        stored = db.session.execute(db.select(env.Token).filter_by(access_token=token)).scalar_one()
        assert stored.scope == "profile email touched"
    # The commit evicted the cached row: the next request sees the new scope.
    assert env.get("/any", token).json["scope"] == "profile email touched"


def test_g_does_not_leak_between_requests(env: Env) -> None:
    token = env.issue("tok-g")
    with env.app.test_request_context("/any", headers={"Authorization": f"Bearer {token}"}):
        env.app.preprocess_request()
        env.require_oauth.acquire_token()
        assert g.get("authlib_server_oauth2_token") is not None
    with env.app.test_request_context("/any"):
        assert g.get("authlib_server_oauth2_token") is None


# -- case-insensitive token columns: a case variant is another, unknown token ---------------


def _citext_schema(engine: Any) -> str:
    """Where the citext extension lives (made here if it is not there yet)."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS citext"))
        return str(
            conn.execute(
                text("SELECT extnamespace::regnamespace FROM pg_extension WHERE extname = 'citext'")
            ).scalar_one()
        )


@pytest.fixture(params=["sqlite-nocase", "postgresql-citext"])
def ci_session(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A session on a case-insensitive token column, and its table made."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import scoped_session, sessionmaker
    from sqlalchemy.pool import StaticPool

    from .conftest import PG_URL
    from .models import CaseInsensitiveBase

    urls: Iterator[str] | None = None
    if request.param == "sqlite-nocase":
        engine = create_engine("sqlite://", poolclass=StaticPool)
    else:
        urls = pg_schema_url()
        url = next(urls)
        admin = create_engine(PG_URL)
        extension_schema = _citext_schema(admin)
        admin.dispose()
        engine = create_engine(f"{url}%2C{extension_schema}")
    CaseInsensitiveBase.metadata.create_all(engine)
    session = scoped_session(sessionmaker(engine))
    yield session
    session.remove()
    engine.dispose()
    if urls is not None:
        next(urls, None)


def _ci_app(session: Any, style: str) -> tuple[Any, ResourceProtector]:
    from flask import Flask, jsonify

    from bearerguard import current_token
    from bearerguard.sqla import create_bearer_token_validator
    from bearerguard.validators import BearerTokenValidator

    from .models import CaseInsensitiveToken

    class OwnLookup(BearerTokenValidator):
        """A user's own authenticate_token, as Authlib's docs write it."""

        def authenticate_token(self, token_string: str) -> Any:
            query = session.query(CaseInsensitiveToken)
            return query.filter_by(access_token=token_string).first()

    validator = (
        create_bearer_token_validator(session, CaseInsensitiveToken)()
        if style == "factory"
        else OwnLookup()
    )
    validator.session = session
    protector = ResourceProtector()
    protector.register_token_validator(validator)
    app = Flask(__name__)
    app.teardown_appcontext(lambda _exc: session.remove())

    @app.route("/r")
    @protector("profile")
    def resource() -> Any:
        return jsonify(id=current_token.id)

    return app, protector


@pytest.mark.parametrize("style", ["factory", "subclass"])
def test_a_case_variant_of_a_token_is_refused_as_unknown(ci_session: Any, style: str) -> None:
    from .models import CaseInsensitiveToken

    token = f"tok-AbC-{uuid.uuid4().hex}"
    variant = token.swapcase()
    ci_session.add(
        CaseInsensitiveToken(
            access_token=token, scope="profile", issued_at=int(time.time()), expires_in=3600
        )
    )
    ci_session.commit()
    found = ci_session.query(CaseInsensitiveToken).filter_by(access_token=variant).first()
    assert found is not None, "the column is case-insensitive: the variant finds the row"
    ci_session.remove()
    app, protector = _ci_app(ci_session, style)
    client = app.test_client()

    def status(value: str) -> int:
        return client.get("/r", headers={"Authorization": f"Bearer {value}"}).status_code

    refused = client.get("/r", headers={"Authorization": f"Bearer {variant}"})
    assert refused.status_code == 401
    assert refused.json["error_description"] == "unknown token"
    assert status(token) == 200
    variants = {token.upper(), token.lower(), variant, token[:5] + token[5:].upper()}
    assert all(status(v) == 401 for v in variants)
    assert protector.cache is not None and len(protector.cache) == 1, "one token, one entry"

    protector.revoke(token)  # the variants must not get round it
    assert status(token) == 401
    assert all(status(v) == 401 for v in variants)


# -- roles=/groups= on a model with lazy relationships of those names ---------------------


def test_roles_from_a_lazy_relationship_decide_on_miss_and_hit(env: Env) -> None:
    """``roles`` is an association proxy over a lazy relationship: strings."""
    admin = env.issue("tok-roles-admin", roles=("admin", "reader"))
    reader = env.issue("tok-roles-reader", roles=("reader",))
    for _ in range(2):  # the cache miss, then the cache hit
        response = env.get("/roles", admin)
        assert response.status_code == 200
        assert response.json == {"roles": ["admin", "reader"]}
        refused = env.get("/roles", reader)
        assert refused.status_code == 403
        assert refused.json == {
            "error": "insufficient_scope",
            "error_description": "token lacks a required roles value",
        }
        with env.app.app_context():
            db.session.remove()
    assert env.calls == [admin, reader]


def test_groups_as_related_objects_are_a_clear_403(env: Env) -> None:
    """``groups`` is a relationship to rows, not strings: no value can match."""
    token = env.issue("tok-groups", roles=("admin",))
    for _ in range(2):
        response = env.get("/groups", token)
        assert response.status_code == 403
        assert response.json["error"] == "insufficient_scope"
        assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert env.calls == [token]


# -- the cache holds no raw token for ORM rows ----------------------------------------------


def test_the_cached_row_holds_no_raw_token(env: Env) -> None:
    from sqlalchemy import inspect as sa_inspect

    from bearerguard.core.credentials import digest

    token = env.issue("tok-cached-secret-7f1e")
    refresh = f"refresh-{token}"
    assert env.get("/any", token).status_code == 200
    assert env.require_oauth.cache is not None
    entry = env.require_oauth.cache.peek(digest(token), time.time())
    assert entry is not None
    cached = entry.info.token
    state = sa_inspect(cached)
    assert state.detached
    assert "access_token" not in state.dict and "refresh_token" not in state.dict
    held = repr(vars(cached)) + repr(state.dict) + repr(state.committed_state)
    assert token not in held and refresh not in held
    assert state.dict["scope"] == "profile email", "the other columns are kept"


def test_a_view_reads_the_token_columns_on_a_cache_hit(env: Env) -> None:
    token = env.issue("tok-read-columns")
    expected_refresh = f"refresh-{token}" if hasattr(env.Token, "refresh_token") else None
    for _ in range(3):  # the miss, then hits
        response = env.get("/columns", token)
        assert response.status_code == 200
        assert response.json == {"access_token": token, "refresh_token": expected_refresh}
    assert env.calls == [token]


def test_a_view_that_deletes_its_token_on_a_cache_hit_evicts_it(env: Env) -> None:
    """Logout: the deleted row's token, not in the cached copy, is read for eviction."""
    token = env.issue("tok-logout")
    assert env.get("/any", token).status_code == 200  # cached now
    client = env.app.test_client()
    response = client.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204
    refused = env.get("/any", token)
    assert refused.status_code == 401
    assert refused.json["error_description"] == "unknown token"


def test_cached_rows_share_a_repeated_scope_set_and_one_reattach_never_other_scopes(
    env: Env,
) -> None:
    """Cached rows that repeat a scope string hold one set of it, and a
    validator's rows one re-attach: two objects fewer per cached row for the
    collector to walk, and less memory. A row with other scopes keeps its own."""
    from bearerguard.core.credentials import digest

    wide = [env.issue(f"tok-share-{i}", scope="profile email") for i in range(2)]
    narrow = env.issue("tok-share-narrow", scope="profile")
    for token in (*wide, narrow):
        assert env.get("/any", token).status_code == 200  # each one cached
    cache = env.require_oauth.cache
    assert cache is not None
    entries = [cache.peek(digest(token), time.time()) for token in (*wide, narrow)]
    infos = [entry.info for entry in entries if entry is not None]
    assert len(infos) == 3
    assert infos[0].scopes is infos[1].scopes
    assert infos[0].scopes == {"profile", "email"} and infos[2].scopes == {"profile"}
    assert infos[0].reattach is not None
    assert infos[0].reattach is infos[1].reattach is infos[2].reattach
    # Shared, and answered from the cache alike: "/and" asks for both scopes.
    assert [env.get("/and", token).status_code for token in (*wide, narrow)] == [200, 200, 403]
    assert env.get("/user", narrow).json["name"] == "alice"  # a lazy read, re-attached
    assert sorted(env.calls) == sorted([*wide, narrow])


def test_a_deferred_column_stays_unloaded_on_the_cached_copy_and_reads_on_a_hit() -> None:
    """A deferred column is not in the row the query loads: the cached copy
    lacks it too (never a None in its place), and a view that reads it on a
    cache hit gets the stored value through the re-attach."""
    from flask import Flask, jsonify
    from flask_sqlalchemy import SQLAlchemy
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import deferred

    from bearerguard import current_token
    from bearerguard.core.credentials import digest
    from bearerguard.sqla import create_bearer_token_validator

    own = SQLAlchemy()

    class NotedToken(own.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "bg_noted_token"
        id = own.Column(own.Integer, primary_key=True)
        access_token = own.Column(own.String(255), unique=True, nullable=False)
        scope = own.Column(own.Text, default="")
        issued_at = own.Column(own.Integer, nullable=False)
        expires_in = own.Column(own.Integer, nullable=False)
        notes = deferred(own.Column(own.Text))

        def get_scope(self) -> str:
            return self.scope  # type: ignore[no-any-return]

        def get_expires_at(self) -> int:
            return self.issued_at + self.expires_in  # type: ignore[no-any-return]

    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    own.init_app(app)
    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(create_bearer_token_validator(own.session, NotedToken)())

    @app.route("/notes")
    @require_oauth("profile")
    def notes() -> Any:
        return jsonify(notes=current_token.notes, scope=current_token.scope)

    token = "tok-deferred-" + uuid.uuid4().hex
    with app.app_context():
        own.create_all()
        own.session.add(
            NotedToken(
                access_token=token,
                scope="profile",
                issued_at=int(time.time()),
                expires_in=3600,
                notes="kept in the database",
            )
        )
        own.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    first = client.get("/notes", headers=headers)  # the miss
    assert first.status_code == 200
    assert first.json == {"notes": "kept in the database", "scope": "profile"}
    assert require_oauth.cache is not None
    entry = require_oauth.cache.peek(digest(token), time.time())
    assert entry is not None
    state = sa_inspect(entry.info.token)
    assert state.detached
    assert "notes" not in state.dict and "access_token" not in state.dict
    assert state.dict["scope"] == "profile"
    hit = client.get("/notes", headers=headers)
    assert hit.status_code == 200
    assert hit.json == {"notes": "kept in the database", "scope": "profile"}
    assert "notes" not in sa_inspect(entry.info.token).dict, "the cached copy stays as it was"
    with app.app_context():
        own.session.remove()
        own.engine.dispose()
