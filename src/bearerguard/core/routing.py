"""What ``register_token_validator`` accepts, and which validator a token goes to.

Authlib picks a validator by the ``Authorization`` scheme (its
``TOKEN_TYPE``, case-insensitively). bearerguard does too; within ``Bearer``
it routes JWS tokens by their unverified ``iss`` (:func:`peek_jws`) and the
rest to the opaque validators in order.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from ..errors import InvalidRequestError
from ..validators.base import TokenValidator
from .credentials import signed_content_digest
from .tokeninfo import TokenInfo
from .values import json_object

__all__ = [
    "b64url_decode",
    "check_registrable",
    "jws_entry",
    "peek_jws",
    "scheme_credentials",
    "signed_content_key",
]

#: RFC 7230 ``token``: what an auth-param name may be.
_PARAM_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Printable ASCII: a CR or LF in a header value would make every refusal a 500.
_PARAM_VALUE = re.compile(r"[\x20-\x7e]*")
#: Names the challenge sets itself.
_RESERVED = frozenset({"realm", "error", "error_description", "scope"})

#: Authlib's classes, by module, and what to import instead.
_PORTS = {
    "authlib.oauth2.rfc9068": "JWTBearerTokenValidator from bearerguard.rfc9068",
    "authlib.integrations.sqla_oauth2": "create_bearer_token_validator from bearerguard.sqla",
    "authlib.oauth2.rfc6750": "BearerTokenValidator from bearerguard.rfc6750",
    "authlib.oauth2.rfc7662": "IntrospectionTokenValidator from bearerguard.validators",
    "authlib.oauth2.rfc6749": "TokenValidator from bearerguard.validators",
}


def check_registrable(validator: Any) -> None:
    """Raise TypeError (what to change) or ValueError (which attribute) unless
    ``validator`` can be registered: a bearerguard validator whose ``realm``
    and extra challenge attributes are safe to send in a header."""
    if not isinstance(validator, TokenValidator):
        raise TypeError(_unported(validator))
    if not isinstance(validator.TOKEN_TYPE, str) or not _PARAM_NAME.fullmatch(validator.TOKEN_TYPE):
        raise ValueError(f"TOKEN_TYPE must be an HTTP auth scheme, not {validator.TOKEN_TYPE!r}")
    realm = getattr(validator, "realm", None)
    if realm is not None and not (isinstance(realm, str) and _PARAM_VALUE.fullmatch(realm)):
        raise ValueError("a validator's realm must be printable ASCII")
    extra = getattr(validator, "extra_attributes", None) or {}
    for name, value in extra.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"{name!r} cannot be a WWW-Authenticate attribute")
        if not isinstance(value, str) or not _PARAM_VALUE.fullmatch(value):
            raise ValueError(f"the WWW-Authenticate attribute {name!r} must be printable ASCII")


def _unported(validator: Any) -> str:
    for cls in type(validator).__mro__:
        module = cls.__module__ or ""
        for prefix, replacement in _PORTS.items():
            if module.startswith(prefix):
                return (
                    f"{type(validator).__name__} is built on Authlib's {module}.{cls.__name__}; "
                    f"import {replacement} instead (the hooks you wrote keep working)"
                )
    return (
        f"register_token_validator() takes a bearerguard validator "
        f"(bearerguard.validators.TokenValidator), not {type(validator).__name__}"
    )


def scheme_credentials(header: str, schemes: Any, max_length: int) -> tuple[str, str] | None:
    """``(scheme, credentials)`` when ``header`` names one of ``schemes`` (lower
    case, never ``bearer``), else None. As in Authlib, the credentials are the
    rest of the header (MAC's are ``id="...", mac="..."``), read as they are."""
    head = header[:80].split(None, 1)  # a scheme is short; a huge header is not split
    if not head or head[0].lower() not in schemes:
        return None
    if len(header) > max_length + 64:
        raise InvalidRequestError("access token too large")
    parts = header.split(None, 1)
    if len(parts) < 2:
        raise InvalidRequestError("missing credentials in Authorization header")
    return parts[0].lower(), parts[1]


def b64url_decode(segment: str) -> bytes:
    """Base64url without padding (RFC 7515 §2); raises ValueError (binascii.Error)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str) -> dict[str, Any] | None:
    try:
        return json_object(b64url_decode(segment))
    except ValueError:  # binascii.Error
        return None


def peek_jws(token: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Unverified ``(header, payload)`` of a JWS compact token, else None.

    A token is JWS-shaped when it has three dot-separated segments and its
    first decodes to a JSON object with ``alg``. The payload is None when it is
    not a JSON object. Nothing here is trusted: a JWT validator that reuses
    them (``validate_jws``) checks the segments strictly first.
    """
    if token.count(".") != 2:
        return None
    head, body, _ = token.split(".")
    header = _json_segment(head)
    if header is None or "alg" not in header:
        return None
    return header, _json_segment(body)


def signed_content_key(token: str) -> bytes:
    """The deny-list key of a JWS compact token (see ``signed_content_digest``)."""
    return signed_content_digest(token.rpartition(".")[0])


#: How the guard calls a JWT validator: ``(token, header, claims) -> TokenInfo``.
JwsEntry = Callable[[str, Any, Any], TokenInfo]


def jws_entry(validator: TokenValidator) -> JwsEntry:
    """``validator.validate_jws``, unless a subclass overrides ``validate`` below
    the class that defines it (to wrap or count it): then ``validate`` runs."""
    mro = type(validator).__mro__
    jws_owner = next(k for k in mro if "validate_jws" in vars(k))
    validate_owner = next(k for k in mro if "validate" in vars(k))
    if issubclass(jws_owner, validate_owner):
        return validator.validate_jws
    return lambda token, _header, _claims: validator.validate(token)
