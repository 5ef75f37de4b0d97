"""Opaque tokens checked by RFC 7662 introspection. (In progress.)"""

from __future__ import annotations

from .base import TokenValidator

__all__ = ["IntrospectionTokenValidator"]


class IntrospectionTokenValidator(TokenValidator):
    kind = "opaque"
