"""JWT access tokens (RFC 9068) validated locally against a JWKS. (In progress.)"""

from __future__ import annotations

from .base import TokenValidator

__all__ = ["JWTBearerTokenValidator"]


class JWTBearerTokenValidator(TokenValidator):
    kind = "jwt"
