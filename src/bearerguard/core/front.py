"""What every front shares: its guard's settings as its own attributes, and
the decorator's two spellings of the scope.

A front (Flask's ``ResourceProtector``, the ASGI one) holds a
:class:`~bearerguard.core.guard.Guard` as ``guard`` and adds its framework's
side; users read ``require_oauth.cache`` or set ``require_oauth.realm`` as
they did when the protector was all there was.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, overload

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["GuardSetting", "HasGuard", "one_scope"]

T = TypeVar("T")


class HasGuard(Protocol):
    """A front: anything that decides through a guard."""

    guard: Guard


class GuardSetting(Generic[T]):
    """An attribute of the front's guard, read and written through the front::

    class ResourceProtector:
        realm: GuardSetting[str | None] = GuardSetting()
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, front: None, owner: type) -> GuardSetting[T]: ...

    @overload
    def __get__(self, front: HasGuard, owner: type) -> T: ...

    def __get__(self, front: HasGuard | None, owner: type) -> T | GuardSetting[T]:
        if front is None:
            return self
        value: T = getattr(front.guard, self.name)
        return value

    def __set__(self, front: HasGuard, value: T) -> None:
        setattr(front.guard, self.name, value)


def one_scope(
    scope: str | Iterable[str] | None, scopes: str | Iterable[str] | None
) -> str | Iterable[str] | None:
    """``scope`` (bearerguard's, positional) or ``scopes=`` (Authlib's keyword)."""
    if scopes is None:
        return scope
    if scope is not None:
        raise TypeError("pass scope or scopes=, not both")
    return scopes
