"""Authlib's ``authlib.oauth2.rfc9068`` import path: its JWT access-token validator.

Code written for Authlib ports by changing the import::

    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator   # before
    from bearerguard.rfc9068 import JWTBearerTokenValidator      # after

The class is :class:`bearerguard.validators.JWTBearerTokenValidator` with
Authlib's constructor, its ``get_jwks()`` hook and the strict RFC 9068
profile of Authlib's validator: a ``typ`` other than ``at+jwt`` refused, and
``iss exp aud sub client_id iat jti`` required. The issuer-friendly defaults
of the class it builds on stay for issuers that do not send RFC 9068 tokens
(Keycloak, Entra ID, ...).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from ._log import logger, throttled
from .core.requirements import compile_requirement
from .core.routing import peek_jws
from .errors import InsufficientScopeError, InvalidTokenError, TokenExpiredError
from .validators.base import TokenInfo, is_expired, number_or_none, scopes_of
from .validators.jwt import RFC9068_CLAIMS, AccessTokenClaims
from .validators.jwt import JWTBearerTokenValidator as _JWTValidator

__all__ = ["JWTBearerTokenValidator"]

#: RFC 9068 §4: the ``typ`` values a resource server accepts. As Authlib's
#: validator does, a token without ``typ`` passes (``require_typ=True`` refuses it).
_ACCESS_TOKEN_TYPES: Final = frozenset({"at+jwt", "application/at+jwt"})
#: JWK members that hold private key material (RFC 7518 §6.2.2, §6.3.2; RFC 8037 §2).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})


def _check_type(header: Mapping[str, Any]) -> None:
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TOKEN_TYPES):
        raise InvalidTokenError("wrong token type")


class JWTBearerTokenValidator(_JWTValidator):
    """Authlib's RFC 9068 validator: JWT access tokens of one issuer.

    Example, as written for Authlib::

        class MyJWTBearerTokenValidator(JWTBearerTokenValidator):
            def get_jwks(self):
                return KeySet.import_key_set(load_json("jwks.json"))

        require_oauth.register_token_validator(
            MyJWTBearerTokenValidator(
                issuer="https://authorization-server.example.org",
                resource_server="https://resource-server.example.org",
            )
        )

    ``get_jwks()`` may return what Authlib accepts: a joserfc ``KeySet`` or
    key, a JWKS or JWK dict (or its JSON), a PEM key. It is called when the
    first token needs a key, again for an unknown ``kid`` (at most once per
    ``jwks_min_refetch`` seconds) and every ``jwks_lifespan`` seconds: never
    per request. Only the public half of a private key is used; an ``oct``
    key verifies HS* only, and an asymmetric key never does. Without
    ``get_jwks()``, keys come from ``jwks=``, ``jwks_uri=`` or the issuer's
    metadata, as for :class:`bearerguard.validators.JWTBearerTokenValidator`.

    :param issuer: the exact ``iss`` accepted.
    :param resource_server: this resource server's identifier: the token's
        ``aud`` must contain it.
    :param realm: (positional or keyword) the challenge's ``realm``.
    :param kwargs: the keyword parameters of
        :class:`bearerguard.validators.JWTBearerTokenValidator` but
        ``audience`` (``required_claims`` adds to RFC 9068's); any other
        keyword is, as in Authlib, a string attribute of the challenge.
    """

    def __init__(
        self, issuer: str, resource_server: str | Collection[str], *args: Any, **kwargs: Any
    ) -> None:
        if len(args) > 1:
            raise TypeError("JWTBearerTokenValidator takes issuer, resource_server and realm")
        if args:
            if "realm" in kwargs:
                raise TypeError("realm given twice")
            kwargs["realm"] = args[0]
        if "audience" in kwargs:
            raise TypeError(
                "unexpected keyword argument 'audience': resource_server is the audience"
            )
        jwks = kwargs.pop("jwks", None)
        if _defines_get_jwks(type(self)):
            if jwks is not None or kwargs.get("jwks_uri") is not None:
                raise ValueError("get_jwks() gives the keys: pass neither jwks nor jwks_uri")
            jwks = self._load_jwks
        elif jwks is not None:
            jwks = _jwks_document(jwks)
        extra = kwargs.pop("required_claims", ())
        required = (*RFC9068_CLAIMS, *((extra,) if isinstance(extra, str) else extra))
        super().__init__(issuer, resource_server, jwks=jwks, required_claims=required, **kwargs)
        self.resource_server = resource_server
        self._custom_iss = type(self).validate_iss is not JWTBearerTokenValidator.validate_iss
        if self._custom_iss:
            logger.warning(
                "%s overrides validate_iss: bearerguard sends it only tokens whose iss is %r "
                "(register one validator per issuer), so it can refuse more, not accept others",
                type(self).__name__,
                issuer,
            )

    # -- Authlib's hooks ------------------------------------------------------------

    def get_jwks(self) -> Any:
        """Return the keys tokens are signed with; override it, as for Authlib.

        Called at most as often as a JWKS would be fetched, never per request,
        so it may read a file or the network.
        """
        raise NotImplementedError

    def validate_iss(self, claims: Mapping[str, Any], iss: str) -> bool:
        """True when ``iss`` is this validator's issuer (RFC 9068 §4)."""
        return iss == self.issuer

    def authenticate_token(self, token_string: str) -> AccessTokenClaims:
        """Verify ``token_string``'s signature and claims; return its claims.

        Raises :class:`~bearerguard.errors.InvalidTokenError`. The ``typ``
        header is checked by :meth:`validate_token`, as in Authlib.
        """
        jws = peek_jws(token_string)
        if jws is None:
            raise InvalidTokenError("malformed token")
        token: AccessTokenClaims = self._verified(token_string, *jws).token
        return token

    def validate_token(
        self,
        token: AccessTokenClaims,
        scopes: Any,
        request: Any,
        groups: Any = None,
        roles: Any = None,
        entitlements: Any = None,
    ) -> None:
        """Check a token from :meth:`authenticate_token` against a request's needs.

        Refuses a wrong ``typ`` or an expired token (401), and a token that
        lacks the scopes (a list of alternatives, as in Authlib) or any one of
        the ``groups``/``roles``/``entitlements`` values (403
        ``insufficient_scope``, where Authlib answers 401).
        """
        _check_type(getattr(token, "header", None) or {})
        info = TokenInfo(
            token=token,
            scopes=scopes_of(token.get("scope") or token.get("scp")),
            expires_at=number_or_none(token.get("exp")),
            claims=token,
        )
        if is_expired(info, self.clock()):
            raise TokenExpiredError()
        wanted = {"groups": groups, "roles": roles, "entitlements": entitlements}
        requirement = compile_requirement(scopes, "AND", wanted)
        missing = requirement.missing(info)
        if missing is not None:
            description = None if missing == "scope" else f"token lacks a required {missing} value"
            raise InsufficientScopeError(description, scope=requirement.scope)

    # -- the protector's entry (a cache miss) -------------------------------------------

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        """What :meth:`authenticate_token` and :meth:`validate_token` check, but
        the request's needs, which the protector checks on every request."""
        if header is not None:
            _check_type(header)
        return self._verified(token_string, header, claims)

    def _verified(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        info = super().validate_jws(token_string, header, claims)
        if self._custom_iss and not self.validate_iss(info.token, info.token["iss"]):
            raise InvalidTokenError("issuer mismatch")
        return info

    def _load_jwks(self) -> dict[str, Any]:
        keys = self.get_jwks()
        try:
            return _jwks_document(keys)
        except (TypeError, ValueError) as exc:
            throttled(f"get_jwks:{self.issuer}", "%s.get_jwks(): %s", type(self).__name__, exc)
            raise


def _defines_get_jwks(cls: type) -> bool:
    return getattr(cls, "get_jwks", None) is not JWTBearerTokenValidator.get_jwks


# -- what get_jwks() may return ---------------------------------------------------------


def _jwks_document(keys: Any) -> dict[str, Any]:
    """``keys`` in any shape Authlib's ``get_jwks()`` accepts, as a JWKS dict.

    A joserfc ``KeySet`` or key (or Authlib's older ``authlib.jose`` keys), a
    JWKS or JWK dict or its JSON text, a PEM public key, private key or
    certificate, or other text as an ``oct`` secret. Private members are
    dropped: only the public half of a key verifies. Raises TypeError or
    ValueError for anything else.
    """
    if isinstance(keys, str):
        keys = keys.encode()
    if isinstance(keys, bytes):
        text = keys.strip()
        if text.startswith(b"{"):
            return _jwks_document(json.loads(text))
        if text.startswith(b"-----BEGIN"):
            return {"keys": [_pem_jwk(text)]}
        return {"keys": [{"kty": "oct", "k": base64.urlsafe_b64encode(keys).rstrip(b"=").decode()}]}
    if isinstance(keys, Mapping):
        found = keys.get("keys", [keys])
        if not isinstance(found, list):
            raise ValueError("not a JWKS document (no 'keys' list)")
        return {"keys": [_public(jwk) for jwk in found]}
    as_dict = getattr(keys, "as_dict", None)
    if callable(as_dict):
        if type(keys).__module__.startswith("authlib.jose"):
            return _jwks_document(as_dict(is_private=False))
        return _jwks_document(as_dict(private=False))  # joserfc
    raise TypeError(
        f"get_jwks() returned a {type(keys).__name__}: return a joserfc KeySet or key, "
        "a JWKS or JWK dict, or a PEM key"
    )


def _public(jwk: Any) -> Any:
    if not isinstance(jwk, Mapping) or jwk.get("kty") == "oct":
        return jwk  # a secret is the key; a non-object is skipped by the KeySet, with a warning
    public = {name: value for name, value in jwk.items() if name not in _PRIVATE_MEMBERS}
    ops = public.get("key_ops")
    if isinstance(ops, list) and "sign" in ops and "verify" not in ops:
        public["key_ops"] = [*ops, "verify"]  # what a signing key signs, its public half verifies
    return public


def _pem_jwk(pem: bytes) -> dict[str, Any]:
    first_line = pem.split(b"\n", 1)[0]
    key: Any
    if b"CERTIFICATE" in first_line:
        key = x509.load_pem_x509_certificate(pem).public_key()
    elif b"PRIVATE" in first_line:
        key = serialization.load_pem_private_key(pem, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    for algorithm in (RSAAlgorithm, ECAlgorithm, OKPAlgorithm):
        try:
            jwk: dict[str, Any] = algorithm.to_jwk(key, as_dict=True)
        except InvalidKeyError:
            continue
        return jwk
    raise TypeError(f"unsupported PEM key type {type(key).__name__}")
