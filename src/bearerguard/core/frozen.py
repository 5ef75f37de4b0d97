"""Read-only JSON values, for the claims every request of a cached token shares.

A cached token's claims are one object for all the requests that present it,
so a view that changes a claim in place (``current_token["roles"] +=
["admin"]``) would change it for every later request too. :func:`freeze`
copies a parsed JSON value into :class:`FrozenList` and :class:`FrozenDict`:
subclasses of ``list`` and ``dict`` that refuse every change, at any depth,
while ``isinstance``, ``==``, iteration and ``json.dumps`` work as before.
``list(value)`` and ``dict(value)`` are private, mutable (shallow) copies.

Built once, on the cache miss; a cache hit never touches them.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["FrozenDict", "FrozenList", "ReadOnlyClaims", "freeze"]


#: The JSON values that cannot change (the types ``json`` parses them into).
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _read_only(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(
        "token claims are read-only (shared by every request of a cached token); "
        "change a copy: dict(token), list(value), dict(value)"
    )


class FrozenList(list[Any]):
    """A ``list`` that refuses changes. Build it with :func:`freeze`, which
    freezes its items too (the constructor takes them as they are)."""

    __slots__ = ()

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only
    append = extend = insert = pop = remove = clear = sort = reverse = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        # copy, deepcopy and pickle would rebuild it with append, which is refused.
        return (type(self), (list(self),))


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses changes. Build it with :func:`freeze`, which
    freezes its values too (the constructor takes them as they are)."""

    __slots__ = ()

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


_FROZEN = (FrozenList, FrozenDict)


def freeze(value: Any) -> Any:
    """``value`` with every list and dict in it, at any depth, a read-only copy.

    Scalars and already frozen values are returned as they are. Iterative, not
    recursive: a token may nest as deep as the JSON parser allows.
    """
    pending: list[tuple[Any, Any]] = []
    frozen = _shell(value, pending)
    while pending:
        source, shell = pending.pop()
        if type(shell) is FrozenList:
            # list.__init__ allocates exactly len(items) slots; appends would over-allocate.
            list.__init__(shell, [_shell(item, pending) for item in source])
        else:
            for key, item in source.items():
                dict.__setitem__(shell, key, _shell(item, pending))
    return frozen


def _shell(value: Any, pending: list[tuple[Any, Any]]) -> Any:
    """``value`` frozen when it holds only scalars (the usual claim: a list of
    strings); else an empty read-only container for it, queued to be filled.
    Scalars and frozen values are returned as they are."""
    kind = type(value)
    if kind in _SCALARS or isinstance(value, _FROZEN):
        return value
    if kind is list or isinstance(value, list):
        if _SCALARS.issuperset(map(type, value)):
            return FrozenList(value)
        shell: Any = FrozenList()
    elif kind is dict or isinstance(value, dict):
        if _SCALARS.issuperset(map(type, value.values())):
            return FrozenDict(value)
        shell = FrozenDict()
    else:
        return value  # not JSON: left to the caller
    pending.append((value, shell))
    return shell


class ReadOnlyClaims(FrozenDict):
    """A token's claims as ``current_token`` shows them: a read-only mapping
    (``current_token["sub"]``) with Authlib's ``get_scope()``.

    The base of the JWT's ``AccessTokenClaims`` and introspection's
    ``IntrospectionToken``: shared by every request of a cached token, so it
    refuses changes at any depth; ``dict(token)`` is a private, mutable copy
    of the top level.
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        claims = dict(*args, **kwargs)
        dict.__init__(self, {name: freeze(value) for name, value in claims.items()})

    def get_scope(self) -> str:
        """The granted scopes as one space-separated string (``scope`` or ``scp``)."""
        scope = self.get("scope")
        if isinstance(scope, str):
            return scope
        scp = scope if scope is not None else self.get("scp")
        if isinstance(scp, list):
            return " ".join(s for s in scp if isinstance(s, str))
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"
