"""What a validation leaves in the cache: :class:`TokenInfo`, and the hook
that makes a framework's object (an ORM row) safe to share through it.

A validator turns a token string into a ``TokenInfo``: the object the view
sees as ``current_token`` plus the few facts the hot path needs (scopes,
expiry, who it belongs to). The guard caches that, so a cache hit never calls
back into the validator or touches the token object.
"""

from __future__ import annotations

import dataclasses
import importlib
import operator
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..validators.base import TokenValidator
    from .guard import Guard
    from .hooks import Policy

__all__ = [
    "Reattach",
    "SharedObjects",
    "TokenInfo",
    "new_info",
    "prepare_shared",
    "register_shared",
    "replaced",
]


class Reattach(Protocol):
    """Re-binds a cached copy of a token object to this request's resources.

    ``bearerguard.sqla`` gives one for ORM rows: the cache holds a detached
    copy, and a view's first read of something the copy lacks re-attaches it.
    """

    def __call__(self, copy: Any) -> Any:
        """The live object for ``copy`` (merged into the current session)."""
        ...

    def needed(self, error: Exception) -> bool:
        """True when ``error``, raised reading an attribute of the copy, means
        the read needs the live object (SQLAlchemy's DetachedInstanceError)."""
        ...


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A validated token and what the hot path checks on every hit."""

    #: What ``current_token`` resolves to: an ORM row, an object, or a claims
    #: mapping (the user's type, hence ``Any``).
    token: Any
    scopes: frozenset[str]
    #: Absolute expiry (epoch seconds), or None when the token states none.
    expires_at: float | None = None
    subject: str | None = None
    client_id: str | None = None
    jti: str | None = None
    issued_at: float | None = None
    #: A mapping of claims for ``groups=``/``roles=``/``entitlements=`` checks.
    claims: Mapping[str, Any] | None = None
    #: For tokens that only say ``is_expired()``: re-asked on every cache hit.
    expiry_check: Callable[[], bool] | None = None
    #: Re-binds a cached copy (an ORM row's) to the current request; None for
    #: tokens that need nothing of the kind.
    reattach: Reattach | None = None
    #: The latest time (epoch seconds) this validation may be trusted, if it
    #: ends before the cache's ttl would: a shared answer's own lifetime.
    cache_until: float | None = None
    #: The deny-list key, when it is not the token's digest: for a JWS, the
    #: digest of what is signed, which every spelling of its signature shares
    #: (see ``bearerguard.core.credentials.signed_content_digest``).
    revocation_key: bytes | None = None
    #: The per-request hooks its validator's subclass overrides; None (the
    #: usual case) costs a cache hit nothing.
    hooks: Policy | None = None
    #: The token's binding (RFC 7800 ``cnf``: ``jkt`` for DPoP), None for a
    #: bearer token; a bound token is accepted only with its proof.
    confirmation: Mapping[str, Any] | None = None
    #: The ``DPoP-Nonce`` the response should carry (RFC 9449 §8.2), set on
    #: this request's copy only, never on the cached info.
    dpop_nonce: str | None = None


_FIELDS = tuple(field.name for field in dataclasses.fields(TokenInfo))
_values: Callable[[TokenInfo], tuple[Any, ...]] = operator.attrgetter(*_FIELDS)


class _Unfrozen:
    """TokenInfo's very layout without its frozen ``__setattr__``: filled by
    plain slot stores, then made a TokenInfo by ``__class__`` assignment,
    which CPython allows between classes of the same slots."""

    __slots__ = TokenInfo.__slots__


def new_info(
    token: Any,
    scopes: frozenset[str],
    expires_at: float | None = None,
    subject: str | None = None,
    client_id: str | None = None,
    jti: str | None = None,
    issued_at: float | None = None,
    claims: Mapping[str, Any] | None = None,
    expiry_check: Callable[[], bool] | None = None,
    reattach: Reattach | None = None,
    cache_until: float | None = None,
    revocation_key: bytes | None = None,
    hooks: Policy | None = None,
    confirmation: Mapping[str, Any] | None = None,
    dpop_nonce: str | None = None,
) -> TokenInfo:
    """``TokenInfo(...)``, the same frozen object, for the validators' cache
    misses: a frozen dataclass sets each of its 15 fields by an
    ``object.__setattr__`` call (2.3 µs), this by slot stores (0.6 µs).
    The parameters are TokenInfo's fields (a test holds them equal)."""
    info: Any = _Unfrozen()
    info.token = token
    info.scopes = scopes
    info.expires_at = expires_at
    info.subject = subject
    info.client_id = client_id
    info.jti = jti
    info.issued_at = issued_at
    info.claims = claims
    info.expiry_check = expiry_check
    info.reattach = reattach
    info.cache_until = cache_until
    info.revocation_key = revocation_key
    info.hooks = hooks
    info.confirmation = confirmation
    info.dpop_nonce = dpop_nonce
    info.__class__ = TokenInfo
    return info  # type: ignore[no-any-return]


def replaced(info: TokenInfo, **changes: Any) -> TokenInfo:
    """``dataclasses.replace(info, **changes)`` without its Python loop over
    the fields (400 bytecodes): a database token's cache miss makes one, a
    DPoP request with a nonce one more."""
    values = dict(zip(_FIELDS, _values(info), strict=True))
    values.update(changes)
    return new_info(**values)


class SharedObjects(Protocol):
    """Makes a library's token objects safe to cache (``bearerguard.sqla``)."""

    def handles(self, token: object) -> bool:
        """True for an object of this library (a mapped row)."""
        ...

    def prepare(self, validator: TokenValidator, info: TokenInfo, guard: Guard | None) -> TokenInfo:
        """``info`` with a copy safe to share between requests (and threads)."""
        ...


_shared: list[SharedObjects] = []
#: Modules that register a :class:`SharedObjects` when imported, by the
#: library they serve: loaded at the first validation once that library is.
_ADAPTERS = {"sqlalchemy": "bearerguard.sqla"}


def register_shared(adapter: SharedObjects) -> None:
    """Add ``adapter``; called by the module that defines it, when imported."""
    if adapter not in _shared:
        _shared.append(adapter)


def prepare_shared(validator: TokenValidator, info: TokenInfo, guard: Guard | None) -> TokenInfo:
    """``info`` made safe to share by the adapter that handles its token, if any.

    An adapter module is loaded here, on a cache miss, only once its library
    is imported: a row of a model mapped by SQLAlchemy exists only then, and
    the user need not import ``bearerguard.sqla`` to get it handled.
    """
    for library, module in _ADAPTERS.items():
        if library in sys.modules and module not in sys.modules:
            importlib.import_module(module)
    for adapter in _shared:
        if adapter.handles(info.token):
            return adapter.prepare(validator, info, guard)
    return info
