"""The error tree: every refusal bearerguard makes, with its HTTP meaning.

Each class carries its status code, its RFC 6750 ``error`` code and a safe,
fixed ``description`` (never an echo of the request), and renders its own
JSON body and ``WWW-Authenticate`` challenge. The classes subclass Authlib's
:class:`~authlib.oauth2.OAuth2Error`, so code ported from Authlib that catches
``OAuth2Error`` keeps working.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2 import OAuth2Error
from werkzeug.http import quote_header_value

__all__ = [
    "BearerGuardError",
    "InsufficientScopeError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MissingTokenError",
    "SigningKeysUnavailableError",
    "TokenExpiredError",
    "TokenRevokedError",
    "UnknownTokenError",
    "ValidatorUnavailableError",
]


def _quoted(value: str) -> str:
    # Werkzeug's WWWAuthenticate leaves token-like values bare (realm=api), but
    # RFC 7235 §2.2 says a sender MUST quote realm, and RFC 6750's examples
    # quote every attribute, which is what clients parse. So quote always, with
    # Werkzeug's escaping of '"' and '\'.
    return quote_header_value(value, allow_token=False)


class BearerGuardError(OAuth2Error):  # type: ignore[misc]
    """Base of every refusal. Renders itself as an RFC 6750 response."""

    status_code: int = 401
    error: str | None = "invalid_token"
    description: str = "The access token is invalid."
    #: False for refusals caused by an outage, which the cache must not remember.
    cacheable: bool = True

    def __init__(self, description: str | None = None, *, scope: str | None = None) -> None:
        super().__init__(description=description or self.description)
        self.scope = scope

    def get_body(self) -> list[tuple[str, Any]]:
        """The JSON body as pairs: ``error`` and ``error_description``."""
        return [("error", self.error or "unauthorized"), ("error_description", self.description)]

    def challenge(self, realm: str | None) -> str | None:
        """The ``WWW-Authenticate`` value, or None where none is sent."""
        params: list[tuple[str, str]] = []
        if realm:
            params.append(("realm", realm))
        if self.error:
            params.append(("error", self.error))
            params.append(("error_description", self.description))
        if self.scope:
            params.append(("scope", self.scope))
        if not params:
            return "Bearer"
        return "Bearer " + ", ".join(f"{k}={_quoted(v)}" for k, v in params)

    def get_headers(self, realm: str | None = None) -> list[tuple[str, str]]:
        """Headers for the response: no caching, and the challenge."""
        headers = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]
        value = self.challenge(realm)
        if value is not None:
            headers.append(("WWW-Authenticate", value))
        return headers

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.error!r}, {self.description!r})"


class MissingTokenError(BearerGuardError):
    """No credentials at all: 401 with a bare challenge (RFC 6750 §3.1)."""

    error = None
    description = "The request carries no access token."

    def get_body(self) -> list[tuple[str, Any]]:
        # Authlib's name for this case, kept so ported clients keep parsing it.
        return [("error", "missing_authorization"), ("error_description", self.description)]


class InvalidRequestError(BearerGuardError):
    """Malformed credentials or request: 400 invalid_request."""

    status_code = 400
    error = "invalid_request"
    description = "The request is malformed."


class InvalidTokenError(BearerGuardError):
    """The token is unknown, expired, revoked or malformed: 401 invalid_token."""

    description = "The access token is invalid."


class UnknownTokenError(InvalidTokenError):
    description = "unknown token"


class TokenExpiredError(InvalidTokenError):
    description = "token expired"


class TokenRevokedError(InvalidTokenError):
    description = "token revoked"


class InsufficientScopeError(BearerGuardError):
    """The token is valid but lacks what the view needs: 403 insufficient_scope."""

    status_code = 403
    error = "insufficient_scope"
    description = "The access token lacks the scope this resource needs."


class ValidatorUnavailableError(BearerGuardError):
    """A validator's backend (database, JWKS, introspection) cannot answer.

    Fails closed with 503 and ``Retry-After``; never cached as an invalid token,
    so the first request after the backend recovers succeeds.
    """

    status_code = 503
    error = "temporarily_unavailable"
    cacheable = False
    description = "The token cannot be checked right now."
    retry_after = 5

    def get_headers(self, realm: str | None = None) -> list[tuple[str, str]]:
        headers = super().get_headers(realm)
        headers.append(("Retry-After", str(self.retry_after)))
        return headers

    def challenge(self, realm: str | None) -> str | None:
        return None


class SigningKeysUnavailableError(ValidatorUnavailableError):
    """No signing keys could be had (JWKS endpoint down, none fetched yet).

    An outage, not a verdict on the token: 503 with ``Retry-After`` and never
    cached, as for every backend, since many clients throw a token away on a
    401. A ``kid`` missing from a key set that is at hand stays a 401.
    """

    description = "signing keys unavailable"
