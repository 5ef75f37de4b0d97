"""The resource-server usage Authlib documents for Flask, with bearerguard imports.

Two token models: the seed-era one (a ``revoked`` boolean, ``get_expires_at``)
and Authlib 1.x's ``OAuth2TokenMixin``. Two ways to build the validator: the
documented subclass (``Token.query``) and ``create_bearer_token_validator``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from authlib.integrations.sqla_oauth2 import OAuth2TokenMixin
from flask import Flask, jsonify
from flask.views import MethodView
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.ext.associationproxy import association_proxy
from sqlalchemy.orm import relationship

from bearerguard import ResourceProtector, current_token
from bearerguard.sqla import create_bearer_token_validator
from bearerguard.validators import BearerTokenValidator

db = SQLAlchemy()


class User(db.Model):  # type: ignore[name-defined]
    __tablename__ = "bg_user"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(40))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}


class Grant(db.Model):  # type: ignore[name-defined]
    """A role granted to a token, in a table of its own (either token model)."""

    __tablename__ = "bg_grant"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(40), nullable=False)
    seed_token_id = db.Column(db.ForeignKey("bg_seed_token.id"))
    mixin_token_id = db.Column(db.ForeignKey("bg_mixin_token.id"))


class SeedToken(db.Model):  # type: ignore[name-defined]
    """The seed-era model: a ``revoked`` flag, expiry from issued_at + expires_in."""

    __tablename__ = "bg_seed_token"
    id = db.Column(db.Integer, primary_key=True)
    access_token = db.Column(db.String(255), unique=True, nullable=False)
    scope = db.Column(db.Text, default="")
    revoked = db.Column(db.Boolean, default=False)
    issued_at = db.Column(db.Integer, nullable=False)
    expires_in = db.Column(db.Integer, nullable=False, default=0)
    user_id = db.Column(db.ForeignKey(User.id))
    user = relationship(User)
    #: Lazy relationships named like RFC 9068's claims: objects, and their names.
    groups = relationship(Grant, foreign_keys=[Grant.seed_token_id])
    roles = association_proxy("groups", "name")

    def get_scope(self) -> str:
        return self.scope  # type: ignore[no-any-return]

    def get_expires_at(self) -> int:
        return self.issued_at + self.expires_in  # type: ignore[no-any-return]


class MixinToken(db.Model, OAuth2TokenMixin):  # type: ignore[name-defined,misc]
    """Authlib 1.x's model: access_token_revoked_at, issued_at + expires_in."""

    __tablename__ = "bg_mixin_token"
    id = db.Column(db.Integer, primary_key=True)
    user_id = db.Column(db.ForeignKey(User.id))
    user = relationship(User)
    groups = relationship(Grant, foreign_keys=[Grant.mixin_token_id])
    roles = association_proxy("groups", "name")


MODELS = {"seed": SeedToken, "mixin": MixinToken}


def literal_validator(Token: Any) -> type[BearerTokenValidator]:
    """The documented subclass, as written in Authlib's docs (issue 2)."""

    class MyBearerTokenValidator(BearerTokenValidator):
        def authenticate_token(self, token_string):  # type: ignore[no-untyped-def]
            return Token.query.filter_by(access_token=token_string).first()

        def request_invalid(self, request):  # type: ignore[no-untyped-def]
            return False

        def token_revoked(self, token):  # type: ignore[no-untyped-def]
            return token.revoked if hasattr(token, "revoked") else token.is_revoked()

    return MyBearerTokenValidator


