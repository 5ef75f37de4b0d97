"""The base of every validator, and how an Authlib-style token object is read.

A validator turns a token string into a :class:`TokenInfo` (defined in
``bearerguard.core.tokeninfo``, re-exported here): the object the view sees
as ``current_token`` plus the few facts the hot path needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..core.binding import confirmation_of
from ..core.shared import shared_scopes_of
from ..core.tokeninfo import TokenInfo, new_info, replaced
from ..core.values import number_or_none, text_or_none, values_of
from ..errors import InsufficientScopeError

if TYPE_CHECKING:
    from ..core.guard import Guard

__all__ = [
    "TokenInfo",
    "TokenValidator",
    "describe_token",
    "number_or_none",
    "scope_text",
    "scopes_of",
    "text_or_none",
    "unexpired",
]


class TokenValidator:
    """Base of every validator the protector can route tokens to.

    ``kind`` says which tokens the protector sends here: ``"jwt"`` validators get
    JWS compact tokens (chosen by their ``issuer``), ``"opaque"`` validators get
    everything else. Subclasses implement :meth:`validate`.

    ``TOKEN_TYPE`` is the ``Authorization`` scheme served, as in Authlib.
    Authlib 1.x's per-request hooks :meth:`validate_request`,
    :meth:`validate_token` and :meth:`scope_insufficient` are honoured when a
    subclass overrides them, on every request, cached or not.
    """

    TOKEN_TYPE: ClassVar[str] = "bearer"
    kind: ClassVar[Literal["jwt", "opaque"]] = "opaque"
    #: For ``kind = "jwt"``: the exact ``iss`` this validator trusts.
    issuer: str | None = None
    #: Wall-clock seconds; ``bind`` may replace it with the protector's.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, realm: str | None = None, **extra_attributes: Any) -> None:
        self.realm = realm
        self.extra_attributes = extra_attributes

    def bind(self, guard: Guard) -> None:
        """Called once by ``register_token_validator`` with the guard that
        routes tokens here (its ``clock``, ``evict``...); a hook for set-up."""

    def validate(self, token_string: str) -> TokenInfo:
        """Check ``token_string`` and describe it, or raise a ``BearerGuardError``."""
        raise NotImplementedError

    def validate_jws(
        self, token_string: str, header: dict[str, Any] | None, claims: dict[str, Any] | None
    ) -> TokenInfo:
        """:meth:`validate` for a JWS whose header and payload the protector has
        parsed, unverified, to route it; a JWT validator may reuse them."""
        return self.validate(token_string)

    def validate_bound(self, token_string: str) -> TokenInfo:
        """:meth:`validate` for a token presented with a proof of possession
        (the DPoP scheme), its binding in ``confirmation``: a claims
        mapping's ``cnf``, or a model's ``dpop_jkt`` attribute."""
        info = self.validate(token_string)
        if info.confirmation is not None:
            return info
        cnf = confirmation_of(info.token)
        return replaced(info, confirmation=cnf) if cnf is not None else info

    def peek_expiry(self, token_string: str) -> float | None:
        """The token's expiry if it can be read without a backend call (for revoke)."""
        return None

    # -- Authlib 1.x hooks; only an override costs anything per request ----------

    def validate_request(self, request: Any) -> None:
        """Raise an ``OAuth2Error`` to refuse ``request`` before its token is
        looked up (Authlib's hook; ``request`` is Authlib's request wrapper)."""

    def validate_token(self, token: Any, scopes: Any, request: Any) -> None:
        """Raise an ``OAuth2Error`` to refuse a token bearerguard found valid.

        Called with Authlib's arguments: ``scopes`` is the list of acceptable
        scope strings (``["profile email"]``; None when the view needs none),
        plus, as keywords, the view's ``groups=``/``roles=``/``entitlements=``
        when it names any (so an override for such views takes them). An
        override decides the scope check, as in Authlib; this default asks
        :meth:`scope_insufficient`.
        """
        if self.scope_insufficient(scope_text(token), scopes):
            raise InsufficientScopeError()

    @staticmethod
    def scope_insufficient(token_scopes: Any, required_scopes: Any) -> bool:
        """True when the token's scopes satisfy none of ``required_scopes``
        (Authlib's rule: each entry is a space-separated set; any one suffices)."""
        if not required_scopes:
            return False
        granted = scopes_of(token_scopes)
        if not granted:
            return True
        wanted = [required_scopes] if isinstance(required_scopes, str) else required_scopes
        return not any(scopes_of(entry) <= granted for entry in wanted)


