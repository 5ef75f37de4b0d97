"""JWT access tokens (RFC 9068) validated locally against the issuer's keys.

The protector sends a JWS compact token here when its unverified ``iss`` is
this validator's ``issuer``. The signature is checked by PyJWT's algorithm
object for the key chosen by ``kid`` from a pre-parsed key set (static,
fetched from ``jwks_uri``, or discovered), never with an algorithm or key the
token names; then the claims are checked (RFC 7519 §4.1, RFC 8725, RFC 9068
§4). A verified token is cached by the protector, so each token is verified
once.

Why not ``jwt.decode``: it re-checks each segment's alphabet character by
character in Python (about 70 µs for a 650-byte RS256 token, three times the
RSA verification itself); a regex does the same here in C.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Final, NoReturn

from .._http import HTTPClient
from .._jwks import (
    ASYMMETRIC_ALGORITHMS,
    HMAC_ALGORITHMS,
    JWKSFetcher,
    KeySet,
    VerifyKey,
    json_object,
)
from ..core.credentials import signed_content_digest
from ..core.frozen import FrozenDict, ReadOnlyClaims, freeze
from ..core.routing import b64url_decode, peek_jws
from ..errors import InvalidTokenError, TokenExpiredError
from .base import TokenInfo, TokenValidator, number_or_none, scopes_of, text_or_none

__all__ = ["ANY_AUDIENCE", "RFC9068_CLAIMS", "AccessTokenClaims", "JWTBearerTokenValidator"]

_MISSING: Final = object()
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: The last character of a canonical segment of 4n+2 (4n+3) characters: its
#: low 4 (2) bits, past the data, are zero (RFC 4648 §3.5). Cheaper than
#: encoding the decoded bytes again to compare.
_CANONICAL_LAST = {2: frozenset(_B64URL[::16]), 3: frozenset(_B64URL[::4])}
#: RFC 9068 §4: the ``typ`` of a JWT access token. Media types are
#: case-insensitive (compared lowered) and ``application/`` may be left out
#: (RFC 7515 §4.1.9), so each value is listed both ways.
_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
#: ``typ`` values accepted when ``at+jwt`` is not required (or no ``typ``):
#: plain ``JWT`` too (RFC 7519 §5.1), as many servers still send. Any other
#: names another kind of JWT (``dpop+jwt``, ``logout+jwt``, ``secevent+jwt``,
#: ``id_token+jwt``...), which must not pass for an access token (RFC 8725 §3.11).
_ACCESS_TOKEN_TYPES = _AT_JWT | {"jwt", "application/jwt"}
#: Every claim RFC 9068 §2.2 makes mandatory; pass as ``required_claims=`` for strict profiles.
RFC9068_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")


class _AnyAudience:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY_AUDIENCE"


#: Pass as ``audience`` to skip the ``aud`` check: only for tokens meant for
#: every resource (RFC 9068 §4 wants the check, so it is never the default).
ANY_AUDIENCE: Final = _AnyAudience()


class AccessTokenClaims(ReadOnlyClaims):
    """``current_token`` for a JWT: its verified claims, read-only.

    A mapping (``current_token["sub"]``) with Authlib's ``get_scope()`` and the
    JOSE ``header``. It is shared by every request that presents the same
    token while the token is cached, so it refuses changes, and so do the
    lists and objects in it (``current_token["roles"]`` is a read-only
    ``list``); ``dict(token)`` is a private, mutable copy of the top level.
    """

    __slots__ = ("header",)

    def __init__(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> None:
        dict.__init__(self, _shared_claims(claims))
        self.header: Mapping[str, Any] = _shared_header(header or {})

    def get_scope(self) -> str:
        """The granted scopes as one space-separated string (``scope`` or ``scp``)."""
        scope = self.get("scope")
        if isinstance(scope, str):
            return scope
        scp = scope if scope is not None else self.get("scp")
        if isinstance(scp, list):
            return " ".join(s for s in scp if isinstance(s, str))
        return ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self), dict(self.header)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


# Every cached JWT of an issuer repeats most of its bytes: the claim names,
# iss, aud, client_id, scope, the header. Shared, a cached token costs about a
# third of what it costs with its own copies (issue 5: <= 1 KiB per entry).
# Bounded: past _SHARED_MAX distinct values, new ones are kept unshared; only
# the values of claims that repeat are shared, so unique ones cannot fill it.
_SHARED_MAX = 4096
_shared_values: dict[str, str] = {}
_shared_headers: dict[tuple[tuple[str, str], ...], Mapping[str, Any]] = {}
_shared_scopes: dict[str, frozenset[str]] = {}


def _share(value: Any) -> Any:
    # Strings only: a key of 1 would also find 1.0 and True, which are equal.
    if type(value) is not str or len(value) > 128:
        return value
    shared = _shared_values.get(value)
    if shared is not None:
        return shared
    if len(_shared_values) < _SHARED_MAX:
        _shared_values[value] = value
    return value


_CONTAINERS = frozenset({list, dict})
#: Claims whose values repeat from token to token (not jti, exp, sub...).
_SHARED_NAMES = frozenset(
    {"iss", "aud", "azp", "client_id", "scope", "typ", "alg", "kid", "token_use", "acr", "type"}
)


def _shared_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims with repeating strings shared, and lists and objects frozen."""
    return {
        sys.intern(name): freeze(value)
        if type(value) in _CONTAINERS
        else _share(value)
        if name in _SHARED_NAMES
        else value
        for name, value in claims.items()
    }


