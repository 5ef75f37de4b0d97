"""An app shaped like Authlib's own resource-server tests, on bearerguard.

Authlib 1.x's token model (``OAuth2TokenMixin``: ``issued_at`` +
``expires_in``, ``access_token_revoked_at``), a user behind a lazy
relationship, and the views Authlib's tests protect: by scope, by a list of
scopes (AND inside a string, OR between strings), bare, optional, and the
``acquire`` with-statement.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from authlib.integrations.sqla_oauth2 import OAuth2TokenMixin
from flask import Flask, jsonify
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import relationship

from bearerguard import ResourceProtector, current_token
from bearerguard.sqla import create_bearer_token_validator

from .conftest import pg_schema_url

db = SQLAlchemy()


class DropinUser(db.Model):  # type: ignore[name-defined]
    __tablename__ = "dropin_user"
    id = db.Column(db.Integer, primary_key=True)
    username = db.Column(db.String(40), unique=True, nullable=False)


class DropinToken(db.Model, OAuth2TokenMixin):  # type: ignore[name-defined,misc]
    __tablename__ = "dropin_token"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.ForeignKey(DropinUser.id, ondelete="CASCADE"))
    user = relationship(DropinUser)


class FlaggedToken(db.Model, OAuth2TokenMixin):  # type: ignore[name-defined,misc]
    """A model with its own ``is_expired()``, which must decide over
    ``issued_at + expires_in`` (Authlib's validator asks only is_expired)."""

    __tablename__ = "dropin_flagged_token"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.ForeignKey(DropinUser.id, ondelete="CASCADE"))
    user = relationship(DropinUser)
    expired = db.Column(db.Boolean, default=False, nullable=False)

    def is_expired(self) -> bool:
        return bool(self.expired)


@dataclass
class World:
    """One app, one protector, one database; ``calls`` counts token lookups."""

    app: Flask
    protector: ResourceProtector
    calls: list[str] = field(default_factory=list)

    @property
    def client(self) -> FlaskClient:
        return self.app.test_client()

    def issue(
        self,
        value: str,
        scope: str = "profile",
        *,
        expires_in: int = 3600,
        model: type[Any] = DropinToken,
        **columns: Any,
    ) -> str:
        with self.app.app_context():
            user = db.session.execute(db.select(DropinUser)).scalars().first()
            if user is None:
                user = DropinUser(username="foo")
            db.session.add(
                model(
                    user=user,
                    client_id="client-id",
                    token_type="bearer",
                    access_token=value,
                    scope=scope,
                    issued_at=int(time.time()),
                    expires_in=expires_in,
                    **columns,
                )
            )
            db.session.commit()
        return value

    def update(self, value: str, model: type[Any] = DropinToken, **columns: Any) -> None:
        """Change a token row through the ORM (so its cache entry is evicted)."""
        with self.app.app_context():
            row = db.session.execute(db.select(model).filter_by(access_token=value)).scalar_one()
            for name, column_value in columns.items():
                setattr(row, name, column_value)
            db.session.commit()

    def get(self, path: str, authorization: str | None = None) -> Any:
        headers = {} if authorization is None else {"Authorization": authorization}
        return self.client.get(path, headers=headers)

    def bearer(self, path: str, token: str) -> Any:
        return self.get(path, f"Bearer {token}")


Build = Callable[..., World]


def _routes(app: Flask, require_oauth: ResourceProtector) -> None:
    @app.route("/user")
    @require_oauth("profile")
    def user_profile() -> Any:
        return jsonify(id=current_token.user.id, username=current_token.user.username)

    @app.route("/user/email")
    @require_oauth("email")
    def user_email() -> Any:
        return jsonify(email=current_token.user.username + "@example.com")

    @app.route("/info")
    @require_oauth()
    def public_info() -> Any:
        return jsonify(status="ok")

    @app.route("/no-parens")
    @require_oauth
    def no_parens() -> Any:
        return jsonify(status="ok")

    @app.route("/operator-and")
    @require_oauth(["profile email"])
    def operator_and() -> Any:
        return jsonify(status="ok")

    @app.route("/operator-or")
    @require_oauth(["profile", "email"])
    def operator_or() -> Any:
        return jsonify(status="ok")

    @app.route("/scopes-keyword")
    @require_oauth(scopes=["email"])
    def scopes_keyword() -> Any:
        return jsonify(status="ok")

    @app.route("/acquire")
    def acquire() -> Any:
        with require_oauth.acquire("profile") as token:
            return jsonify(id=token.user.id, username=token.user.username)

    @app.route("/acquire-keyword")
    def acquire_keyword() -> Any:
        with require_oauth.acquire(scopes=["email"]) as token:
            return jsonify(username=token.user.username)

    @app.route("/optional")
    @require_oauth("profile", optional=True)
    def optional() -> Any:
        if current_token:
            return jsonify(id=current_token.user.id, username=current_token.user.username)
        return jsonify(id=0, username="anonymous")


def make_world(database_url: str, validator: Any = None, **protector_options: Any) -> World:
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    with app.app_context():
        db.drop_all()
        db.create_all()
    require_oauth = ResourceProtector(**protector_options)
    world = World(app, require_oauth)
    if validator is None:
        base = create_bearer_token_validator(db.session, DropinToken)

        class Counting(base):  # type: ignore[valid-type,misc]
            def authenticate_token(self, token_string: str) -> Any:
                world.calls.append(token_string)
                return super().authenticate_token(token_string)

        validator = Counting()
    require_oauth.register_token_validator(validator)
    _routes(app, require_oauth)
    return world


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite://"
    else:
        yield from pg_schema_url()


@pytest.fixture
def build(database_url: str) -> Iterator[Build]:
    """``build(validator=None, **protector_options)``: a fresh world on this database."""
    worlds: list[World] = []

    def make(validator: Any = None, **protector_options: Any) -> World:
        world = make_world(database_url, validator, **protector_options)
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        with world.app.app_context():
            db.session.remove()
            db.engine.dispose()
        world.protector.revocations.close()
