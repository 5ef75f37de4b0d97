"""What ``register_token_validator`` accepts, and how a scheme's credentials are read.

Authlib picks a validator by the ``Authorization`` scheme (its
``TOKEN_TYPE``, case-insensitively). bearerguard does too; within ``Bearer``
it routes JWS tokens by issuer and the rest to the opaque validators in order.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import InvalidRequestError
from .validators.base import TokenValidator

__all__ = ["check_registrable", "scheme_credentials"]

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
