"""Validators the protector routes tokens to, one module per kind."""

from .base import TokenInfo, TokenValidator
from .bearer import BearerTokenValidator
from .introspection import IntrospectionTokenValidator
from .jwt import JWTBearerTokenValidator

__all__ = [
    "BearerTokenValidator",
    "IntrospectionTokenValidator",
    "JWTBearerTokenValidator",
    "TokenInfo",
    "TokenValidator",
]
