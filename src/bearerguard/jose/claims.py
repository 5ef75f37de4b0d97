"""The claims policy of a JWT access token (RFC 7519 §4.1, RFC 8725, RFC 9068 §4).

The second step, once :mod:`bearerguard.jose.jws` has verified the signature:
:class:`ClaimsPolicy` checks ``iss``, the times (``exp`` with no leeway,
``nbf``/``iat`` with some), key binding (``cnf``), the types of the claims
that identify a token, ``aud``, required claims and the caller's own rules, in
that order, each a named step. ``now`` is passed in, as joserfc does it, so a
test's clock and the cache's agree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from ..core.binding import is_certificate_only
from ..errors import InvalidTokenError, TokenExpiredError
from ..validators.base import number_or_none

__all__ = [
    "ANY_AUDIENCE",
    "RFC9068_CLAIMS",
    "AnyAudience",
    "ClaimStep",
    "Claims",
    "ClaimsPolicy",
    "audiences_of",
    "wanted_values",
]

_MISSING: Final = object()
#: Every claim RFC 9068 §2.2 makes mandatory; pass as ``required_claims=`` for strict profiles.
RFC9068_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")

#: A JWT's claims or its JOSE header: a JSON object, whose values are any JSON.
Claims = Mapping[str, Any]
#: One named check of the claims: ``(claims, header, now)``; raises to refuse.
ClaimStep = tuple[str, Callable[[Claims, Claims, float], None]]


class AnyAudience:
    """The type of :data:`ANY_AUDIENCE`, its one instance."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ANY_AUDIENCE"


#: Pass as ``audience`` to skip the ``aud`` check: only for tokens meant for
#: every resource (RFC 9068 §4 wants the check, so it is never the default).
ANY_AUDIENCE: Final = AnyAudience()


def _refuse(description: str) -> NoReturn:
    raise InvalidTokenError(description)


