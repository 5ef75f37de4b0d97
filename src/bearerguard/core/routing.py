"""What ``register_token_validator`` accepts, and which validator a token goes to.

Authlib picks a validator by the ``Authorization`` scheme (its
``TOKEN_TYPE``, case-insensitively). bearerguard does too; within ``Bearer``
it routes JWS tokens by their unverified ``iss`` (:func:`peek_jws`) and the
rest to the opaque validators in order.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from typing import Any

from .._log import logger, throttled
from ..errors import (
    InvalidRequestError,
    InvalidTokenError,
    UnknownTokenError,
    ValidatorUnavailableError,
)
from ..jose.jws import known_header, remember_header
from ..validators.base import TokenValidator
from .credentials import signed_content_digest
from .hooks import Policy, RequestCheck, call_hook, policy_of, request_checks
from .tokeninfo import TokenInfo, replaced
from .values import json_object, number_or_none

__all__ = [
    "Router",
    "b64url_decode",
    "check_registrable",
    "peek_jws",
    "scheme_credentials",
    "signed_content_key",
]


class Router:
    """The registered validators, and the one a token goes to.

    Bearer: JWS tokens by their unverified ``iss`` to the JWT validator of
    that issuer, the rest to the opaque validators in registration order.
    Other schemes (MAC, ...): their validators in order.
    """

    def __init__(self) -> None:
        self.jwt: dict[str, TokenValidator] = {}
        self._jws_entry: dict[str, JwsEntry] = {}
        self.opaque: list[TokenValidator] = []
        #: Validators by Authorization scheme (``TOKEN_TYPE``), in registration order.
        self.schemes: dict[str, list[TokenValidator]] = {}
        #: The Bearer validators' request checks the user wrote (usually none).
        self.request_checks: list[RequestCheck] = []
        #: The non-Bearer schemes and their request checks.
        self.others: dict[str, list[RequestCheck]] = {}
        self._policies: dict[int, Policy] = {}

    def register(self, validator: TokenValidator) -> None:
        """Add ``validator``, or raise TypeError/ValueError (see :func:`check_registrable`)."""
        check_registrable(validator)
        scheme = validator.TOKEN_TYPE.lower()
        checks = request_checks(validator)
        if scheme != "bearer":
            self.others.setdefault(scheme, []).extend(checks)
        elif validator.kind == "jwt":
            if not validator.issuer:
                raise ValueError("a JWT validator needs an issuer")
            if validator.issuer in self.jwt:
                raise ValueError(f"a validator for issuer {validator.issuer!r} is registered")
            self.jwt[validator.issuer] = validator
            # validate_jws is the one entry point (and override point) of a JWT
            # validator: it gets the header and claims already parsed to route.
            self._jws_entry[validator.issuer] = validator.validate_jws
        else:
            self.opaque.append(validator)
        self.schemes.setdefault(scheme, []).append(validator)
        # Only a hook the user wrote costs anything per request.
        if scheme == "bearer":
            self.request_checks.extend(checks)
        policy = policy_of(validator)
        if policy is not None:
            self._policies[id(validator)] = policy

    @property
    def validators(self) -> list[TokenValidator]:
        """Every registered validator, by scheme then registration order."""
        return [v for validators in self.schemes.values() for v in validators]

    def route(self, token: str, bound: bool = False) -> TokenInfo:
        """Validate a Bearer token with the validator it belongs to; ``bound``:
        a DPoP token, validated by ``validate_bound`` (its ``cnf`` kept)."""
        jws = peek_jws(token) if self.jwt else None
        if jws is None:
            return self.first_valid(self.opaque, token, bound)
        payload = jws[1]
        issuer = payload.get("iss") if payload is not None else None
        entry = self._jws_entry.get(issuer) if isinstance(issuer, str) else None
        if entry is None or not isinstance(issuer, str):
            raise InvalidTokenError("untrusted issuer" if payload else "malformed token")
        # Behind the guard: a validator may call user code (get_jwks, claims_check).
        if bound:
            info = call_hook(self.jwt[issuer].validate_bound, token)
        else:
            info = call_hook(entry, token, jws[0], payload)
        if info.revocation_key is None:  # a JWT validator of the user's own
            info = replaced(info, revocation_key=signed_content_key(token))
        return self._with_policy(info, self.jwt[issuer]) if self._policies else info

    def first_valid(
        self, validators: list[TokenValidator], token: str, bound: bool = False
    ) -> TokenInfo:
        """The first answer of ``validators`` that knows ``token``."""
        unavailable: ValidatorUnavailableError | None = None
        for validator in validators:
            try:
                check = validator.validate_bound if bound else validator.validate
                info = call_hook(check, token)
            except UnknownTokenError:
                continue
            except ValidatorUnavailableError as error:
                unavailable = error
                continue
            return self._with_policy(info, validator) if self._policies else info
        if unavailable is not None:
            raise unavailable
        if not self.schemes:
            throttled("no-validators", "ResourceProtector has no validator registered")
        raise UnknownTokenError()

    def _with_policy(self, info: TokenInfo, validator: TokenValidator) -> TokenInfo:
        policy = self._policies.get(id(validator))
        return info if policy is None else replaced(info, hooks=policy)

    def revocation_key(self, key: bytes, token: str) -> bytes:
        """The deny-list key a validation of ``token`` would carry (``key``, its
        digest, but for a JWS a JWT validator gets: keyed by its signed content)."""
        if self.jwt and peek_jws(token) is not None:
            return signed_content_key(token)
        return key

    def stated_expiry(self, token: str) -> float:
        """The expiry ``token`` states, unverified (inf if it states none)."""
        jws = peek_jws(token)
        exp = number_or_none(jws[1].get("exp")) if jws is not None and jws[1] is not None else None
        if exp is not None:
            return exp
        for validator in self.opaque:
            try:
                peeked = validator.peek_expiry(token)
            except Exception as exc:  # a user's hook, and only a hint: the entry stands
                name = type(validator).__name__
                logger.debug("%s.peek_expiry failed (%s)", name, type(exc).__name__)
                continue
            if peeked is not None:
                return peeked
        return math.inf


#: RFC 7230 ``token``: what an auth-param name may be.
_PARAM_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Printable ASCII: a CR or LF in a header value would make every refusal a 500.
_PARAM_VALUE = re.compile(r"[\x20-\x7e]*")
#: Names the challenge sets itself.
_RESERVED = frozenset({"realm", "error", "error_description", "scope", "resource_metadata"})

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


_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


def b64url_decode(segment: str) -> bytes:
    """Base64url without padding (RFC 7515 §2); raises ValueError (binascii.Error).

    ``base64.urlsafe_b64decode``'s steps (ASCII, translate, the lenient
    decoder) without its Python wrappers: twice per JWS on every cache miss.
    """
    data = (segment + "=" * (-len(segment) % 4)).encode("ascii")
    return binascii.a2b_base64(data.translate(_URLSAFE_TO_STANDARD))


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
    header = known_header(head)
    if header is None:
        decoded = _json_segment(head)
        if decoded is None or "alg" not in decoded:
            return None
        header = remember_header(head, decoded)
    return header, _json_segment(body)


def signed_content_key(token: str) -> bytes:
    """The deny-list key of a JWS compact token (see ``signed_content_digest``)."""
    return signed_content_digest(token.rpartition(".")[0])


#: How the guard calls a JWT validator: ``(token, header, claims) -> TokenInfo``.
JwsEntry = Callable[[str, Any, Any], TokenInfo]
