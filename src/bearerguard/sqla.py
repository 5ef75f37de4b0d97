"""SQLAlchemy glue: the validator factory, cached rows, and eviction on commit.

Needs the ``sqla`` extra. Works with Flask-SQLAlchemy's ``db.session``, a
``scoped_session`` or a plain ``Session``, and with both token models seen in
the wild: the seed-era one (a ``revoked`` boolean) and Authlib 1.x's
``OAuth2TokenMixin`` (``access_token_revoked_at``, ``issued_at`` +
``expires_in``).
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from sqlalchemy import bindparam, event, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, instance_state
from sqlalchemy.orm.exc import DetachedInstanceError

from ._forksafe import renew_after_fork
from ._log import logger
from .core.guard import Guard
from .core.requirements import AUTHORIZATION_CLAIMS
from .core.tokeninfo import TokenInfo, register_shared, replaced
from .core.values import values_of
from .validators.base import TokenValidator
from .validators.bearer import BearerTokenValidator

__all__ = ["create_bearer_token_validator"]

_PENDING = "bearerguard_evict"
_TOKEN_PARAMETER = "bearerguard_token"
#: Columns never copied into the cache (Authlib's OAuth2TokenMixin names).
_TOKEN_COLUMNS = ("access_token", "refresh_token")


def create_bearer_token_validator(session: Any, token_model: type) -> type[BearerTokenValidator]:
    """A validator class that finds tokens by their ``access_token`` column.

    Example::

        BearerTokenValidator = create_bearer_token_validator(db.session, Token)
        require_oauth.register_token_validator(BearerTokenValidator())

    A commit that changes or deletes a cached token row (revoking it, say)
    evicts it from the protector's cache, so the next request is refused.
    """

    # One statement per token column, the token a bound parameter: building
    # the select (coercions, a new cache key) cost more than the SQLite query.
    queries: dict[str, Any] = {}

    class SQLAlchemyBearerTokenValidator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            query = queries.get(self.token_attribute)
            if query is None:
                query = queries[self.token_attribute] = token_query(
                    token_model, self.token_attribute
                )
            return session.execute(query, {_TOKEN_PARAMETER: token_string}).scalars().first()

    SQLAlchemyBearerTokenValidator.session = session
    SQLAlchemyBearerTokenValidator.__qualname__ = f"BearerTokenValidator[{token_model.__name__}]"
    return SQLAlchemyBearerTokenValidator


def token_query(token_model: type, attribute: str) -> Any:
    """``SELECT`` the row whose ``attribute`` is the ``bearerguard_token`` parameter."""
    column = getattr(token_model, attribute)
    return select(token_model).where(column == bindparam(_TOKEN_PARAMETER)).limit(1)


class _Reattach:
    """Merges a cached detached copy into ``session`` without a query."""

    __slots__ = ("session",)

    def __init__(self, session: Any) -> None:
        self.session = session

    def __call__(self, copy: Any) -> Any:
        return self.session.merge(copy, load=False)

    def needed(self, error: Exception) -> bool:
        # The copy lacks what was read (a lazy relationship, a token column).
        return isinstance(error, DetachedInstanceError)


class _MappedRows:
    """The :class:`~bearerguard.core.tokeninfo.SharedObjects` of SQLAlchemy rows."""

    def handles(self, token: object) -> bool:
        return hasattr(type(token), "__mapper__")

    def prepare(self, validator: TokenValidator, info: TokenInfo, guard: Guard | None) -> TokenInfo:
        if not isinstance(validator, BearerTokenValidator):
            return info  # only a store lookup returns rows
        return prepare_cached_row(validator, info, guard)


def prepare_cached_row(validator: BearerTokenValidator, info: TokenInfo, guard: Any) -> TokenInfo:
    """Make a validated ORM row safe to share through the cache.

    The cache keeps a detached copy of the row's loaded columns (never a row
    that belongs to one request's session, which another thread must not
    touch), and a ``reattach`` that merges it into the current session without
    a query, which ``current_token`` calls only when a view reads something
    not loaded, like a lazy relationship.
    """
    row = info.token
    claims = _authorization_claims(row)
    # One replace() at the end: each is a TokenInfo built again, on every miss.
    changes: dict[str, Any] = {} if claims is None else {"claims": claims}
    session = validator.session
    if session is None:
        extension = getattr(type(row), "__fsa__", None)  # a Flask-SQLAlchemy model
        session = getattr(extension, "session", None)
    if guard is not None:
        _watch(type(row), guard, validator.token_attribute)
    if session is None:
        return replaced(info, **changes) if changes else info
    copy = _detached_copy(row, validator.token_attribute)
    check = info.expiry_check
    if check is not None and getattr(check, "__self__", None) is row:
        # A hit asks the cached copy, never the row of the request that cached it.
        check = getattr(copy, check.__name__)
    reattach = _reattach_of(validator, session)
    return replaced(info, token=copy, reattach=reattach, expiry_check=check, **changes)


_REATTACH = "_bearerguard_reattach"


def _reattach_of(validator: BearerTokenValidator, session: Any) -> _Reattach:
    """The validator's re-attach into ``session``, one for all the rows it caches
    (one per row was one more object per cached row for the collector to walk)."""
    found: _Reattach | None = validator.__dict__.get(_REATTACH)
    if found is None or found.session is not session:
        found = _Reattach(session)  # two threads may both make one: either serves
        validator.__dict__[_REATTACH] = found
    return found


#: Each model's ``groups``/``roles``/``entitlements`` attributes, by model.
_claim_names: dict[type, tuple[str, ...]] = {}


def _authorization_claims(row: Any) -> Mapping[str, frozenset[str]] | None:
    """The row's ``groups``/``roles``/``entitlements`` as strings, read now.

    Read from the live row at validation: on the cached copy (detached), a
    lazy relationship or association proxy of that name raises
    DetachedInstanceError, and a ``roles=`` view answered 500. Values that
    are not strings (related objects) count for nothing, as in a JWT.
    """
    model = type(row)
    names = _claim_names.get(model)
    if names is None:  # hasattr on a class raises and catches inside: read once per model
        names = _claim_names[model] = tuple(n for n in AUTHORIZATION_CLAIMS if hasattr(model, n))
    if not names:
        return None
    return MappingProxyType({name: values_of(getattr(row, name)) for name in names})


#: Per mapper and token attribute, the column attributes a cached copy keeps
#: (all but the token columns), in order and as a set: read once
#: (``mapper.column_attrs`` builds a new collection on every read).
_kept: dict[tuple[Any, str], tuple[tuple[str, ...], frozenset[str]]] = {}


def _kept_columns(mapper: Any, token_attribute: str) -> tuple[tuple[str, ...], frozenset[str]]:
    secrets = {token_attribute, *_TOKEN_COLUMNS}
    names = tuple(prop.key for prop in mapper.column_attrs if prop.key not in secrets)
    kept = _kept[(mapper, token_attribute)] = (names, frozenset(names))
    return kept


def _detached_copy(row: Any, token_attribute: str) -> Any:
    # The row's state and dict by SQLAlchemy's own attribute getters (C), not
    # inspect()'s registry walk and InstanceState.dict's property.
    mapper = instance_state(row).mapper
    kept = _kept.get((mapper, token_attribute))
    names, name_set = kept if kept is not None else _kept_columns(mapper, token_attribute)
    loaded = instance_dict(row)
    copy = mapper.class_manager.new_instance()
    # The token columns stay out: the cache holds digests, never a raw token.
    # Unloaded, a read of one goes through current_token's re-attach and
    # comes from the database. The values go straight into the new instance's
    # dict: what set_committed_value does to an instance with no history yet
    # (its commit step has nothing to cancel), without two calls per column.
    if loaded.keys() >= name_set:  # the usual row, every column loaded: copied in C
        instance_dict(copy).update(zip(names, map(loaded.__getitem__, names), strict=True))
    else:  # a deferred column: it stays unloaded on the copy too
        instance_dict(copy).update({name: loaded[name] for name in names if name in loaded})
    make_transient_to_detached(copy)
    return copy


# -- eviction on commit ----------------------------------------------------------

_watch_lock = threading.Lock()
renew_after_fork(sys.modules[__name__], "_watch_lock")
_watched: dict[type, tuple[str, weakref.WeakSet[Guard]]] = {}


def _watch(model: type, guard: Guard, attribute: str) -> None:
    watched = _watched.get(model)  # read without the lock: a miss of a watched model
    if watched is not None and guard in watched[1]:
        return
    with _watch_lock:
        if model not in _watched:
            _watched[model] = (attribute, weakref.WeakSet())
            event.listen(model, "after_update", _row_changed)
            # Before: the row must still be there if its token is read (below).
            event.listen(model, "before_delete", _row_changed)
            if not event.contains(Session, "after_commit", _after_commit):
                event.listen(Session, "after_commit", _after_commit)
                event.listen(Session, "after_rollback", _after_rollback)
        _watched[model][1].add(guard)


def _evict(model: type, token: str) -> None:
    _, guards = _watched[model]
    for guard in list(guards):
        guard.evict(token)


def _row_changed(_mapper: Any, connection: Any, target: Any) -> None:
    model = type(target)
    if model not in _watched:
        return
    attribute = _watched[model][0]
    state = sa_inspect(target)
    if attribute in state.dict:
        token = state.dict[attribute]
    else:
        # A re-attached cached copy, whose token column was never copied: not
        # getattr, which would load it through the session in mid-flush.
        token = _stored_token(connection, state, attribute)
    if not isinstance(token, str):
        return
    _evict(model, token)
    # Evict again after commit: a request may have re-read the old row between
    # this flush and the commit, and cached it.
    session = Session.object_session(target)
    if session is not None:
        session.info.setdefault(_PENDING, set()).add((model, token))


def _stored_token(connection: Any, state: Any, attribute: str) -> Any:
    """The row's token as stored, read on the flush's own connection."""
    mapper = state.mapper
    prop = mapper.get_property(attribute)
    if state.identity is None or not hasattr(prop, "columns"):
        return None
    keys = zip(mapper.primary_key, state.identity, strict=True)
    query = select(prop.columns[0]).where(*(column == value for column, value in keys))
    return connection.execute(query).scalar()


def _after_commit(session: Session) -> None:
    pending = session.info.pop(_PENDING, ())
    for model, token in pending:
        _evict(model, token)
    if pending:
        logger.debug("evicted %d token row(s) changed by a commit", len(pending))


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


register_shared(_MappedRows())
