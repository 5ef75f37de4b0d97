"""A verified JWT's claims as ``current_token`` serves them: read-only, and shared.

A cached token's claims live as long as its cache entry, and every cached JWT
of an issuer repeats most of its bytes (claim names, ``iss``, ``aud``,
``scope``, the header): :class:`AccessTokenClaims` freezes them and shares the
repeating strings, so an entry costs about a third of its own copies.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from ..core.frozen import FrozenDict, ReadOnlyClaims, freeze
from ..core.shared import SHARED_MAX, share, shared_values

__all__ = ["AccessTokenClaims"]


class AccessTokenClaims(ReadOnlyClaims):
    """``current_token`` for a JWT: its verified claims, read-only.

    A mapping (``current_token["sub"]``) with Authlib's ``get_scope()`` and the
    JOSE ``header``. It is shared by every request that presents the same
    token while the token is cached, so it refuses changes, and so do the
    lists and objects in it (``current_token["roles"]`` is a read-only
    ``list``); ``dict(token)`` is a private, mutable copy of the top level.
    """

    __slots__ = ("header",)

    def __init__(self, claims: Mapping[str, Any], header: Mapping[str, Any] | None = None) -> None:
        dict.__init__(self, _shared_claims(claims))
        self.header: Mapping[str, Any] = _shared_header(header or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self), dict(self.header)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


# Every cached JWT of an issuer repeats most of its bytes: the claim names,
# iss, aud, client_id, scope, the header. Shared, a cached token costs about a
# third of what it costs with its own copies (issue 5: <= 1 KiB per entry).
# Bounded as core.shared's values are; only the values of claims that repeat
# are shared, so unique ones cannot fill the table.
_shared_headers: dict[tuple[tuple[str, str], ...], Mapping[str, Any]] = {}


_CONTAINERS = frozenset({list, dict})
_intern = sys.intern
#: Claims whose values repeat from token to token (not jti, exp, sub...).
_SHARED_NAMES = frozenset(
    {"iss", "aud", "azp", "client_id", "scope", "typ", "alg", "kid", "token_use", "acr", "type"}
)


def _shared_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The claims with names interned, repeating strings shared, and lists and
    objects frozen: a plain dict, whose item stores are the interpreter's
    fastest (built in the read-only mapping with ``dict.__setitem__``, the
    claims of a token cost 3.6 µs, this and the copy 2.5)."""
    names = tuple(claims)
    layout = _layouts.get(names)
    if layout is None:
        layout = _layout(names)
    interned, positions = layout
    values = list(claims.values())
    known = shared_values
    for at in positions:
        value = values[at]
        if type(value) is str:
            values[at] = known.get(value) or share(value)
    if _CONTAINERS.intersection(map(type, values)):
        values = [freeze(v) if type(v) in _CONTAINERS else v for v in values]
    return dict(zip(interned, values, strict=True))


#: The claim names of a token, in order (every token of an issuer repeats
#: them), to their interned copies and the positions of the claims whose
#: values repeat: a miss then interns no name and tests none (a tuple lookup).
_layouts: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...]]] = {}


def _layout(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    interned = tuple(map(_intern, names))
    layout = interned, tuple(at for at, name in enumerate(names) if name in _SHARED_NAMES)
    if len(_layouts) < SHARED_MAX:
        _layouts[interned] = layout
    return layout


def _frozen_header(header: Mapping[str, Any]) -> FrozenDict:
    frozen = dict.__new__(FrozenDict)
    dict.update(frozen, _shared_claims(header))
    return frozen


def _shared_header(header: Mapping[str, Any]) -> Mapping[str, Any]:
    if type(header) is FrozenDict:
        return header  # the read-only header every token of its key shares (jose.jws)
    for value in header.values():
        if type(value) is not str:
            # Only headers of strings are shared. 1, 1.0 and True are equal and
            # hash alike, so a key holding them would give a token the header
            # of an earlier one (its x: true read back as 1).
            return _frozen_header(header)
    key = tuple(header.items())
    shared = _shared_headers.get(key)
    if shared is None:
        shared = _frozen_header(header)
        if len(_shared_headers) < SHARED_MAX:
            _shared_headers[key] = shared
    return shared
