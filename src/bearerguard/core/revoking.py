"""Revocation, as the guard offers it: what a token proves decides how long
the deny-list refuses it.

A mix-in of :class:`~bearerguard.core.guard.Guard`, kept apart because it
is the guard's other half: the hot path only reads the deny-list, this writes it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from .._log import fingerprint, logger
from ..cache import TokenCache
from ..errors import InvalidTokenError, TokenExpiredError, TokenRevokedError, UnknownTokenError
from ..revocation import RevocationStore
from .credentials import digest
from .routing import Router
from .tokeninfo import TokenInfo

__all__ = ["Revoking", "check_lifetime"]


class Revoking:
    """``revoke``, ``revoke_jti``, ``revoke_subject``, ``revoke_client``, ``evict``."""

    cache: TokenCache | None
    revocations: RevocationStore
    clock: Callable[[], float]
    router: Router

    def validate(self, token: str) -> TokenInfo:
        raise NotImplementedError  # the guard's miss path

    def revoke(self, token_string: str) -> None:
        """Refuse ``token_string`` from the next request on, as long as it could be accepted.

        The token is checked first, by its cached validation or its validator
        (the deny-list aside), so that only what it proves is believed:

        * valid: refused until its verified expiry, however far (for ever if
          it states none). A JWS is revoked by what it signs, so every
          spelling of its signature is refused with it;
        * expired, revoked or unknown: it can never be accepted, so nothing is
          stored; every process's cache forgets it (``evict``);
        * not verifiable now (its validator is down, or refuses it for a
          reason that may pass, such as ``nbf``): refused until the expiry the
          string states, at most ``revocations.unverified_lifetime``, and at
          most ``revocations.max_unverified`` such entries are kept; past
          that this raises :class:`~bearerguard.errors.ValidatorUnavailableError`.
        """
        key = digest(token_string)
        try:
            info: TokenInfo | None = self._revocable(key, token_string)
        except (TokenExpiredError, TokenRevokedError, UnknownTokenError):
            self.revocations.evict(key)
            logger.info("revoke: token %s is refused anyway", fingerprint(token_string))
            return
        except Exception:  # an outage, a failing hook, a refusal that may pass
            info = None  # handled below, out of the except: nothing chains to it
        if info is None:
            router = self.router
            deny_key = router.revocation_key(key, token_string)
            until = router.stated_expiry(token_string)
            self.revocations.revoke_token(deny_key, until, verified=False)
        else:
            until = info.expires_at if info.expires_at is not None else math.inf
            self.revocations.revoke_token(info.revocation_key or key, until)
        self._evict_key(key)  # a JWS's entry is not under its revocation key
        verified = "" if info is not None else "unverified "
        logger.info("revoked %stoken %s", verified, fingerprint(token_string))

    def _revocable(self, key: bytes, token_string: str) -> TokenInfo:
        """The token's verified facts, from the cache or a validator (no deny-list)."""
        entry = self.cache.peek(key, self.clock()) if self.cache is not None else None
        if entry is None:
            return self.validate(token_string)
        info = entry.info
        if info.expiry_check is not None and info.expiry_check():
            raise TokenExpiredError()
        return info

    def revoke_jti(self, jti: str, exp: float) -> None:
        """Refuse every token with this ``jti`` until ``exp``."""
        self.revocations.revoke_jti(jti, float(exp))

    def revoke_subject(self, subject: str, before: float | None = None) -> None:
        """Refuse every token of ``subject`` issued up to ``before`` (default: now).

        The rule lasts as long as such a token can: for ever, unless the
        store's ``max_token_lifetime`` bounds every token accepted.
        """
        self.revocations.revoke_subject(subject, self.clock() if before is None else before)

    def revoke_client(self, client_id: str, before: float | None = None) -> None:
        """Refuse every token of ``client_id`` issued up to ``before`` (default: now),
        for as long as :meth:`revoke_subject` keeps its rule."""
        self.revocations.revoke_client(client_id, self.clock() if before is None else before)

    def evict(self, token_string: str) -> None:
        """Forget a cached validation everywhere (the token changed), without refusing it."""
        self.revocations.evict(digest(token_string))

    def _evict_key(self, key: bytes) -> None:
        if self.cache is not None:
            self.cache.evict(key)


def check_lifetime(info: TokenInfo, limit: float) -> None:
    """Refuse a token that may outlive ``limit`` seconds: a subject or client
    rule is kept only that long, and must not lapse while a token it covers lives."""
    if info.expires_at is None:
        raise InvalidTokenError("token states no expiry")
    if info.issued_at is None:
        raise InvalidTokenError("token states no issue time")
    if info.expires_at - info.issued_at > limit:
        raise InvalidTokenError("token lifetime exceeds the limit")
