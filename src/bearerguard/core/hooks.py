"""User-written hooks: which ones a validator overrides, and the one guard they run behind.

Every call into code a user wrote (``authenticate_token``, ``token_revoked``,
Authlib 1.x's ``validate_request``/``validate_token``/``scope_insufficient``,
a token model's ``is_expired()``...) goes through :func:`call_hook`: a
refusal it raises (bearerguard's or Authlib's ``OAuth2Error``) answers with
its own status and code; anything else is an outage, a 503 that is logged by
exception type only (a database error's text quotes the token) and never
cached. Never a 500, never a silent pass.

Overrides are found once, at registration: a hook the user did not write
costs a request nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import InvalidRequestError as _AuthlibInvalidRequest
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError as _AuthlibMissing
from authlib.oauth2.rfc6749.errors import UnsupportedTokenTypeError as _AuthlibUnsupported
from authlib.oauth2.rfc6750.errors import InsufficientScopeError as _AuthlibInsufficient
from authlib.oauth2.rfc6750.errors import InvalidTokenError as _AuthlibInvalidToken

from .._log import throttled
from ..errors import (
    BearerGuardError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    UnsupportedTokenTypeError,
    ValidatorUnavailableError,
)
from ..validators.base import scope_text
from .tokeninfo import TokenInfo

if TYPE_CHECKING:
    from .credentials import Credentials
    from .requirements import Requirement

__all__ = [
    "Policy",
    "RequestCheck",
    "adopted",
    "call_hook",
    "policy_of",
    "request_checks",
    "user_hook",
]

T = TypeVar("T")

#: Authlib's refusal classes and bearerguard's like-named ones, most specific first.
_LIKE_NAMED: tuple[tuple[type[Exception], type[BearerGuardError]], ...] = (
    (_AuthlibInvalidToken, InvalidTokenError),
    (_AuthlibInsufficient, InsufficientScopeError),
    (_AuthlibMissing, MissingTokenError),
    (_AuthlibUnsupported, UnsupportedTokenTypeError),
    (_AuthlibInvalidRequest, InvalidRequestError),
)


def call_hook(
    hook: Callable[..., T],
    *args: Any,
    on_failure: Callable[[BaseException], None] | None = None,
    **kwargs: Any,
) -> T:
    """``hook(*args, **kwargs)`` behind the guard.

    ``on_failure`` replaces the default log line for an outage (a validator's
    ``backend_failed``, which also rolls its session back).
    """
    try:
        return hook(*args, **kwargs)
    except BearerGuardError:
        raise
    except OAuth2Error as error:
        refusal = adopted(error)
    except Exception as exc:
        if on_failure is not None:
            on_failure(exc)
        else:
            name = getattr(hook, "__qualname__", None) or type(hook).__name__
            throttled(f"hook:{name}", "%s raised %s; answering 503", name, type(exc).__name__)
        refusal = ValidatorUnavailableError()
    # Raised outside the handler, so with no __cause__ and no __context__: the
    # hook's exception may quote the token (a driver's error quotes the SQL).
    raise refusal


def adopted(error: OAuth2Error) -> BearerGuardError:
    """``error`` as a bearerguard refusal with the same status, code and description.

    A foreign ``OAuth2Error`` (Authlib's own, or the user's) is rendered by
    bearerguard (quoted challenge, sanitised description); it becomes an
    instance of the like-named bearerguard class, which is also an instance
    of Authlib's, so ``except`` clauses see what they expect.
    """
    if isinstance(error, BearerGuardError):
        return error
    description = error.description if isinstance(error.description, str) else None
    cls = next((ours for theirs, ours in _LIKE_NAMED if isinstance(error, theirs)), None)
    adopted_error = (cls or BearerGuardError)(description)
    status = getattr(error, "status_code", None)
    if cls is None or status != adopted_error.status_code:
        if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
            throttled("hook:status", "an OAuth2Error with status %r; answering 503", status)
            return ValidatorUnavailableError()
        adopted_error.status_code = status
        adopted_error.error = error.error if isinstance(error.error, str) else None
    realm = getattr(error, "realm", None)
    if isinstance(realm, str):
        adopted_error.realm = realm
    extra = getattr(error, "extra_attributes", None)
    if isinstance(extra, Mapping) and extra:
        adopted_error.extra_attributes = {str(k): str(v) for k, v in extra.items()}
    return adopted_error


def user_hook(validator: Any, name: str) -> Callable[..., Any] | None:
    """``validator.name`` bound, if the user wrote it, else None.

    A method counts as the user's when it is defined outside bearerguard: so
    bearerguard's own defaults (and ``bearerguard.rfc9068``'s) are never
    called per request, and an override anywhere in the user's classes is.
    """
    function = getattr(type(validator), name, None)
    if function is None:
        return None
    module = getattr(function, "__module__", None) or ""
    if module == "bearerguard" or module.startswith("bearerguard."):
        return None
    hook: Callable[..., Any] = getattr(validator, name)
    return hook


#: A per-request check a validator's user wrote: raises to refuse the request.
RequestCheck = Callable[["Credentials"], None]


def request_checks(validator: Any) -> list[RequestCheck]:
    """The request checks the user wrote, each ``check(credentials)``.

    The seed's ``request_invalid(request) -> bool`` gets the framework's
    request (Flask's, as it always has); Authlib 1.x's
    ``validate_request(request)`` gets Authlib's request wrapper (built only
    when asked for) and raises to refuse.
    """
    checks: list[RequestCheck] = []
    request_invalid = user_hook(validator, "request_invalid")
    if request_invalid is not None:

        def seed_check(credentials: Credentials) -> None:
            if call_hook(request_invalid, credentials.request):
                raise InvalidRequestError()

        checks.append(seed_check)
    validate_request = user_hook(validator, "validate_request")
    if validate_request is not None:

        def authlib_check(credentials: Credentials) -> None:
            call_hook(validate_request, credentials.oauth_request())

        checks.append(authlib_check)
    return checks


@dataclass(frozen=True, slots=True)
class Policy:
    """The per-request token hooks one validator's subclass overrides.

    Carried by each :class:`TokenInfo` that validator produces, so a cache hit
    runs them too; validators without overrides carry None.
    """

    validate_token: Callable[..., Any] | None
    scope_insufficient: Callable[..., Any] | None

    def check(self, info: TokenInfo, token: Any, requirement: Requirement, request: Any) -> None:
        """Refuse (raise) unless the token may see this view.

        Who decides the scope, as in Authlib: an overridden ``validate_token``
        (its default asks ``scope_insufficient``), else an overridden
        ``scope_insufficient``. A callable scope operator has no Authlib form,
        so it is applied here first, whatever the hooks say.
        ``groups``/``roles``/``entitlements`` are always bearerguard's (403).
        """
        scopes = requirement.hook_scopes
        if requirement.hooks_decide_scope:
            missing = requirement.missing_claims(info)
            if missing is None and self.validate_token is None:
                assert self.scope_insufficient is not None
                if call_hook(self.scope_insufficient, call_hook(scope_text, token), scopes):
                    missing = "scope"
        else:
            missing = requirement.missing(info)
        if missing is not None:
            raise requirement.refusal(missing)
        if self.validate_token is not None:
            call_hook(self.validate_token, token, scopes, request, **requirement.hook_claims)


def policy_of(validator: Any) -> Policy | None:
    """The validator's per-request token hooks, or None when it overrides none."""
    validate_token = user_hook(validator, "validate_token")
    scope_insufficient = user_hook(validator, "scope_insufficient")
    if validate_token is None and scope_insufficient is None:
        return None
    return Policy(validate_token, scope_insufficient)
