"""Authlib's ``authlib.oauth2.rfc6750`` import path, over bearerguard's own classes.

Migrating from Authlib is then an import rewrite::

    from authlib.oauth2.rfc6750 import BearerTokenValidator   # before
    from bearerguard.rfc6750 import BearerTokenValidator      # after
"""

from ..validators.bearer import BearerTokenValidator
from .errors import InsufficientScopeError, InvalidTokenError

__all__ = ["BearerTokenValidator", "InsufficientScopeError", "InvalidTokenError"]
