"""The DPoP scheme (RFC 9449 §7): ``Authorization: DPoP <token>`` with its proof.

:class:`DPoPScheme` is the guard's part for it: which requests may or must use
it (the mode, per guard and per view), the proof's checks
(:class:`~bearerguard.core.dpop.ProofChecker`), the token's validation (cached
as a Bearer token's is, under its own key, so a Bearer request never finds a
bound token's entry) and the binding of the one to the other
(:func:`~bearerguard.core.binding.check_binding`). A Bearer cache hit never
comes here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from ..errors import BearerGuardError, TokenExpiredError, UnsupportedTokenTypeError
from .binding import X5T_S256, check_binding
from .credentials import Credentials, digest, parse_authorization
from .dpop import NonceIssuer, ProofChecker, normalized_uri
from .hooks import call_hook
from .tokeninfo import TokenInfo, replaced

if TYPE_CHECKING:
    from .guard import Guard
    from .proxies import TrustedProxies

__all__ = ["MODES", "DPoPMode", "DPoPScheme", "check_mode", "dpop_values", "is_dpop"]

DPoPMode = Literal["allowed", "required", "disabled"]
MODES: tuple[DPoPMode, ...] = ("allowed", "required", "disabled")


def is_dpop(authorization: str | None) -> bool:
    """True for an ``Authorization`` value of the DPoP scheme (any case)."""
    return authorization is not None and authorization[:5].lower() == "dpop "


def dpop_values(joined: str | None) -> tuple[str, ...]:
    """The ``DPoP`` header values from one field value: WSGI servers join
    repeated headers with commas, which no compact JWS holds."""
    if joined is None:
        return ()
    if "," not in joined:  # the one proof of nearly every request
        return (joined.strip(" \t"),)
    return tuple(value.strip(" \t") for value in joined.split(","))


def check_mode(mode: str) -> DPoPMode:
    if mode not in MODES:
        raise ValueError(f"dpop must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


class DPoPScheme:
    """What a guard does with DPoP requests.

    :param mode: ``"allowed"`` (bound tokens with DPoP, unbound ones with
        Bearer), ``"required"`` (DPoP only) or ``"disabled"`` (the scheme is
        unsupported; bound tokens stay refused as Bearer tokens).
    :param proofs: the proof checks (algorithms, ``iat`` window, replay store).
    :param nonce: server nonces (RFC 9449 §8): True, with a random secret
        (one process); bytes, the secret every worker shares, so each accepts
        the others' nonces with no shared state. Shorthand for
        ``ProofChecker(nonces=NonceIssuer(secret))``.
    :param public_url: the scheme and authority (and path prefix) clients
        use, behind a proxy: ``htu`` is compared with it plus the path the
        server saw. None: the URL the WSGI/ASGI server saw, with the scheme
        and host a trusted proxy forwarded (the guard's ``trusted_proxies``);
        forwarded headers from any other peer are never read.
    """

    def __init__(
        self,
        mode: str = "allowed",
        proofs: ProofChecker | None = None,
        public_url: str | None = None,
        nonce: bool | bytes = False,
    ) -> None:
        self.mode = check_mode(mode)
        self.proofs = proofs if proofs is not None else ProofChecker()
        if nonce is not False:
            if self.proofs.nonces is not None:
                raise ValueError("give nonces either in dpop_proofs or as dpop_nonce, not both")
            self.proofs.nonces = NonceIssuer(None if nonce is True else nonce)
        if public_url is not None:
            normalized_uri(public_url)  # ValueError now, not at the first request
        self.public_url = public_url.rstrip("/") if public_url is not None else None

    @property
    def algs(self) -> str:
        """The ``algs`` of the DPoP challenge."""
        return " ".join(self.proofs.algorithms)

    def request_uri(
        self,
        url: str,
        proxies: TrustedProxies | None = None,
        forwarded: Mapping[str, str] | None = None,
    ) -> str:
        """The URI the proof's ``htu`` must name (query and fragment are dropped
        later): ``public_url`` if set, else ``url`` with what a trusted proxy
        forwarded (``forwarded``: ``Credentials.proxy_headers``)."""
        if self.public_url is None:
            return url if proxies is None else proxies.public_url(url, forwarded or {})
        rest = url.split("://", 1)[-1]
        slash = rest.find("/")
        return self.public_url + (rest[slash:] if slash >= 0 else "/")

    def stamp(self, error: BearerGuardError, mode: DPoPMode) -> BearerGuardError:
        """Give ``error`` the DPoP challenge when the scheme is offered for it."""
        if mode == "disabled" or not (error.dpop_request or mode == "required"):
            return error
        error.dpop_algs = self.algs
        error.bearer_accepted = mode != "required"
        return error

    def authenticate(self, guard: Guard, credentials: Credentials, mode: DPoPMode) -> TokenInfo:
        """The token of a DPoP request, its proof checked and bound to it."""
        if mode == "disabled":
            raise UnsupportedTokenTypeError()
        try:
            return self._authenticate(guard, credentials)
        except BearerGuardError as error:
            error.dpop_request = True
            raise

    def _authenticate(self, guard: Guard, credentials: Credentials) -> TokenInfo:
        header = credentials.authorization or ""
        # "DPoP <token>" (is_dpop matched the scheme) read as "Bearer <token>":
        # the same syntax checks, the length one on the value as sent. The
        # setting's slot, not its descriptor (a call on every DPoP request).
        token = parse_authorization("Bearer" + header[4:], guard._max_token_length)
        uri = self.request_uri(credentials.url, guard.trusted_proxies, credentials.proxy_headers)
        key = digest(token)  # once: ath, the cache key and the deny-list key
        proofs, method = credentials.dpop, credentials.method
        proof = self.proofs.verify(proofs, method, uri, token, guard.clock(), token_digest=key)
        for check in guard.router.request_checks:
            check(credentials)
        info = self._validated(guard, token, key)
        guard.check_live(key, info)
        confirmation = info.confirmation or {}
        check_binding(confirmation, {"jkt": proof.jkt})
        if X5T_S256 in confirmation:  # bound to a certificate too (RFC 8705): both must match
            guard.check_certificate(confirmation, credentials)
        # Per request, on a copy: the cached info is every request's.
        return info if proof.next_nonce is None else replaced(info, dpop_nonce=proof.next_nonce)

    def _validated(self, guard: Guard, token: str, token_digest: bytes) -> TokenInfo:
        """The token's validation, from the cache under a key of its own."""
        cache = guard._cache  # not the property: a call on every DPoP request
        if cache is None:
            return guard.validate(token, bound=True)
        # 37 bytes: these keys never meet a Bearer token's (a 32-byte digest).
        key = token_digest + b"\0dpop"
        entry = cache.get(key)
        if entry is None:
            return cache.load(key, lambda: guard.validate(token, bound=True))
        info = entry.info
        if info.expiry_check is not None and call_hook(info.expiry_check):
            cache.evict(key)
            raise TokenExpiredError()
        return info
