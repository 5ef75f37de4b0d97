"""bearerguard: OAuth 2.0 bearer-token protection for Flask APIs.

A drop-in for Authlib's Flask ``ResourceProtector`` that routes tokens to JWT
or opaque validators, caches validations, and enforces revocation.
"""

from .cache import TokenCache
from .errors import (
    BearerGuardError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    SigningKeysUnavailableError,
    TokenExpiredError,
    TokenRevokedError,
    UnknownTokenError,
    UnsupportedTokenTypeError,
    ValidatorUnavailableError,
)
from .protector import ResourceProtector, current_token, token_authenticated
from .revocation import RevocationStore

__all__ = [
    "BearerGuardError",
    "InsufficientScopeError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MissingTokenError",
    "ResourceProtector",
    "RevocationStore",
    "SigningKeysUnavailableError",
    "TokenCache",
    "TokenExpiredError",
    "TokenRevokedError",
    "UnknownTokenError",
    "UnsupportedTokenTypeError",
    "ValidatorUnavailableError",
    "current_token",
    "token_authenticated",
]

__version__ = "0.1.0"
