"""The Authlib-compatible validator for opaque tokens looked up in a store.

Code written for Authlib's ``BearerTokenValidator`` ports by changing the
import: the hooks ``authenticate_token``, ``request_invalid`` and
``token_revoked`` keep their meaning.
"""

from __future__ import annotations

import hmac
from typing import Any

from .._log import logger, throttled
from ..errors import (
    BearerGuardError,
    TokenExpiredError,
    TokenRevokedError,
    UnknownTokenError,
    ValidatorUnavailableError,
)
from .base import TokenInfo, TokenValidator, describe_token, is_expired

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

    def bind(self, protector: Any) -> None:
        self._protector = protector
        self.clock = protector.clock

    def validate(self, token_string: str) -> TokenInfo:
        try:
            return self._lookup(token_string)
        except BearerGuardError:
            raise
        except Exception as exc:  # the database, or a hook of the user's
            self.backend_failed(exc)
        # Raised outside the handler, so the 503 has no __cause__ and no
        # __context__: a driver's error quotes the SQL parameters, the token
        # among them, and a handler logging with exc_info prints both.
        raise ValidatorUnavailableError()

    def _lookup(self, token_string: str) -> TokenInfo:
        token = self.authenticate_token(token_string)
        if not token or not self.token_matches(token, token_string):
            raise UnknownTokenError()
        info = describe_token(token)
        if is_expired(info, self.clock()):
            raise TokenExpiredError()
        if self.token_revoked(token):
            raise TokenRevokedError()
        if hasattr(type(token), "__mapper__"):
            from .. import sqla  # only reached when SQLAlchemy is installed

            info = sqla.prepare_cached_row(self, info, getattr(self, "_protector", None))
        return info

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
