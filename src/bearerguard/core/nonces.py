"""DPoP server nonces (RFC 9449 §8, §9): :class:`NonceIssuer`, stateless.

A nonce is a time step and its HMAC, so every worker that shares the secret
accepts every other's nonces with no shared state. The proof checks that
demand one are :class:`bearerguard.core.dpop.ProofChecker`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections.abc import Callable

from .routing import b64url_decode

__all__ = ["NonceIssuer"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class NonceIssuer:
    """Server nonces (RFC 9449 §8, §9), stateless: a time step and its HMAC.

    A nonce is good for the step it was issued in and the next one, so for
    ``step`` to ``2 * step`` seconds. Every worker given the same ``secret``
    accepts every other worker's nonces with no shared state; the default, a
    random secret, suits one process only.
    """

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        step: float = 300.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if secret is not None and len(secret) < 16:
            raise ValueError("a nonce secret must be 16 bytes or more")
        if step <= 0:
            raise ValueError("step must be positive")
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.step = float(step)
        self.clock = clock

    def _mac(self, counter: int) -> bytes:
        return hmac.new(self._secret, struct.pack(">Q", counter), hashlib.sha256).digest()[:16]

    def issue(self, now: float) -> str:
        """The nonce of the current step."""
        counter = int(now // self.step)
        return _b64(struct.pack(">Q", counter) + self._mac(counter))

    def renewal(self, nonce: object, now: float) -> str | None:
        """The current nonce when ``nonce`` (a valid one) is the previous
        step's, which ends with this step: what a success response sends in
        ``DPoP-Nonce`` (RFC 9449 §8.2) so the client never meets a 401 for it."""
        counter = self._counter(nonce)
        return self.issue(now) if counter == int(now // self.step) - 1 else None

    def valid(self, nonce: object, now: float) -> bool:
        """True for a nonce of this issuer from the current or the previous step."""
        current = int(now // self.step)
        return self._counter(nonce) in (current, current - 1)

    def _counter(self, nonce: object) -> int | None:
        """The step ``nonce`` was issued in, if it is one of this issuer's."""
        if not isinstance(nonce, str) or len(nonce) != 32:
            return None
        try:
            raw = b64url_decode(nonce)
        except ValueError:
            return None
        if len(raw) != 24:
            return None
        counter: int = struct.unpack(">Q", raw[:8])[0]
        return counter if hmac.compare_digest(raw[8:], self._mac(counter)) else None
