"""bearerguard: OAuth 2.0 bearer-token protection for Python APIs.

A drop-in for Authlib's Flask ``ResourceProtector`` that routes tokens to JWT
or opaque validators, caches validations, and enforces revocation.

The Flask front (``ResourceProtector``, ``current_token``,
``token_authenticated``) is imported on first use (PEP 562), so
``import bearerguard.validators`` and the other framework-neutral modules
never load Flask.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cache import TokenCache
from .core.metadata import ResourceMetadata
from .errors import (
    BearerGuardError,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    SigningKeysUnavailableError,
    TokenExpiredError,
    TokenRevokedError,
    UnknownTokenError,
    UnsupportedTokenTypeError,
    UseDPoPNonceError,
    ValidatorUnavailableError,
)
from .revocation import RevocationStore

if TYPE_CHECKING:
    from .protector import ResourceProtector, current_token, token_authenticated

__all__ = [
    "BearerGuardError",
    "InsufficientScopeError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "MissingTokenError",
    "ResourceMetadata",
    "ResourceProtector",
    "RevocationStore",
    "SigningKeysUnavailableError",
    "TokenCache",
    "TokenExpiredError",
    "TokenRevokedError",
    "UnknownTokenError",
    "UnsupportedTokenTypeError",
    "UseDPoPNonceError",
    "ValidatorUnavailableError",
    "current_token",
    "token_authenticated",
]

__version__ = "0.1.0"

#: What the Flask front provides, loaded with it on first access.
_FLASK_FRONT = frozenset({"ResourceProtector", "current_token", "token_authenticated"})


def __getattr__(name: str) -> Any:
    if name in _FLASK_FRONT:
        value = getattr(importlib.import_module(".protector", __name__), name)
        globals()[name] = value  # later reads skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _FLASK_FRONT)
