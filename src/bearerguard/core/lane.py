"""The guard's settings that its hit lane depends on.

``Guard.try_cached`` answers a request from the cache only when nothing else
must be read from it: no token in the query or the form, no user-written
request check. That is decided when a setting changes, not on every request:
:class:`LaneSetting` is such a setting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar, overload

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["LaneSetting"]

T = TypeVar("T")


class LaneSetting(Generic[T]):
    """A guard setting ``try_cached`` depends on: kept as ``_<name>``, and
    setting it reopens or closes the hit lane (``Guard._open_lane``)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.private = f"_{name}"

    @overload
    def __get__(self, guard: None, owner: type) -> LaneSetting[T]: ...

    @overload
    def __get__(self, guard: Guard, owner: type) -> T: ...

    def __get__(self, guard: Guard | None, owner: type) -> T | LaneSetting[T]:
        if guard is None:
            return self
        value: T = getattr(guard, self.private)
        return value

    def __set__(self, guard: Guard, value: T) -> None:
        setattr(guard, self.private, value)
        guard._open_lane()
