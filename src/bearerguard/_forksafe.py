"""Locks a forked child must not inherit held.

A lock that another thread of the parent holds at the instant of a fork stays
held in the child for ever: that thread does not exist there. gunicorn's
``--preload`` forks its workers from a master that may be mid-way through a
JWKS fetch or a counter update, and such a worker would hang (or answer 503
for every JWKS miss) for its whole life. An object names its locks here once;
the child gets fresh ones before it runs any code of its own.

(The cache, the deny-list, the Redis link and the HTTP client renew more than
their locks after a fork, and do it themselves.)
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["renew_after_fork"]

#: The objects that own locks, and the attributes that hold them. Weak: an
#: object gone is forgotten. Keyed by identity, since some define ``__eq__``.
_owners: dict[int, tuple[weakref.ref[object], tuple[str, ...]]] = {}


def renew_after_fork(owner: object, *names: str) -> None:
    """Give ``owner`` a new ``threading.Lock`` in each attribute ``names`` in a
    forked child (``owner`` must be weak-referenceable)."""
    key = id(owner)
    _owners[key] = (weakref.ref(owner, lambda _ref: _owners.pop(key, None)), names)


def _renew() -> None:
    for ref, names in list(_owners.values()):
        owner = ref()
        if owner is not None:
            for name in names:
                object.__setattr__(owner, name, threading.Lock())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew)
