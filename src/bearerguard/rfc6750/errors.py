"""Authlib's ``authlib.oauth2.rfc6750.errors`` import path: the RFC 6750 refusals."""

from ..errors import InsufficientScopeError, InvalidTokenError

__all__ = ["InsufficientScopeError", "InvalidTokenError"]
