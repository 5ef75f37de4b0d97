"""The error tree: every refusal bearerguard makes, with its HTTP meaning.

Each class carries its status code, its RFC 6750 ``error`` code and a safe,
fixed ``description`` (never an echo of the request), and renders its own
JSON body and ``WWW-Authenticate`` challenge. The classes subclass Authlib's
:class:`~authlib.oauth2.OAuth2Error`, and each refusal Authlib has a class for
is also an instance of that class (``InvalidTokenError``,
``InsufficientScopeError``, ``MissingAuthorizationError``,
``UnsupportedTokenTypeError``), so ``except`` clauses and
``raise_error_response`` overrides ported from Authlib keep working. A
description a user's hook writes may hold any text: it is rendered in RFC
6750's character set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError as _AuthlibInvalidRequest
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError as _AuthlibMissing
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError as _AuthlibUnsupported
from authlib.oauth2.rfc6750.errors import InsufficientScopeError as _AuthlibInsufficient
from authlib.oauth2.rfc6750.errors import InvalidTokenError as _AuthlibInvalidToken

__all__ = [
    "BearerGuardError",
    "InsufficientScopeError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MissingTokenError",
    "SigningKeysUnavailableError",
    "TokenExpiredError",
    "TokenRevokedError",
    "UnknownTokenError",
    "UnsupportedTokenTypeError",
    "UseDPoPNonceError",
    "ValidatorUnavailableError",
]

_NO_ATTRIBUTES: Mapping[str, str] = MappingProxyType({})


#: Outside RFC 6750 §3's set for error_description (%x20-21 / %x23-5B / %x5D-7E).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _safe_char(match: re.Match[str]) -> str:
    return "'" if match.group() == '"' else "?"


def _safe_text(value: str) -> str:
    """``value`` in RFC 6750's character set: ``"`` becomes ``'``, the rest of
    what is outside it (``\\``, controls, CR/LF, non-ASCII) becomes ``?``.

    CR/LF in a header value is response splitting (Werkzeug refuses it with an
    error, a 500); a quote or a backslash breaks clients' parsing of the
    quoted-string.
    """
    if _UNSAFE.search(value) is None:
        return value
    return _UNSAFE.sub(_safe_char, value)


def _quoted(value: str) -> str:
    """``value`` as an RFC 7230 §3.2.6 ``quoted-string``: ``\\`` and ``"``
    escaped with a backslash, the whole in double quotes.

    Always quoted: Werkzeug's WWWAuthenticate leaves token-like values bare
    (realm=api), but RFC 7235 §2.2 says a sender MUST quote realm, and RFC
    6750's examples quote every attribute, which is what clients parse.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class BearerGuardError(OAuth2Error):  # type: ignore[misc]
    """Base of every refusal. Renders itself as an RFC 6750 response."""

    status_code: int = 401
    error: str | None = "invalid_token"
    description: str = "The access token is invalid."
    #: False for refusals caused by an outage, which the cache must not remember.
    cacheable: bool = True
    #: The challenge's ``realm`` and extra attributes (Authlib's names); the
    #: protector fills them in from the validator, or its own ``realm``.
    realm: str | None = None
    extra_attributes: Mapping[str, str] = _NO_ATTRIBUTES
    #: The DPoP challenge's ``algs`` (RFC 9449 §7.1), set by the guard when the
    #: DPoP scheme is offered for this refusal; None: no DPoP challenge.
    dpop_algs: str | None = None
    #: True when the refused request used the DPoP scheme: its challenge
    #: carries the error, a Bearer one (if accepted) is bare.
    dpop_request: bool = False
    #: False when the view takes DPoP only: no Bearer challenge then.
    bearer_accepted: bool = True
    #: The absolute URL of the resource's metadata (RFC 9728 §5.1), set by the guard.
    resource_metadata: str | None = None

    def __init__(
        self,
        description: str | None = None,
        uri: str | None = None,
        status_code: int | None = None,
        state: str | None = None,
        *,
        realm: str | None = None,
        extra_attributes: Mapping[str, str] | None = None,
        scope: str | None = None,
    ) -> None:
        # Authlib's positional order, so ported ``raise InvalidTokenError(...)``
        # lines work. The description is not handed to Authlib's constructor,
        # which raises ValueError for characters RFC 6749 does not allow: a
        # refusal must never turn into a 500; rendering makes it safe instead.
        super().__init__()
        if description:
            self.description = description
            self.args = (f"{self.error}: {description}",)  # str(error), as Authlib's
        if uri is not None:
            self.uri = uri
        if status_code is not None:
            self.status_code = status_code
        self.state = state
        if realm is not None:
            self.realm = realm
        if extra_attributes:
            self.extra_attributes = extra_attributes
        self.scope = scope

    def get_body(self) -> list[tuple[str, Any]]:
        """The JSON body as pairs: ``error`` and ``error_description``."""
        return [
            ("error", self.error or "unauthorized"),
            ("error_description", _safe_text(self.description)),
        ]

    def get_error_description(self) -> str:
        return _safe_text(self.description)

    def challenge(self, realm: str | None) -> str | None:
        """The ``WWW-Authenticate`` value, or None where none is sent."""
        params: list[tuple[str, str]] = []
        if realm:
            params.append(("realm", realm))
        if self.error:
            params.append(("error", self.error))
            params.append(("error_description", _safe_text(self.description)))
        if self.scope:
            params.append(("scope", _safe_text(self.scope)))
        params.extend((name, _safe_text(value)) for name, value in self.extra_attributes.items())
        if self.resource_metadata:
            params.append(("resource_metadata", _safe_text(self.resource_metadata)))
        if not params:
            return "Bearer"
        return "Bearer " + ", ".join(f"{k}={_quoted(v)}" for k, v in params)

    def get_headers(self, realm: str | None = None) -> list[tuple[str, str]]:
        """Headers for the response: JSON, no caching, and the challenge.

        ``realm`` defaults to the error's own, so Authlib-style code calling
        ``error.get_headers()`` gets the same challenge as the protector sends.
        """
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", "no-store"),
            ("Pragma", "no-cache"),
        ]
        realm = realm if realm is not None else self.realm
        value = self.challenge(realm)
        if value is not None and self.dpop_algs is not None:
            value = self._with_dpop(realm, value)
        if value is not None:
            headers.append(("WWW-Authenticate", value))
        return headers

    def _with_dpop(self, realm: str | None, bearer: str) -> str:
        """``bearer`` and the DPoP challenge, as one list (RFC 9110 §11.6.1)."""
        params: list[tuple[str, str]] = [("realm", realm)] if realm else []
        bare = type(self).challenge is _bare_challenge or not self.error
        if self.dpop_request and not bare:
            params += [
                ("error", self.error or ""),
                ("error_description", _safe_text(self.description)),
            ]
            if self.scope:
                params.append(("scope", _safe_text(self.scope)))
            bearer = _bare_challenge(self, realm) or "Bearer"
        if self.resource_metadata:  # RFC 9728 §5.1: on every challenge
            params.append(("resource_metadata", _safe_text(self.resource_metadata)))
        params.append(("algs", self.dpop_algs or ""))
        dpop = "DPoP " + ", ".join(f"{k}={_quoted(v)}" for k, v in params)
        return f"{bearer}, {dpop}" if self.bearer_accepted else dpop

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, {self.error!r}, {self.description!r})"