def _frozen_header(header: Mapping[str, Any]) -> FrozenDict:
    frozen = dict.__new__(FrozenDict)
    dict.update(frozen, _shared_claims(header))
    return frozen


def _shared_header(header: Mapping[str, Any]) -> Mapping[str, Any]:
    for value in header.values():
        if type(value) is not str:
            # Only headers of strings are shared. 1, 1.0 and True are equal and
            # hash alike, so a key holding them would give a token the header
            # of an earlier one (its x: true read back as 1).
            return _frozen_header(header)
    key = tuple(header.items())
    shared = _shared_headers.get(key)
    if shared is None:
        shared = _frozen_header(header)
        if len(_shared_headers) < _SHARED_MAX:
            _shared_headers[key] = shared
    return shared


def _shared_scopes_of(value: Any) -> frozenset[str]:
    if type(value) is not str:
        return scopes_of(value)
    scopes = _shared_scopes.get(value)
    if scopes is None:
        scopes = frozenset(_share(s) for s in value.split())
        if len(_shared_scopes) < _SHARED_MAX:
            _shared_scopes[value] = scopes
    return scopes


def _refuse(description: str) -> NoReturn:
    raise InvalidTokenError(description)


def _values(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


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

    Tokens bound to a key (a ``cnf`` claim: DPoP, RFC 9449; mTLS, RFC 8705)
    are refused: they are not bearer tokens, and no proof is checked here.

    :param issuer: the exact ``iss`` accepted.
    :param audience: this resource server's identifier(s); the token's ``aud``
        must contain one. :data:`ANY_AUDIENCE` skips the check.
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
    :param http: the :class:`~bearerguard._http.HTTPClient` used for fetches.
    """

    kind = "jwt"

    def __init__(
        self,
        issuer: str,
        audience: str | Collection[str] | _AnyAudience,
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
        self.audiences = _audiences(audience)
        # None: each key's own alg (RFC 8725 §3.1), its type's default without one.
        local = jwks is not None  # keys configured here: oct keys (HS*) may be among them
        configured = _allowed(algorithms, local=local)
        if configured is not None:
            self.algorithms = configured
        elif local:
            self.algorithms = ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS
        else:
            self.algorithms = ASYMMETRIC_ALGORITHMS
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.leeway = float(leeway)
        self.require_typ = require_typ
        self.required_claims = (
            (required_claims,) if isinstance(required_claims, str) else tuple(required_claims)
        )
        # The RFC 9068 profile, asked for by either: its claims' types apply.
        self._profile_types = require_typ or set(RFC9068_CLAIMS) <= set(self.required_claims)
        self.claims_equal = dict(claims_equal or {})
        self.claims_include = {k: _wanted(k, v) for k, v in (claims_include or {}).items()}
        self.claims_check = claims_check
        self.clock = clock if clock is not None else time.time
        self._own_clock = clock is not None
        self._static: KeySet | None = None
        self.fetcher: JWKSFetcher | None = None
        loader = jwks if callable(jwks) else None
        if loader is not None:
            jwks = None
        if jwks is not None:
            self._static = KeySet.parse(jwks, configured, "jwks=", local=True)
            if not self._static:
                raise ValueError("jwks holds no usable signing key")
            self.algorithms = self._static.algorithms
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
                loader=loader,
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} issuer={self.issuer!r}>"

    def bind(self, protector: Any) -> None:
        """Use the protector's clock unless one was given, so cache and claims agree."""
        clock = getattr(protector, "clock", None)
        fetcher = self.fetcher
        if self._own_clock or clock is None or (fetcher is not None and fetcher.attempts):
            return
        self.clock = clock
        if fetcher is not None:
            fetcher.clock = clock

    # -- the cache-miss path ------------------------------------------------------

    def validate(self, token_string: str) -> TokenInfo:
        """Verify the signature, then the claims; return the token's facts."""
        head, _, rest = token_string.partition(".")
        header = json_object(_decode_segment(head))
        claims = json_object(_decode_segment(rest.partition(".")[0]))
        return self.validate_jws(token_string, header, claims)

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        """:meth:`validate` for a token whose header and payload the protector
        has parsed already (to route it by ``iss``), so they are parsed once.

        Nothing parsed is trusted: the segments are checked here as strictly as
        :meth:`validate` checks them, so they are the bytes the signature covers.
        """
        signing_input, _, encoded_signature = token_string.rpartition(".")
        head, _, body = signing_input.partition(".")
        _check_segment(head)
        _check_segment(body)
        if header is None:
            _refuse("malformed token")
        self._check_header(header)
        signature = _decode_segment(encoded_signature, canonical=True)
        alg: str = header["alg"]
        key = self._key(header.get("kid"), alg)
        # The segments are checked to be ASCII, and the key to suit alg.
        if not key.verify(alg, signing_input.encode("ascii"), signature):
            _refuse("invalid signature")
        if claims is None:
            _refuse("malformed token")
        self._check_claims(claims, header)
        token = AccessTokenClaims(claims, header)
        client_id = claims.get("client_id", claims.get("azp"))
        return TokenInfo(
            token=token,
            scopes=_shared_scopes_of(claims.get("scope") or claims.get("scp")),
            expires_at=number_or_none(claims["exp"]),
            subject=text_or_none(claims.get("sub")),
            client_id=text_or_none(client_id),
            jti=text_or_none(claims.get("jti")),
            issued_at=number_or_none(claims.get("iat")),
            claims=token,
            revocation_key=signed_content_digest(signing_input),
        )

    def peek_expiry(self, token_string: str) -> float | None:
        """The unverified ``exp`` (for ``revoke``: how long to remember the token)."""
        jws = peek_jws(token_string)
        return number_or_none(jws[1].get("exp")) if jws is not None and jws[1] is not None else None

    def _check_header(self, header: dict[str, Any]) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            _refuse("algorithm not allowed")
        if "crit" in header or "b64" in header:
            # No JWS extension is understood here, so any "crit" must be
            # refused (RFC 7515 §4.1.11); b64=false (RFC 7797) changes what is signed.
            _refuse("unsupported critical header")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            _refuse("malformed token")
        if not _typ_allowed(header, self.require_typ):
            _refuse("wrong token type")
        # jku, x5u, jwk and x5c are never read: keys come from configuration only.

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

    def _key(self, kid: str | None, alg: str) -> VerifyKey:
        fetcher = self.fetcher
        keys = self.key_set()
        key = keys.find(kid, alg)
        if key is None and fetcher is not None:
            key = fetcher.refetch(keys).find(kid, alg)
        if key is None:
            _refuse("unknown signing key")
        return key

    def _check_claims(self, claims: dict[str, Any], header: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.issuer:
            _refuse("issuer mismatch")
        if not isinstance(claims.get("sub", ""), str):
            # RFC 7519 §4.1.2: a StringOrURI. A number or a list would be no
            # subject at all, so revoke_subject could never match the token.
            _refuse("invalid claim: sub")
        now = self.clock()
        leeway = self.leeway
        exp = _time_claim(claims, "exp")
        if exp is None:
            _refuse("missing claim: exp")
        if now >= exp:
            # No leeway past exp: the cache entry and a revocation end at exp,
            # so the token must be refused from exp on, too.
            raise TokenExpiredError()
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            _refuse("token not yet valid")
        iat = _time_claim(claims, "iat")
        if iat is not None and iat > now + leeway:
            _refuse("token issued in the future")
        _refuse_sender_constrained(claims)
        _check_claim_types(claims, self._profile_types)
        if self.audiences is not None:
            aud = claims.get("aud")
            if aud is None:
                _refuse("missing claim: aud")
            if self.audiences.isdisjoint(_audience_values(aud)):
                _refuse("audience mismatch")
        for name in self.required_claims:
            if claims.get(name) is None:  # a null is no value either (RFC 7519 §4)
                _refuse(f"missing claim: {name}")
        for name, expected in self.claims_equal.items():
            value = claims.get(name, _MISSING)
            if type(value) is not type(expected) or value != expected:
                _refuse(f"claim mismatch: {name}")
        for name, wanted in self.claims_include.items():
            if not wanted <= _values(claims.get(name)):
                _refuse(f"claim mismatch: {name}")
        if self.claims_check is not None and not self.claims_check(claims, header):
            _refuse("claims check failed")


def _refuse_sender_constrained(claims: Mapping[str, Any]) -> None:
    """Refuse a token bound to a key (``cnf``) when it is presented as a bearer token.

    RFC 9449 §7.2: a DPoP-bound token (``cnf.jkt``) must not be accepted as a
    bearer token; a certificate-bound one (``cnf["x5t#S256"]``, RFC 8705 §3)
    is only as good as the TLS client certificate it names, and any other
    ``cnf`` (RFC 7800) asks for a proof of possession too. This validator sees
    no proof, so every ``cnf`` is refused, as the introspection validator does.
    DPoP and mTLS support replace this one check.
    """
    if claims.get("cnf") is not None:
        _refuse("sender-constrained token presented as a bearer token")


def _typ_allowed(header: Mapping[str, Any], require_at_jwt: bool) -> bool:
    """Whether the header's ``typ`` marks an access token (``at+jwt`` only when required)."""
    typ = header.get("typ", _MISSING)
    if typ is _MISSING:
        return not require_at_jwt
    accepted = _AT_JWT if require_at_jwt else _ACCESS_TOKEN_TYPES
    return isinstance(typ, str) and typ.lower() in accepted


def _check_segment(segment: str) -> None:
    """Strict base64url (RFC 7515 §2): its alphabet only, no padding."""
    if _SEGMENT.fullmatch(segment) is None or len(segment) % 4 == 1:
        _refuse("malformed token")


def _decode_segment(segment: str, *, canonical: bool = False) -> bytes:
    """A strict base64url segment, decoded.

    ``canonical`` also refuses encodings with stray trailing bits: several
    strings would decode to the same signature, and a variant of a revoked
    token would not match its deny-list entry.
    """
    _check_segment(segment)
    tail = len(segment) % 4
    if canonical and tail and segment[-1] not in _CANONICAL_LAST[tail]:
        _refuse("malformed token")
    return b64url_decode(segment)


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    number = number_or_none(value)
    if number is None:
        _refuse(f"invalid claim: {name}")
    return number


def _audience_values(aud: Any) -> frozenset[str]:
    if isinstance(aud, str):
        return frozenset((aud,))
    if isinstance(aud, list):
        return frozenset(a for a in aud if isinstance(a, str))
    return frozenset()


def _audiences(audience: str | Collection[str] | _AnyAudience) -> frozenset[str] | None:
    if audience is ANY_AUDIENCE:
        return None
    if isinstance(audience, str):
        audiences = frozenset((audience,))
    elif isinstance(audience, Collection):
        audiences = frozenset(audience)
    else:
        audiences = frozenset()
    if not audiences or not all(isinstance(a, str) and a for a in audiences):
        raise ValueError(
            "audience must be a non-empty string or collection of strings "
            "(RFC 9068 §4); pass ANY_AUDIENCE to accept every audience"
        )
    return audiences


def _wanted(name: str, values: str | Iterable[str]) -> frozenset[str]:
    wanted = frozenset(values.split() if isinstance(values, str) else values)
    if not wanted or not all(isinstance(v, str) for v in wanted):
        raise ValueError(f"claims_include[{name!r}] must be a string or strings")
    return wanted


def _allowed(algorithms: Iterable[str] | None, local: bool = False) -> frozenset[str] | None:
    if algorithms is None:
        return None
    # HS* only with keys configured here: a fetched key set never holds a
    # secret, and the KeySet gives HS* verifiers to oct keys alone.
    usable = ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS if local else ASYMMETRIC_ALGORITHMS
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    allowed = frozenset(algorithms)
    refused = allowed - usable
    if refused or not allowed:
        raise ValueError(
            f"algorithms must be among {sorted(usable)}; refused: {sorted(refused)} "
            "(none is never accepted, HS* only with an oct key given as jwks=)"
        )
    return allowed


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


def _check_claim_types(claims: Mapping[str, Any], profile: bool) -> None:
    """The types of claims that identify a token or, in the RFC 9068 profile,
    its authentication, when present.

    jti and client_id key revocations (a number would slip past them). RFC
    9068 §2.2.1 takes auth_time, acr and amr from OpenID Connect Core §2: a
    NumericDate, a string, an array of strings (checked in the profile only:
    other issuers' tokens may use them loosely, as ``claims_include`` allows).
    """
    for name in ("jti", "client_id", "acr") if profile else ("jti", "client_id"):
        if name in claims and not isinstance(claims[name], str):
            _refuse(f"invalid claim: {name}")
    if not profile:
        return
    if "auth_time" in claims and number_or_none(claims["auth_time"]) is None:
        _refuse("invalid claim: auth_time")
    amr = claims.get("amr", _MISSING)
    if amr is not _MISSING and not (isinstance(amr, list) and all(isinstance(m, str) for m in amr)):
        _refuse("invalid claim: amr")
