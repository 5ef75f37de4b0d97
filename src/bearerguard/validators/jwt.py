"""JWT access tokens (RFC 9068) validated locally against the issuer's keys.

The protector sends a JWS compact token here when its unverified ``iss`` is
this validator's ``issuer``. The validator is configuration plus the steps of
:mod:`bearerguard.jose`, run in order: strict parse and header policy
(:mod:`~bearerguard.jose.jws`), the key chosen by ``kid`` from a pre-parsed
key set (:mod:`~bearerguard.jose.keys`, static or fetched by
:mod:`~bearerguard.jose.fetch`), never with an algorithm or key the token
names, the signature, then the claims (:mod:`~bearerguard.jose.claims`). A
verified token is cached by the protector, so each token is verified once.
``bearerguard verify`` runs the same steps to explain a verdict.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final

from ..core.credentials import signed_content_digest
from ..core.routing import peek_jws
from ..core.shared import shared_scopes_of
from ..core.tokeninfo import new_info, replaced
from ..errors import InvalidTokenError
from ..jose.claims import ANY_AUDIENCE, RFC9068_CLAIMS, AnyAudience, ClaimsPolicy
from ..jose.claimset import AccessTokenClaims
from ..jose.fetch import JWKSFetcher
from ..jose.jws import CompactJWS, HeaderPolicy, decode_parts, extract, verify_signature
from ..jose.keys import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    KeySet,
    VerifyKey,
    allowed_algorithms,
)
from ..transport import HTTPClient
from .base import TokenInfo, TokenValidator, number_or_none

__all__ = ["ANY_AUDIENCE", "RFC9068_CLAIMS", "AccessTokenClaims", "JWTBearerTokenValidator"]

_MISSING: Final = object()


class JWTBearerTokenValidator(TokenValidator):
    """Validate JWT access tokens of one issuer locally, with its public keys.

    Example::

        require_oauth.register_token_validator(
            JWTBearerTokenValidator(
                issuer="https://as.example.com",
                audience="https://api.example.com",
            )
        )

    Keys come from ``jwks`` (a JWKS dict, or a callable returning one, called
    when keys are first needed and again for an unknown ``kid``, as a fetch
    would be), else from ``jwks_uri``, else from the
    ``jwks_uri`` of the issuer's metadata (``/.well-known/openid-configuration``,
    then ``/.well-known/oauth-authorization-server``), whose ``issuer`` must be
    this one. Register one validator per trusted issuer.

    Tokens bound to a DPoP key (``cnf.jkt``, RFC 9449) are refused as bearer
    tokens; with the DPoP scheme, the guard checks ``cnf.jkt`` against the
    proof (:meth:`validate_bound`). A token bound to a client certificate
    (``cnf["x5t#S256"]``, RFC 8705) keeps it in ``confirmation``, which the
    guard checks against the request's certificate.

    :param issuer: the exact ``iss`` accepted.
    :param audience: this resource server's identifier(s); the token's ``aud``
        must contain one. :data:`ANY_AUDIENCE` skips the check. Not given: the
        protector's ``resource=`` (RFC 8707), taken at registration.
    :param algorithms: allowed ``alg`` values. A key with ``alg`` verifies
        that one algorithm, if allowed; a key without verifies those of these
        that suit its type. By default each key's own ``alg``, and for a key
        without one its type's usual algorithm only (RFC 8725 §3.1): RS256 for
        RSA, ES256/ES384/ES512 for P-256/P-384/P-521, for Ed25519 EdDSA and
        Ed25519 (its fully specified name, RFC 9864), HS256 for a local ``oct``
        key. ``none`` is refused; HS* only verifies with an ``oct`` key of
        ``jwks`` (configured here, never fetched), and an asymmetric key never
        verifies it.
    :param leeway: seconds of clock skew allowed for ``nbf`` and ``iat`` (a
        token issued by a server whose clock runs ahead). ``exp`` gets none:
        the token's cache entry and any revocation end at ``exp``, so must the
        token.
    :param require_typ: require the RFC 9068 header ``typ: at+jwt``. Without
        it, ``typ`` may also be absent or ``JWT``; any other type (``dpop+jwt``,
        ``logout+jwt``, ...) is refused either way.
    :param required_claims: claims that must be present, besides ``iss``,
        ``exp`` and ``aud`` (see :data:`RFC9068_CLAIMS`). With these, or with
        ``require_typ``, the RFC 9068 profile's ``auth_time``, ``acr`` and
        ``amr`` must have its types too, when present.
    :param claims_equal: ``{claim: value}`` each claim must equal.
    :param claims_include: ``{claim: values}`` each claim (a list or a
        space-separated string) must include all of.
    :param claims_check: ``(claims, header) -> bool``, a last check; False
        refuses the token (raise ``InvalidTokenError`` for a description).
    :param jwks_lifespan: seconds a fetched key set is used before a refetch.
    :param jwks_min_refetch: the least seconds between two refetches caused by
        an unknown ``kid``, and between retries after a failed fetch.
    :param jwks_max_stale: seconds past its lifespan a key set keeps serving
        while the endpoint fails.
    :param clock: wall-clock seconds, for the time claims and the key set;
        default the clock of the protector it is registered with.
    :param http: the :class:`~bearerguard.transport.HTTPClient` used for fetches.
    """

    kind = "jwt"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "validate" in vars(cls):
            # The protector hands every JWT to validate_jws (parsed once, to
            # route it by iss): an override of validate() would never run there,
            # and a check in it would silently pass every token.
            raise TypeError(
                f"{cls.__name__}.validate would never be called by the protector: override "
                "validate_jws(token_string, header, claims) instead (validate() calls it too)"
            )

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str] | AnyAudience | None = None,
        *,
        jwks: Mapping[str, Any] | Callable[[], Any] | None = None,
        jwks_uri: str | None = None,
        algorithms: Iterable[str] | None = None,
        leeway: float = 60,
        require_typ: bool = False,
        required_claims: Iterable[str] = (),
        claims_equal: Mapping[str, Any] | None = None,
        claims_include: Mapping[str, str | Iterable[str]] | None = None,
        claims_check: Callable[[Mapping[str, Any], Mapping[str, Any]], bool] | None = None,
        jwks_lifespan: float = 600.0,
        jwks_min_refetch: float = 30.0,
        jwks_max_stale: float = 86400.0,
        fetch_timeout: float = 5.0,
        max_jwks_bytes: int = 256 * 1024,
        clock: Callable[[], float] | None = None,
        http: HTTPClient | None = None,
        realm: str | None = None,
        **extra_attributes: Any,
    ) -> None:
        _check_extra_attributes(extra_attributes)
        super().__init__(realm, **extra_attributes)
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if jwks is not None and jwks_uri is not None:
            raise ValueError("pass jwks or jwks_uri, not both")
        self.issuer = issuer
        self.clock = clock if clock is not None else time.time
        self._own_clock = clock is not None
        #: No audience given: the protector's ``resource`` (RFC 8707), set at registration.
        self.audience_from_resource = audience is None
        self.claims_policy = ClaimsPolicy.configure(
            issuer,
            ANY_AUDIENCE if audience is None else audience,
            leeway=leeway,
            require_typ=require_typ,
            required_claims=required_claims,
            claims_equal=claims_equal,
            claims_include=claims_include,
            claims_check=claims_check,
        )
        # Keys configured here (jwks=): oct keys (HS*) may be among them.
        configured = allowed_algorithms(algorithms, local=jwks is not None)
        self._static: KeySet | None = None
        self.fetcher: JWKSFetcher | None = None
        if isinstance(jwks, Mapping):
            self._static = KeySet.parse(jwks, configured, "jwks=", local=True)
            if not self._static:
                raise ValueError("jwks holds no usable signing key")
            allowed = self._static.algorithms
        else:
            self.fetcher = JWKSFetcher(
                issuer,
                jwks_uri,
                algorithms=configured,
                lifespan=jwks_lifespan,
                min_refetch=jwks_min_refetch,
                max_stale=jwks_max_stale,
                timeout=fetch_timeout,
                max_bytes=max_jwks_bytes,
                clock=self.clock,
                http=http,
                loader=jwks,
            )
            allowed = configured if configured is not None else _default_algorithms(jwks)
        self.header_policy = HeaderPolicy(allowed, require_typ)
        if audience is None:  # until registered: no audience is accepted (fail closed)
            self.claims_policy = dataclasses.replace(self.claims_policy, audiences=frozenset())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} issuer={self.issuer!r}>"

    # -- the configuration, read back -------------------------------------------------

    @property
    def algorithms(self) -> frozenset[str]:
        """The ``alg`` values a token may name (those its keys can verify, for static keys)."""
        return self.header_policy.algorithms

    @property
    def require_typ(self) -> bool:
        return self.header_policy.require_typ

    @property
    def audiences(self) -> frozenset[str] | None:
        return self.claims_policy.audiences

    @property
    def leeway(self) -> float:
        return self.claims_policy.leeway

    @property
    def required_claims(self) -> tuple[str, ...]:
        return self.claims_policy.required_claims

    @property
    def claims_equal(self) -> Mapping[str, Any]:
        return self.claims_policy.claims_equal

    @property
    def claims_include(self) -> Mapping[str, frozenset[str]]:
        return self.claims_policy.claims_include

    @property
    def claims_check(self) -> Callable[[Mapping[str, Any], Mapping[str, Any]], bool] | None:
        return self.claims_policy.claims_check

    def bind(self, protector: Any) -> None:
        """Take the protector's ``resource`` as the audience when none was given
        (ValueError if it has none), and its clock unless one was given, so
        cache and claims agree."""
        if self.audience_from_resource:
            resource = getattr(protector, "resource", None)
            if not resource:
                raise ValueError(
                    "JWTBearerTokenValidator needs audience= (or the protector's resource=)"
                )
            self.claims_policy = dataclasses.replace(
                self.claims_policy, audiences=frozenset((resource,))
            )
        clock = getattr(protector, "clock", None)
        fetcher = self.fetcher
        if self._own_clock or clock is None or (fetcher is not None and fetcher.attempts):
            return
        self.clock = clock
        if fetcher is not None:
            fetcher.clock = clock

    # -- the cache-miss path ------------------------------------------------------

    def validate(self, token_string: str) -> TokenInfo:
        """Verify the signature, then the claims; return the token's facts.

        Decodes the header and payload, then runs :meth:`validate_jws`, the
        one method to override.
        """
        header, claims = decode_parts(token_string)
        return self.validate_jws(token_string, header, claims)

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        """Validate a token whose header and payload were decoded, unverified:
        by the protector (to route it by ``iss``) or by :meth:`validate`.

        The one entry point, and the one to override (the protector always
        calls it). Nothing decoded is trusted: :func:`~bearerguard.jose.jws.extract`
        checks the segments strictly, so they are the bytes the signature covers.
        """
        jws = extract(token_string, (header, claims))
        self.header_policy.check(jws.header)
        verify_signature(jws, self.signing_key(jws.header))
        payload = jws.claims()
        self.claims_policy.check(payload, jws.header, self.clock())
        return self.token_info(jws, payload)

    def validate_bound(self, token_string: str) -> TokenInfo:
        """:meth:`validate` for a token presented with a DPoP proof: its ``cnf``
        becomes ``confirmation``, for the guard to check against the proof.

        :meth:`validate_jws` (with every check a subclass adds) sees the claims
        without ``cnf``, so its ``cnf`` step passes; the binding kept is that of
        the payload it verified, decoded from the same signed bytes.
        """
        header, claims = decode_parts(token_string)
        cnf = claims.get("cnf") if claims is not None else None
        if cnf is None:
            return self.validate_jws(token_string, header, claims)
        if not isinstance(cnf, dict):
            raise InvalidTokenError("invalid claim: cnf")
        assert claims is not None
        unbound = {name: value for name, value in claims.items() if name != "cnf"}
        info = self.validate_jws(token_string, header, unbound)
        return replaced(info, confirmation=cnf)

    def signing_key(self, header: Mapping[str, Any]) -> VerifyKey:
        """The configured key for the header's ``kid`` and ``alg`` (an allowed one).

        An unknown ``kid`` refetches a fetched set (at most once per
        ``jwks_min_refetch``). Raises ``InvalidTokenError`` when no key
        verifies it, :class:`~bearerguard.errors.SigningKeysUnavailableError`
        when there are no keys to be had.
        """
        kid, alg = header.get("kid"), header["alg"]
        keys = self.key_set()
        key = keys.find(kid, alg)
        if key is None and self.fetcher is not None:
            key = self.fetcher.refetch(keys).find(kid, alg)
        if key is None:
            raise InvalidTokenError("unknown signing key")
        return key

    def token_info(self, jws: CompactJWS, claims: dict[str, Any]) -> TokenInfo:
        """What the protector caches for a verified token: its claims, frozen and
        shared, and the facts the hot path and the deny-list read."""
        token = AccessTokenClaims(claims, jws.header)
        get = claims.get
        client_id, sub, jti = get("client_id", _MISSING), get("sub"), get("jti")
        if client_id is _MISSING:
            client_id = get("azp")
        # Inline str checks (text_or_none), as the claims steps checked their types:
        # this runs on every cache miss.
        return new_info(
            token=token,
            scopes=shared_scopes_of(get("scope") or get("scp")),
            expires_at=number_or_none(claims["exp"]),
            subject=sub if type(sub) is str else None,
            client_id=client_id if type(client_id) is str else None,
            jti=jti if type(jti) is str else None,
            issued_at=number_or_none(get("iat")),
            claims=token,
            revocation_key=signed_content_digest(jws.signing_input),
            # A certificate binding (the only one check_not_bound lets through),
            # for the guard to hold to the request's certificate.
            confirmation=get("cnf"),
        )

    def peek_expiry(self, token_string: str) -> float | None:
        """The unverified ``exp`` (for ``revoke``: how long to remember the token)."""
        jws = peek_jws(token_string)
        return number_or_none(jws[1].get("exp")) if jws is not None and jws[1] is not None else None

    def stats(self) -> dict[str, int]:
        """JWKS fetch counters (attempts and failures); zeros for static keys."""
        fetcher = self.fetcher
        if fetcher is None:
            return {"jwks_fetches": 0, "jwks_fetch_failures": 0}
        return {
            "jwks_fetches": fetcher.attempts,
            "jwks_fetch_failures": fetcher.attempts - fetcher.successes,
        }

    def key_set(self) -> KeySet:
        """The keys tokens are checked against now, fetched first if need be.

        Raises :class:`~bearerguard.errors.SigningKeysUnavailableError` when
        there are none to be had.
        """
        if self.fetcher is None:
            assert self._static is not None
            return self._static
        return self.fetcher.keys()


def _default_algorithms(loader: Callable[[], Any] | None) -> frozenset[str]:
    """Without ``algorithms``: each key's own ``alg`` (RFC 8725 §3.1), its
    type's default without one; HS* only for a loader's (local) ``oct`` keys."""
    return ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS if loader is not None else ASYMMETRIC_ALGORITHMS


#: Keyword arguments that are another library's name for a parameter here: as
#: a challenge attribute they would be swallowed and change nothing (issue 11).
_MISNAMED = {
    "resource_server": "audience= (or use bearerguard.rfc9068.JWTBearerTokenValidator)",
    "aud": "audience=",
    "audiences": "audience=",
    "iss": "issuer=",
    "jwks_url": "jwks_uri=",
    "algorithm": "algorithms=",
}


def _check_extra_attributes(extra: Mapping[str, Any]) -> None:
    """Refuse keywords that cannot be ``WWW-Authenticate`` attributes (a misspelt parameter)."""
    for name, value in extra.items():
        if name in _MISNAMED:
            raise TypeError(f"unexpected keyword argument {name!r}: did you mean {_MISNAMED[name]}")
        if not isinstance(value, str):
            raise TypeError(
                f"extra attribute {name}= goes into the WWW-Authenticate challenge and must be "
                f"a string, not {type(value).__name__}: is it a misspelt parameter?"
            )
