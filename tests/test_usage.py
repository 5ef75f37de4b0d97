"""The documented Authlib usage, run literally on SQLite and PostgreSQL.

Every test runs over each database x token model x validator style through
the parametrized ``env`` fixture.
"""

from __future__ import annotations

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
