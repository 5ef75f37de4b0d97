"""Values that repeat from token to token, kept once for every cached token.

Tokens of one issuer or one database repeat their ``iss``, ``aud``,
``client_id`` and ``scope``: each cached token holding its own copies would
pay their bytes again, and each copy would be one more object for the
garbage collector to walk on every full collection. Bounded: past
:data:`SHARED_MAX` distinct values, new ones are kept unshared, so values
that never repeat cannot fill the tables.
"""

from __future__ import annotations

from typing import Any

from .values import values_of

__all__ = ["SHARED_MAX", "share", "shared_scopes_of", "shared_values"]

SHARED_MAX = 4096
#: Each shared string, by itself.
shared_values: dict[str, str] = {}
_shared_scopes: dict[str, frozenset[str]] = {}


def share(value: Any) -> Any:
    """``value``, or the equal string kept before it (strings of up to 128 characters)."""
    # Strings only: a key of 1 would also find 1.0 and True, which are equal.
    if type(value) is not str or len(value) > 128:
        return value
    shared = shared_values.get(value)
    if shared is not None:
        return shared
    if len(shared_values) < SHARED_MAX:
        shared_values[value] = value
    return value


def shared_scopes_of(value: Any) -> frozenset[str]:
    """The scopes of a ``scope`` (or ``scp``) value, a set shared by the tokens that repeat it."""
    if type(value) is not str:
        return values_of(value)
    scopes = _shared_scopes.get(value)
    if scopes is None:
        scopes = frozenset(share(s) for s in value.split())
        if len(_shared_scopes) < SHARED_MAX:
            _shared_scopes[value] = scopes
    return scopes
