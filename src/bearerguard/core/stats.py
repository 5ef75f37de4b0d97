"""The shape of ``stats()``: what a guard counts, typed for ``metrics.py``
and for anyone who reads the counters.

Counters are read when asked for (a scrape), never pushed, so they cost the
hot path one lock-free bump per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from ..validators.base import TokenValidator

__all__ = ["CacheStats", "GuardStats", "ValidationStats", "validator_stats"]


class ValidationStats(TypedDict):
    """Authorizations: accepted, and refused by error code (``missing_token``
    for a request without credentials)."""

    accepted: int
    refused: dict[str, int]


class CacheStats(TypedDict):
    """A :class:`~bearerguard.TokenCache`'s events and size."""

    hits: int
    misses: int
    negative_hits: int
    evictions: int
    single_flight_waits: int
    size: int


class GuardStats(TypedDict):
    """What :meth:`Guard.stats` (and ``ResourceProtector.stats``) returns."""

    validations: ValidationStats
    #: None when the guard validates every request (``cache=None``).
    cache: CacheStats | None
    revocations_applied: int
    #: The deny-list's sizes and, for a shared store, its link's state: the
    #: store's own counters (numbers and flags), as it reports them.
    revocations: Mapping[str, object]
    #: Each validator's counters, by ``kind:issuer`` or ``kind:index:class``.
    validators: dict[str, Mapping[str, object]]


def validator_stats(validators: Iterable[TokenValidator]) -> dict[str, Mapping[str, object]]:
    """The counters of every validator that keeps some (a ``stats()`` method)."""
    found: dict[str, Mapping[str, object]] = {}
    for index, validator in enumerate(validators):
        counters = getattr(validator, "stats", None)
        if callable(counters):
            name = validator.issuer or f"{index}:{type(validator).__name__}"
            found[f"{validator.kind}:{name}"] = counters()
    return found