@dataclass(frozen=True, slots=True)
class ClaimsPolicy:
    """What a verified token's claims must say.

    Each parameter is the like-named one of
    :class:`~bearerguard.validators.JWTBearerTokenValidator`.
    """

    issuer: str
    #: None: any audience (:data:`ANY_AUDIENCE`).
    audiences: frozenset[str] | None
    leeway: float = 60.0
    required_claims: tuple[str, ...] = ()
    claims_equal: Mapping[str, Any] = field(default_factory=dict)
    claims_include: Mapping[str, frozenset[str]] = field(default_factory=dict)
    claims_check: Callable[[Claims, Claims], bool] | None = None
    #: The RFC 9068 profile: ``auth_time``, ``acr`` and ``amr`` get its types too.
    profile_types: bool = False
    _checks: tuple[Callable[[Claims, Claims, float], None], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", tuple(check for _, check in self.steps()))

    @classmethod
    def configure(
        cls,
        issuer: str,
        audience: str | Collection[str] | AnyAudience,
        *,
        leeway: float = 60,
        require_typ: bool = False,
        required_claims: str | Iterable[str] = (),
        claims_equal: Mapping[str, Any] | None = None,
        claims_include: Mapping[str, str | Iterable[str]] | None = None,
        claims_check: Callable[[Claims, Claims], bool] | None = None,
    ) -> ClaimsPolicy:
        """The policy from a validator's keyword arguments, checked (ValueError)."""
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        required = (
            (required_claims,) if isinstance(required_claims, str) else tuple(required_claims)
        )
        return cls(
            issuer,
            audiences_of(audience),
            leeway=float(leeway),
            required_claims=required,
            claims_equal=dict(claims_equal or {}),
            claims_include={k: wanted_values(k, v) for k, v in (claims_include or {}).items()},
            claims_check=claims_check,
            # The RFC 9068 profile, asked for by either: its claims' types apply.
            profile_types=require_typ or set(RFC9068_CLAIMS) <= set(required),
        )

    def steps(self) -> tuple[ClaimStep, ...]:
        """The checks in the order :meth:`check` runs them, each with its name
        (what ``bearerguard verify`` prints); rules not configured are left out."""
        steps: list[ClaimStep] = [
            ("iss", self.check_issuer),
            ("sub", check_subject),
            ("exp", check_expiry),
            ("nbf", self.check_not_before),
            ("iat", self.check_issued_at),
            ("cnf", check_not_bound),
            ("claim types", self.check_types),
        ]
        if self.audiences is not None:
            steps.append(("aud", self.check_audience))
        if self.required_claims:
            steps.append(("required", self.check_required))
        if self.claims_equal:
            steps.append(("claims_equal", self.check_equal))
        if self.claims_include:
            steps.append(("claims_include", self.check_include))
        if self.claims_check is not None:
            steps.append(("claims_check", self.check_custom))
        return tuple(steps)

    def check(self, claims: Claims, header: Claims, now: float) -> None:
        """Refuse the claims at their first failed step (``InvalidTokenError``,
        ``TokenExpiredError``)."""
        for check in self._checks:
            check(claims, header, now)

    # -- the steps ------------------------------------------------------------------

    def check_issuer(self, claims: Claims, _header: Claims, _now: float) -> None:
        if claims.get("iss") != self.issuer:
            _refuse("issuer mismatch")

    def check_not_before(self, claims: Claims, _header: Claims, now: float) -> None:
        nbf = _time_claim(claims, "nbf")
        if nbf is not None and nbf > now + self.leeway:
            _refuse("token not yet valid")

    def check_issued_at(self, claims: Claims, _header: Claims, now: float) -> None:
        iat = _time_claim(claims, "iat")
        if iat is not None and iat > now + self.leeway:
            _refuse("token issued in the future")

    def check_types(self, claims: Claims, _header: Claims, _now: float) -> None:
        _check_claim_types(claims, self.profile_types)

    def check_audience(self, claims: Claims, _header: Claims, _now: float) -> None:
        assert self.audiences is not None  # a step only when audiences are configured
        aud = claims.get("aud")
        if aud is None:
            _refuse("missing claim: aud")
        if self.audiences.isdisjoint(_audience_values(aud)):
            _refuse("audience mismatch")

    def check_required(self, claims: Claims, _header: Claims, _now: float) -> None:
        for name in self.required_claims:
            if claims.get(name) is None:  # a null is no value either (RFC 7519 §4)
                _refuse(f"missing claim: {name}")

    def check_equal(self, claims: Claims, _header: Claims, _now: float) -> None:
        for name, expected in self.claims_equal.items():
            value = claims.get(name, _MISSING)
            if type(value) is not type(expected) or value != expected:
                _refuse(f"claim mismatch: {name}")

    def check_include(self, claims: Claims, _header: Claims, _now: float) -> None:
        for name, wanted in self.claims_include.items():
            if not wanted <= _values(claims.get(name)):
                _refuse(f"claim mismatch: {name}")

    def check_custom(self, claims: Claims, header: Claims, _now: float) -> None:
        if self.claims_check is not None and not self.claims_check(claims, header):
            _refuse("claims check failed")


def check_subject(claims: Claims, _header: Claims, _now: float) -> None:
    """RFC 7519 §4.1.2: a StringOrURI. A number or a list would be no subject
    at all, so ``revoke_subject`` could never match the token."""
    if not isinstance(claims.get("sub", ""), str):
        _refuse("invalid claim: sub")


def check_expiry(claims: Claims, _header: Claims, now: float) -> None:
    """``exp`` present and in the future, with no leeway: the cache entry and a
    revocation end at ``exp``, so the token must be refused from ``exp`` on, too."""
    exp = _time_claim(claims, "exp")
    if exp is None:
        _refuse("missing claim: exp")
    if now >= exp:
        raise TokenExpiredError()


def check_not_bound(claims: Claims, _header: Claims, _now: float) -> None:
    """Refuse a token bound to a key (``cnf``) when it is presented as a bearer token.

    RFC 9449 §7.2: a DPoP-bound token (``cnf.jkt``) must not be accepted as a
    bearer token, nor one with any other ``cnf`` (RFC 7800) that asks for a
    proof of possession. One bound to a client certificate alone
    (``cnf["x5t#S256"]``, RFC 8705 §3) is a bearer token sent over mutual
    TLS: it passes here, and the guard holds it to the request's certificate
    on every request (``TokenInfo.confirmation``).
    """
    cnf = claims.get("cnf")
    if cnf is not None and not (isinstance(cnf, Mapping) and is_certificate_only(cnf)):
        _refuse("sender-constrained token presented as a bearer token")


def _check_claim_types(claims: Claims, profile: bool) -> None:
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


def _time_claim(claims: Claims, name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    number = number_or_none(value)
    if number is None:
        _refuse(f"invalid claim: {name}")
    return number


def _values(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _audience_values(aud: Any) -> frozenset[str]:
    if isinstance(aud, str):
        return frozenset((aud,))
    if isinstance(aud, list):
        return frozenset(a for a in aud if isinstance(a, str))
    return frozenset()


# -- configuration ----------------------------------------------------------------------


def audiences_of(audience: str | Collection[str] | AnyAudience) -> frozenset[str] | None:
    """The configured audience(s) as a set; None for :data:`ANY_AUDIENCE`.

    Raises ValueError for an empty or non-string audience (RFC 9068 §4 wants the check).
    """
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


def wanted_values(name: str, values: str | Iterable[str]) -> frozenset[str]:
    """A ``claims_include`` entry as a set; ValueError if empty or not strings."""
    wanted = frozenset(values.split() if isinstance(values, str) else values)
    if not wanted or not all(isinstance(v, str) for v in wanted):
        raise ValueError(f"claims_include[{name!r}] must be a string or strings")
    return wanted
