"""The guard: which validator a token goes to, the cache in front of them, the
deny-list behind them, and the counters; no web framework in sight.

A front (``bearerguard.protector`` for Flask, ``bearerguard.starlette``)
asks :meth:`Guard.try_cached` with the ``Authorization`` header alone, which
answers the common request (a cached, live, unrevoked token with what the
view needs) in a handful of steps; when it cannot decide, the front builds
:class:`~bearerguard.core.credentials.Credentials` and calls
:meth:`Guard.authorize`, which decides everything else. A refusal is a
``BearerGuardError``, already counted and stamped with its challenge
attributes, that :meth:`Guard.render` turns into the same bytes for every front.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._forksafe import renew_after_fork
from ..cache import AtomicCounter, TokenCache
from ..errors import (
    BearerGuardError,
    InsufficientScopeError,
    MissingTokenError,
    TokenExpiredError,
    TokenRevokedError,
    UnsupportedTokenTypeError,
)
from ..revocation import RevocationStore
from ..validators.base import TokenValidator
from .binding import bearer_confirmation, check_certificate, confirmation_of
from .certificates import CertificateReader, presented_thumbprint
from .connection import ProxyHeaders, proxies_of
from .credentials import Credentials, digest, token_of
from .dpop import ProofChecker
from .hooks import call_hook
from .lane import LaneSetting
from .metadata import ResourceMetadata
from .proxies import TrustedProxies
from .refusing import Refusing
from .requirements import Requirement
from .revoking import Revoking, check_lifetime
from .routing import Router, check_registrable, scheme_credentials
from .sender import DPoPMode, DPoPScheme, check_mode, is_dpop
from .stats import GuardStats, validator_stats
from .tokeninfo import TokenInfo, replaced

__all__ = ["DEFAULT_CACHE", "Guard", "GuardStats"]

#: No token missed (``Guard._missed``).
_NO_MISS: tuple[str, bytes] = ("", b"")
#: ``credentials.digest`` without its frame, for the hit path.
_sha256 = hashlib.sha256

#: ``cache=`` not given: the guard makes its own TokenCache (None means no cache).
DEFAULT_CACHE: Any = object()


class Guard(Refusing, Revoking):
    """Bearer-token protection, framework-neutral: registry, routing, cache,
    deny-list and counters (see ``ResourceProtector`` for the parameters)."""

    def __init__(
        self,
        *,
        realm: str | None = "api",
        cache: TokenCache | None = DEFAULT_CACHE,
        revocations: RevocationStore | None = None,
        allow_form_token: bool = False,
        allow_query_token: bool = False,
        max_token_length: int = 8192,
        clock: Callable[[], float] = time.time,
        dpop: str = "allowed",
        dpop_proofs: ProofChecker | None = None,
        dpop_public_url: str | None = None,
        dpop_nonce: bool | bytes = False,
        resource: str | ResourceMetadata | None = None,
        client_certificate: CertificateReader | None = None,
        trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    ) -> None:
        self.realm = realm
        #: What this guard publishes (RFC 9728), None without ``resource=``.
        self.metadata = ResourceMetadata(resource) if isinstance(resource, str) else resource
        self.clock = clock
        self._cache = TokenCache(clock=clock) if cache is DEFAULT_CACHE else cache
        if self._cache is not None:
            self._cache.bind(self)  # one guard's validations, never another's
        self.revocations = revocations if revocations is not None else RevocationStore(clock=clock)
        self.revocations.add_listener(self._evict_key)
        self._allow_form_token = allow_form_token
        self._allow_query_token = allow_query_token
        self._max_token_length = max_token_length
        #: The registered validators, and which one a token goes to.
        self.router = Router()
        # The router's own containers, read on every request without a hop.
        self._request_checks = self.router.request_checks
        self._schemes = self.router.schemes
        self._others = self.router.others
        self._outcomes: Counter[str] = Counter()
        self._outcomes_lock = threading.Lock()
        renew_after_fork(self, "_outcomes_lock")
        self._accepted = AtomicCounter()
        #: The last token try_cached missed and its digest, for authenticate (next):
        #: one SHA-256 less per miss. One tuple, replaced whole: a matching pair.
        self._missed: tuple[str, bytes] = _NO_MISS
        #: Called with each authorization's duration in seconds (metrics); None: not timed.
        self.observe_latency: Callable[[float], None] | None = None
        #: The DPoP scheme's settings and checks (RFC 9449).
        self.sender = DPoPScheme(dpop, dpop_proofs, dpop_public_url, dpop_nonce)
        self.dpop = self.sender.mode
        self._open_lane()
        #: The proxies whose headers are believed (certificates, DPoP's htu).
        self.trusted_proxies = proxies_of(trusted_proxies)
        #: Which certificate a request came with (RFC 8705); None: certificate-bound
        #: tokens are refused.
        self.client_certificate = client_certificate
        #: What the fronts read from a trusted proxy into ``Credentials.proxy_headers``.
        self.proxy_headers = ProxyHeaders(self.trusted_proxies, client_certificate)

    @property
    def dpop(self) -> DPoPMode:
        """The DPoP mode of views that name none: allowed, required or disabled."""
        return self.sender.mode

    @dpop.setter
    def dpop(self, mode: str) -> None:
        self.sender.mode = check_mode(mode)
        # DPoP only: no Bearer hit may answer. Shadowing the method costs the
        # hot path nothing, where a test in it would cost every hit.
        if mode == "required":
            self.try_cached = _no_hit  # type: ignore[method-assign]
        else:
            # Not self.__dict__.pop(): reading __dict__ turns the instance's
            # inline attribute values into a dict, and every attribute read on
            # the hot path into a hashed lookup.
            with contextlib.suppress(AttributeError):
                del self.try_cached

    # -- configuration ---------------------------------------------------------

    @property
    def cache(self) -> TokenCache | None:
        """The token cache in front of the validators; None: every request validates."""
        return self._cache

    @cache.setter
    def cache(self, cache: TokenCache | None) -> None:
        if cache is not None:
            cache.bind(self)
        self._cache = cache
        self._open_lane()

    #: Accept an ``access_token`` form field (RFC 6750 §2.2).
    allow_form_token: LaneSetting[bool] = LaneSetting()
    #: Accept an ``access_token`` query parameter (RFC 6750 §2.3).
    allow_query_token: LaneSetting[bool] = LaneSetting()
    #: The longest token read; a longer one is a 400.
    max_token_length: LaneSetting[int] = LaneSetting()

    def _open_lane(self) -> None:
        """Decide, once per setting change rather than on every request, whether
        ``try_cached`` may answer at all: ``_lane`` is the cache then, else None.

        Not with a token that may come from elsewhere than the header (it must
        be refused when sent twice), nor with a request check the user wrote.
        """
        closed = self._request_checks or self._allow_query_token or self._allow_form_token
        self._lane = None if closed else self._cache
        self._longest_header = self._max_token_length + 7  # "Bearer " and the token

    def register_token_validator(self, validator: TokenValidator) -> None:
        """Add a validator for its ``TOKEN_TYPE`` (``Authorization`` scheme).

        Bearer: JWT validators are keyed by issuer, opaque ones tried in
        registration order. Other schemes' validators are tried in order.
        An Authlib validator (not ported) raises TypeError saying what to import.
        """
        check_registrable(validator)
        # Bound first: a JWT validator without audience= takes this guard's
        # resource (RFC 8707), or refuses, before it is routed to.
        validator.bind(self)
        self.router.register(validator)
        self._open_lane()  # a request check the validator brings closes it

    @property
    def validators(self) -> list[TokenValidator]:
        """Every registered validator, by scheme then registration order."""
        return self.router.validators

    @property
    def resource(self) -> str | None:
        """The resource identifier (RFC 8707/9728), the default JWT audience."""
        return self.metadata.resource if self.metadata is not None else None

    # -- the hot path -----------------------------------------------------------

    def try_cached(
        self,
        authorization: str | None,
        requirement: Requirement,
        hook_request: Callable[[], Any] | None = None,
    ) -> TokenInfo | None:
        """The common request, from the cache: a ``Bearer <token>`` header whose
        token is cached, live, unrevoked and has what ``requirement`` asks
        (else the counted 403 is raised). None: call :meth:`authorize`.

        ``hook_request`` builds what a ``validate_token`` hook gets as its
        request (``Credentials.hook_request``); without it, a token with
        per-request hooks is left to :meth:`authorize`. No syntax check: only
        tokens that passed ``parse_authorization`` are cached (for a JWT, that
        check would be the hit's largest cost).
        """
        cache = self._lane
        if (
            cache is None
            or authorization is None
            or authorization[:7] != "Bearer "
            or len(authorization) > self._longest_header
        ):
            return None
        token = authorization[7:]
        # digest(token) and cache.peek(key, now), inline: in a real request every
        # Python frame here costs several times what it costs in a warm loop.
        key = _sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self.clock()
        entry = cache._index.get(key)
        if entry is None or now >= entry.deadline:
            self._missed = (token, key)
            return None
        info = entry.info
        # Not plain: a certificate-bound token needs the request's certificate,
        # an is_expired() token its question asked (authorize does both); hooks
        # need their request.
        plain = entry.plain
        if not plain and (
            info.expiry_check is not None or info.confirmation is not None or hook_request is None
        ):
            return None
        revocations = self.revocations
        # Asked only when it could say yes: an empty deny-list with the gate
        # open (the store's own first test) refuses nothing.
        if (
            revocations.tokens or revocations.has_rules or now >= revocations.refuse_after
        ) and revocations.is_revoked(key, info, now):
            return None
        cache.hits.bump()
        if not plain:  # the validator's per-request hooks
            return self._admit(info, requirement, hook_request)  # type: ignore[arg-type]
        scopes_ok = requirement.scopes_ok
        if (scopes_ok is not None and not scopes_ok(info.scopes)) or requirement.claims:
            missing = requirement.missing(info)
            if missing is not None:
                raise self._refused(requirement.refusal(missing))
        self._accepted.bump()
        return info

    def authorize(
        self,
        credentials: Credentials,
        requirement: Requirement,
        optional: bool = False,
        dpop: DPoPMode | None = None,
    ) -> TokenInfo | None:
        """The whole decision for one request: its token found, validated (or
        taken from the cache), deny-list checked, and held to ``requirement``
        and the validator's per-request hooks.

        Returns the token's facts (``info.token`` re-attached when a hook
        needed a live row), or None for a request without credentials when
        ``optional``. Raises the refusal, counted and stamped. ``dpop``: the
        view's DPoP mode, when it names one.
        """
        mode = dpop or self.sender.mode
        try:
            info = self.authenticate(credentials, mode)
        except MissingTokenError as error:
            if optional:
                return None
            raise self._refused(self.sender.stamp(error, mode)) from None
        except BearerGuardError as error:
            raise self._refused(self.sender.stamp(error, mode)) from None
        try:
            return self._admit(info, requirement, credentials.oauth_request)
        except BearerGuardError as error:
            error.dpop_request = is_dpop(credentials.authorization)
            raise self.sender.stamp(error, mode) from None

    def _admit(
        self, info: TokenInfo, requirement: Requirement, hook_request: Callable[[], Any]
    ) -> TokenInfo:
        """Hold a found token to ``requirement`` and its validator's hooks, and
        count it; ``info`` with a live token if ``validate_token`` needed one
        (it may read a lazy relationship)."""
        policy = info.hooks
        try:
            if policy is None:
                # As on a hit: the scope test inline, missing() only when it fails.
                scopes_ok = requirement.scopes_ok
                if (scopes_ok is not None and not scopes_ok(info.scopes)) or requirement.claims:
                    missing = requirement.missing(info)
                    if missing is not None:
                        raise requirement.refusal(missing)
            else:
                token, reattach = info.token, info.reattach
                if reattach is not None and policy.validate_token is not None:
                    token = call_hook(reattach, token)
                    info = replaced(info, token=token, reattach=None)
                policy.check(info, token, requirement, hook_request())
        except BearerGuardError as error:
            if isinstance(error, InsufficientScopeError) and error.scope is None:
                error.scope = requirement.scope  # a hook's 403 names the scope too
            raise self._refused(error) from None
        self._accepted.bump()
        return info

    def authenticate(self, credentials: Credentials, dpop: DPoPMode | None = None) -> TokenInfo:
        """Find, validate and deny-list-check the request's token (no scope check)."""
        # Taken at once, whatever follows: the raw token is not kept past its request.
        missed, self._missed = self._missed, _NO_MISS
        mode = dpop or self.sender.mode
        dpop_scheme = is_dpop(credentials.authorization)
        if mode != "allowed" or dpop_scheme:
            if dpop_scheme and "dpop" not in self._others:
                return self.sender.authenticate(self, credentials, mode)
            if mode == "required":
                if credentials.authorization is None:
                    raise MissingTokenError()
                raise UnsupportedTokenTypeError()
        if self._others:
            found = scheme_credentials(
                credentials.authorization or "", self._others, self._max_token_length
            )
            if found is not None:
                return self._authenticate_scheme(credentials, *found)
        token = token_of(
            credentials,
            # The settings' own slots: their descriptor's __get__ is a call each.
            max_length=self._max_token_length,
            query=self._allow_query_token,
            form=self._allow_form_token,
        )
        if self._others and "bearer" not in self._schemes:
            raise UnsupportedTokenTypeError()
        for check in self._request_checks:
            check(credentials)
        cache = self._cache  # not the property: a call on every miss
        if missed[0] == token:
            # try_cached found no live entry for it a moment ago; load() looks
            # again under its lock, for one another thread stored since.
            key, entry = missed[1], None
        else:
            key = digest(token)
            entry = cache.get(key) if cache is not None else None
        if entry is not None:
            info = entry.info
            if info.expiry_check is not None and call_hook(info.expiry_check):
                cache.evict(key)  # type: ignore[union-attr]
                raise TokenExpiredError()
        elif cache is not None:
            info = cache.load(key, functools.partial(self.validate, token))
        else:
            info = self.validate(token)
        self.check_live(key, info)
        if info.confirmation is not None:  # RFC 8705: on every request, cached or not
            self.check_certificate(info.confirmation, credentials)
        return info

    def check_certificate(self, confirmation: Mapping[str, Any], credentials: Credentials) -> None:
        """Refuse unless the request's client certificate is the one
        ``confirmation`` names (``x5t#S256``); the reader runs behind the hook guard."""
        reader = self.client_certificate
        presented = None if reader is None else call_hook(presented_thumbprint, reader, credentials)
        check_certificate(confirmation, presented)

    def check_live(self, key: bytes, info: TokenInfo) -> None:
        """Expiry again, at the instant the deny-list is read, then the deny-list.

        A revocation ends at the token's exp, so a token seen unexpired at the
        cache lookup, or when a shared validation began, may find its deny-list
        entry already gone: it must be refused as expired then, not accepted.
        """
        now = self.clock()
        expires_at = info.expires_at
        if expires_at is not None and now >= expires_at:
            raise TokenExpiredError()
        revocations = self.revocations
        # As on a hit: asked only when it could say yes (or must open its gate).
        if (
            revocations.tokens or revocations.has_rules or now >= revocations.refuse_after
        ) and revocations.is_revoked(key, info, now):
            raise TokenRevokedError()

    def _authenticate_scheme(
        self, credentials: Credentials, scheme: str, presented: str
    ) -> TokenInfo:
        """A non-Bearer scheme (MAC, ...): its validators in order, never cached,
        since such credentials are bound to the request they sign."""
        validators = self._schemes[scheme]
        try:
            for check in self._others[scheme]:
                check(credentials)
            info = self.router.first_valid(validators, presented)
            if info.expiry_check is not None and call_hook(info.expiry_check):
                raise TokenExpiredError()
            self.check_live(digest(presented), info)
        except BearerGuardError as error:
            self.stamp(error, validators[0])
            raise
        return info

    # -- validation (cache misses) ------------------------------------------------

    def validate(self, token: str, bound: bool = False) -> TokenInfo:
        """Route ``token`` to its validator and check the store's lifetime bound
        (no cache, no deny-list): what a cache miss stores. ``bound``: the token
        came with a DPoP proof, its binding is kept; else a bound token is refused,
        but for one bound to a client certificate alone, checked per request."""
        info = self.router.route(token, bound)
        if not bound:
            # confirmation_of reads the user's token object: behind the hook guard.
            cnf = info.confirmation
            cnf = bearer_confirmation(
                cnf if cnf is not None else call_hook(confirmation_of, info.token)
            )
            if cnf is not info.confirmation:  # a model's x5t_s256: kept for every request
                info = replaced(info, confirmation=cnf)
        limit = self.revocations.max_token_lifetime
        if limit is not None:
            check_lifetime(info, limit)
        return info

    # -- observability ------------------------------------------------------------

    def stats(self) -> GuardStats:
        """Counters: validations by outcome and error code, cache, revocations,
        and each validator's own (JWKS fetches, introspection calls, ...)."""
        with self._outcomes_lock:
            refused = dict(self._outcomes)
        return {
            "validations": {"accepted": self._accepted.value, "refused": refused},
            "cache": self.cache.stats() if self.cache is not None else None,
            "revocations_applied": self.revocations.applied,
            "revocations": self.revocations.stats(),
            "validators": validator_stats(self.validators),
        }


def _no_hit(
    authorization: str | None, requirement: Requirement, hook_request: object = None
) -> None:
    """``try_cached`` of a guard that takes DPoP only: every request is decided in full."""
    return None