def _bare_challenge(self: BearerGuardError, realm: str | None) -> str | None:
    # RFC 6750 §3.1: a request without (bearer) credentials gets no error code
    # in the challenge; the body keeps Authlib's code for ported clients.
    # RFC 9728 §5.1: but it does get resource_metadata, discovery's first step.
    params = [("realm", realm)] if realm else []
    if self.resource_metadata:
        params.append(("resource_metadata", _safe_text(self.resource_metadata)))
    if not params:
        return "Bearer"
    return "Bearer " + ", ".join(f"{k}={_quoted(v)}" for k, v in params)


class MissingTokenError(BearerGuardError, _AuthlibMissing):  # type: ignore[misc]
    """No credentials at all: 401 with a bare challenge (RFC 6750 §3.1).

    Authlib's ``MissingAuthorizationError``; its ``error`` is Authlib's
    ``missing_authorization``, which the body carries but the challenge does not.
    """

    error = "missing_authorization"
    description = "The request carries no access token."
    challenge = _bare_challenge


class UnsupportedTokenTypeError(BearerGuardError, _AuthlibUnsupported):  # type: ignore[misc]
    """An ``Authorization`` scheme no registered validator handles (``Basic``,
    ``MAC`` without a MAC validator): 401 with a bare challenge (RFC 6750 §3.1),
    body code ``unsupported_token_type`` as in Authlib. ``optional=True`` does
    not let it through: the client did send credentials."""

    error = "unsupported_token_type"
    description = "unsupported authentication scheme"
    challenge = _bare_challenge


class InvalidRequestError(BearerGuardError, _AuthlibInvalidRequest):  # type: ignore[misc]
    """Malformed credentials or request: 400 invalid_request."""

    status_code = 400
    error = "invalid_request"
    description = "The request is malformed."


class InvalidTokenError(BearerGuardError, _AuthlibInvalidToken):  # type: ignore[misc]
    """The token is unknown, expired, revoked or malformed: 401 invalid_token."""

    description = "The access token is invalid."


class InvalidDPoPProofError(BearerGuardError):
    """A DPoP proof that fails an RFC 9449 §4.3 check: 401 invalid_dpop_proof (§7.1)."""

    error = "invalid_dpop_proof"
    description = "The DPoP proof is invalid."


class UseDPoPNonceError(InvalidDPoPProofError):
    """The proof lacks the server's current nonce (RFC 9449 §9): 401
    ``use_dpop_nonce``, the nonce to use in a ``DPoP-Nonce`` header."""

    error = "use_dpop_nonce"
    description = "Resource server requires nonce in DPoP proof"

    def __init__(self, description: str | None = None, *, nonce: str = "") -> None:
        super().__init__(description)
        self.nonce = nonce

    def get_headers(self, realm: str | None = None) -> list[tuple[str, str]]:
        headers = super().get_headers(realm)
        if self.nonce:
            headers.append(("DPoP-Nonce", self.nonce))
        return headers


class UnknownTokenError(InvalidTokenError):
    description = "unknown token"


class TokenExpiredError(InvalidTokenError):
    description = "token expired"


class TokenRevokedError(InvalidTokenError):
    description = "token revoked"


class InsufficientScopeError(BearerGuardError, _AuthlibInsufficient):  # type: ignore[misc]
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