@dataclass
class Env:
    app: Flask
    require_oauth: ResourceProtector
    Token: Any
    calls: list[str]

    def issue(
        self,
        value: str,
        scope: str = "profile email",
        *,
        expires_in: int = 3600,
        revoked: bool = False,
        user: str = "alice",
        roles: tuple[str, ...] = (),
    ) -> str:
        with self.app.app_context():
            owner = db.session.execute(db.select(User).filter_by(name=user)).scalar_one_or_none()
            if owner is None:
                owner = User(name=user)
                db.session.add(owner)
            token = self.Token(access_token=value, scope=scope, user=owner)
            token.groups = [Grant(name=role) for role in roles]
            if hasattr(self.Token, "refresh_token"):
                token.refresh_token = f"refresh-{value}"
            token.issued_at, token.expires_in = int(time.time()), expires_in
            if revoked:
                self.set_revoked(token)
            db.session.add(token)
            db.session.commit()
        return value

    def set_revoked(self, token: Any) -> None:
        if hasattr(token, "revoked"):
            token.revoked = True
        else:
            token.access_token_revoked_at = int(time.time())

    def revoke_in_db(self, value: str) -> None:
        with self.app.app_context():
            token = db.session.execute(
                db.select(self.Token).filter_by(access_token=value)
            ).scalar_one()
            self.set_revoked(token)
            db.session.commit()

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.app.test_client().get(path, headers=headers, **kwargs)


def build(database_url: str, model: str, style: str, **protector_options: Any) -> Env:
    """A Flask app with every documented decorator form, on a fresh schema."""
    Token = MODELS[model]
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url
    db.init_app(app)
    with app.app_context():
        db.drop_all()
        db.create_all()

    require_oauth = ResourceProtector(**protector_options)
    calls: list[str] = []
    if style == "literal":
        base = literal_validator(Token)
    else:
        base = create_bearer_token_validator(db.session, Token)

    class Counting(base):  # type: ignore[valid-type,misc]
        def authenticate_token(self, token_string: str) -> Any:
            calls.append(token_string)
            return super().authenticate_token(token_string)

    require_oauth.register_token_validator(Counting())

    @app.route("/user")
    @require_oauth("profile")
    def user_profile() -> Any:
        return jsonify(current_token.user.to_dict())

    @app.route("/any")
    @require_oauth()
    def any_token() -> Any:
        return jsonify(scope=current_token.get_scope())

    @app.route("/none")
    @require_oauth(None)
    def none_scope() -> Any:
        return jsonify(ok=True)

    @app.route("/and")
    @require_oauth("profile email", "AND")
    def both() -> Any:
        return jsonify(ok=True)

    @app.route("/or")
    @require_oauth("profile email", "OR")
    def either() -> Any:
        return jsonify(ok=True)

    def scope_operator(token_scopes: set[str], resource_scopes: set[str]) -> bool:
        return "admin" in token_scopes or resource_scopes <= token_scopes

    @app.route("/custom")
    @require_oauth("profile email", scope_operator)
    def custom() -> Any:
        return jsonify(ok=True)

    @app.route("/list")
    @require_oauth(["profile email", "admin"])
    def listed() -> Any:
        return jsonify(ok=True)

    @app.route("/columns")
    @require_oauth()
    def columns() -> Any:
        return jsonify(
            access_token=current_token.access_token,
            refresh_token=getattr(current_token, "refresh_token", None),
        )

    @app.route("/logout", methods=["POST"])
    @require_oauth()
    def logout() -> Any:
        db.session.delete(require_oauth.acquire_token())
        db.session.commit()
        return "", 204

    @app.route("/roles")
    @require_oauth(roles=["admin", "ops"])
    def roles() -> Any:
        return jsonify(roles=sorted(current_token.roles))

    @app.route("/groups")
    @require_oauth(groups="admin")
    def groups() -> Any:
        return jsonify(ok=True)

    @app.route("/acquire")
    def acquire() -> Any:
        with require_oauth.acquire("profile") as token:
            return jsonify(user=token.user.name)

    @app.route("/optional")
    @require_oauth("profile", optional=True)
    def optional() -> Any:
        return jsonify(user=current_token.user.name if current_token else None)

    @app.route("/async")
    @require_oauth("profile")
    async def async_view() -> Any:
        return jsonify(user=current_token.user.name)

    class UserAPI(MethodView):
        decorators = [require_oauth("profile")]

        def get(self) -> Any:
            return jsonify(user=current_token.user.name)

    app.add_url_rule("/methodview", view_func=UserAPI.as_view("methodview"))

    from flask_restful import Api, Resource

    class RestfulUser(Resource):  # type: ignore[misc]
        method_decorators = [require_oauth("profile")]

        def get(self) -> Any:
            return {"user": current_token.user.name}

    Api(app).add_resource(RestfulUser, "/restful")
    return Env(app, require_oauth, Token, calls)
