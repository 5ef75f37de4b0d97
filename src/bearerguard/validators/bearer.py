"""The Authlib-compatible validator for opaque tokens looked up in a store.

Code written for Authlib's ``BearerTokenValidator`` ports by changing the
import: Authlib 1.x's hooks (``authenticate_token``, ``validate_request``,
``validate_token``, ``scope_insufficient``) and the seed's
(``request_invalid``, ``token_revoked``) keep their meaning.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from .._log import logger, throttled
from ..core.hooks import call_hook
from ..core.tokeninfo import prepare_shared
from ..errors import (
    InsufficientScopeError,
    TokenExpiredError,
    TokenRevokedError,
    UnknownTokenError,
)

if TYPE_CHECKING:
    from ..core.guard import Guard

from .base import TokenInfo, TokenValidator, describe_token, scope_text, unexpired

__all__ = ["BearerTokenValidator"]


class BearerTokenValidator(TokenValidator):
    """Validate opaque bearer tokens with a lookup you write.

    Example::

        class MyBearerTokenValidator(BearerTokenValidator):
            def authenticate_token(self, token_string):
                return Token.query.filter_by(access_token=token_string).first()

            def token_revoked(self, token):
                return token.revoked

        require_oauth.register_token_validator(MyBearerTokenValidator())

    A backend that raises (database down) gives 503, never 500 and never an
    "invalid token" that would be cached. For SQLAlchemy rows, set ``session``
    (a ``scoped_session`` or Flask-SQLAlchemy's ``db.session``) unless the model
    is a Flask-SQLAlchemy model, which knows its session already; bearerguard
    then re-attaches cached rows so lazy relationships load on a cache hit.
    """

    kind = "opaque"
    #: The session cached ORM rows are re-attached to; None: infer it.
    session: Any = None
    #: The model attribute holding the token string: compared with the token
    #: presented (see :meth:`token_matches`), and the key of ORM-event eviction.
    token_attribute: str = "access_token"

    def authenticate_token(self, token_string: str) -> Any:
        """Return the token for ``token_string``, or None when it is unknown.

        A row whose ``token_attribute`` is not exactly ``token_string`` (found
        through a case-insensitive column) is refused as unknown.
        """
        raise NotImplementedError

    def request_invalid(self, request: Any) -> bool:
        """Return True to refuse the request with 400 invalid_request."""
        return False

    def token_revoked(self, token: Any) -> bool:
        """True when the stored token is revoked (``is_revoked()`` or ``revoked``)."""
        check = getattr(token, "is_revoked", None)
        if callable(check):
            return bool(check())
        return bool(getattr(token, "revoked", False))

    def bind(self, guard: Guard) -> None:
        self._guard: Guard | None = guard
        self.clock = guard.clock

    def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
        """Authlib's checks, for an override that calls ``super()``: a token was
        found, it is not expired (its ``is_expired()`` if the model has one) nor
        revoked, and :meth:`scope_insufficient` is satisfied."""
        if not token:
            raise UnknownTokenError()
        if unexpired(describe_token(token), self.clock()) is None:
            raise TokenExpiredError()
        if self.token_revoked(token):
            raise TokenRevokedError()
        if self.scope_insufficient(scope_text(token), scopes):
            raise InsufficientScopeError()

    def validate(self, token_string: str) -> TokenInfo:
        # Every hook behind the one guard: a refusal it raises is its answer,
        # anything else a 503. The router runs validate itself behind it; the
        # backend's hooks get their own, which rolls the session back.
        token = call_hook(self.authenticate_token, token_string, on_failure=self.backend_failed)
        if not token or not self.token_matches(token, token_string):
            raise UnknownTokenError()
        live = unexpired(describe_token(token), self.clock())  # reads the user's model
        if live is None:
            raise TokenExpiredError()
        info = live
        if call_hook(self.token_revoked, token, on_failure=self.backend_failed):
            raise TokenRevokedError()
        # An ORM row is made safe to share (bearerguard.sqla): that reads the
        # row's roles/groups/entitlements, model code, so behind the guard.
        guard = getattr(self, "_guard", None)  # None until registered
        return call_hook(prepare_shared, self, info, guard, on_failure=self.backend_failed)

    def token_matches(self, token: Any, token_string: str) -> bool:
        """False when the token found holds another string than the one presented.

        A case-insensitive column (MySQL's default collations, PostgreSQL
        ``citext``, SQLite ``NOCASE``) finds ``tok-AbC``'s row for ``TOK-aBc``:
        a variant would slip past ``revoke()`` and ORM eviction (keyed by the
        exact string) and turn one token into 2^k cache entries. So the
        ``token_attribute`` of what :meth:`authenticate_token` returns, when it
        is a string, must equal ``token_string`` exactly (compared in constant
        time). Override it if that attribute holds something else, a digest say.
        """
        stored = getattr(token, self.token_attribute, None)
        if not isinstance(stored, str):
            return True  # not a row that says its token (a mapping, an object)
        if hmac.compare_digest(stored.encode(), token_string.encode()):
            return True
        throttled(
            f"token-mismatch:{type(self).__name__}",
            "%s found a row whose %s differs from the token presented "
            "(a case-insensitive column?); refused",
            type(self).__name__,
            self.token_attribute,
        )
        return False

    def backend_failed(self, exc: BaseException) -> None:
        """Log a backend failure (once per interval) and let the backend recover."""
        # Only the exception's type: a database error's text quotes the SQL
        # parameters, which would put the token string in the log.
        throttled(
            f"validator:{type(self).__name__}",
            "%s backend failed (%s); answering 503",
            type(self).__name__,
            type(exc).__name__,
        )
        rollback = getattr(self.session, "rollback", None)
        if callable(rollback):
            try:
                rollback()
            except Exception as exc:  # the session may be as broken as its backend
                # Its type only: with exc_info, the backend's error (the one
                # being handled, quoting the token) would be logged as context.
                logger.debug("rollback after backend failure failed (%s)", type(exc).__name__)
