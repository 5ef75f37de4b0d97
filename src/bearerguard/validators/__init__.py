"""Validators the protector routes tokens to, one module per kind."""

from .base import TokenInfo, TokenValidator
from .bearer import BearerTokenValidator
from .introspection import IntrospectionTokenValidator
from .jwt import ANY_AUDIENCE, RFC9068_CLAIMS, AccessTokenClaims, JWTBearerTokenValidator

__all__ = [
    "ANY_AUDIENCE",
    "RFC9068_CLAIMS",
    "AccessTokenClaims",
    "BearerTokenValidator",
    "IntrospectionTokenValidator",
    "JWTBearerTokenValidator",
    "TokenInfo",
    "TokenValidator",
]