#: Scopes from a space-separated string (``scope``) or a list (``scp``).
scopes_of = values_of


def scope_text(token: Any) -> str:
    """A token's scopes as one string, as Authlib's hooks receive them."""
    if isinstance(token, Mapping):
        value = token.get("scope") or token.get("scp")
    else:
        get_scope = getattr(token, "get_scope", None)
        value = get_scope() if callable(get_scope) else getattr(token, "scope", None)
    return value if isinstance(value, str) else " ".join(sorted(scopes_of(value)))


def _user_defined(token: Any, name: str) -> bool:
    """True when ``name`` comes from the user's model, not from Authlib's
    mixins (whose ``is_expired`` only restates ``issued_at + expires_in``)."""
    function = getattr(type(token), name, None)
    module = getattr(function, "__module__", None) or ""
    return callable(function) and not module.startswith("authlib.")


def _object_expiry(token: Any) -> tuple[float | None, Callable[[], bool] | None]:
    getter = getattr(token, "get_expires_at", None)
    if callable(getter):
        at = number_or_none(getter())
        if at:
            return at, None
    issued, lifetime = getattr(token, "issued_at", None), getattr(token, "expires_in", None)
    issued_n, lifetime_n = number_or_none(issued), number_or_none(lifetime)
    if issued_n is not None and lifetime_n:
        return issued_n + lifetime_n, None
    check = getattr(token, "is_expired", None)
    if callable(check):
        return None, check
    return None, None


def describe_token(token: Any) -> TokenInfo:
    """Read an Authlib-style token object or a claims mapping into a TokenInfo.

    Objects: ``get_scope()``; ``get_expires_at()``, or ``issued_at`` +
    ``expires_in`` (0 means no expiry, as in Authlib's mixin), or
    ``is_expired()``. Mappings: ``scope``/``scp``, ``exp``, ``sub``,
    ``client_id``, ``jti``, ``iat``.
    """
    # Scopes repeat from token to token: one shared set (core.shared), not one
    # more object per cached token for the collector to walk.
    if isinstance(token, Mapping):
        return new_info(
            token=token,
            scopes=shared_scopes_of(token.get("scope") or token.get("scp")),
            expires_at=number_or_none(token.get("exp")),
            subject=text_or_none(token.get("sub")),
            client_id=text_or_none(token.get("client_id")),
            jti=text_or_none(token.get("jti")),
            issued_at=number_or_none(token.get("iat")),
            claims=token,
        )
    get_scope = getattr(token, "get_scope", None)
    scopes = shared_scopes_of(get_scope() if callable(get_scope) else getattr(token, "scope", None))
    expires_at, check = _object_expiry(token)
    user_id = getattr(token, "user_id", None)
    return new_info(
        token=token,
        scopes=scopes,
        expires_at=expires_at,
        subject=str(user_id) if user_id is not None else None,
        client_id=text_or_none(getattr(token, "client_id", None)),
        jti=None,
        issued_at=number_or_none(getattr(token, "issued_at", None)),
        expiry_check=check,
    )


def is_expired(info: TokenInfo, now: float | None = None) -> bool:
    """True when the token's own expiry has passed."""
    if info.expires_at is not None:
        return (time.time() if now is None else now) >= info.expires_at
    return bool(info.expiry_check and info.expiry_check())


def unexpired(info: TokenInfo, now: float) -> TokenInfo | None:
    """``info`` if the token is live at ``now``, else None.

    A model's own ``is_expired()`` decides, as in Authlib (whose validator
    asks only that), over ``get_expires_at()`` or ``issued_at + expires_in``.
    It is asked when the token is validated; the cache keeps the entry no
    longer than the stated expiry, or, when the model's rule outlives it (a
    grace period), asks ``is_expired()`` again on every hit.
    """
    token = info.token
    if not _user_defined(token, "is_expired"):
        return None if is_expired(info, now) else info
    if token.is_expired():
        return None
    if info.expires_at is not None and now >= info.expires_at:
        return replaced(info, expires_at=None, expiry_check=token.is_expired)
    return info
