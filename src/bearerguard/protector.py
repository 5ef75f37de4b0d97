"""The Flask edge: ``ResourceProtector``, ``current_token``, and the hot path.

The only module that touches Flask. Everything it calls (validators, cache,
deny-list) is framework-neutral.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar, overload

from authlib.integrations.flask_oauth2.requests import FlaskJsonRequest
from authlib.integrations.flask_oauth2.signals import token_authenticated
from authlib.oauth2 import OAuth2Error
from flask import Response, g, request
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    ServiceUnavailable,
    Unauthorized,
)
from werkzeug.local import LocalProxy

from ._credentials import (
    check_token,
    digest,
    parse_authorization,
    peek_jws,
    signed_content_digest,
)
from ._hooks import Policy, adopted, call_hook, policy_of, request_checks
from ._log import fingerprint, logger, throttled
from ._requirements import Requirement, ScopeOperator, compile_requirement
from ._routing import check_registrable, scheme_credentials
from .cache import TokenCache, _Counter
from .errors import (
    BearerGuardError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    TokenExpiredError,
    TokenRevokedError,
    UnknownTokenError,
    UnsupportedTokenTypeError,
    ValidatorUnavailableError,
)
from .revocation import RevocationStore
from .validators.base import TokenInfo, TokenValidator, number_or_none

__all__ = ["BearerGuardHTTPException", "ResourceProtector", "current_token", "token_authenticated"]

P = ParamSpec("P")
R = TypeVar("R")
_DEFAULT: Any = object()
# The objects behind Flask's proxies, bound once: ``request.environ`` through
# the proxy costs about 1.1 us, through its documented _get_current_object
# about 0.3 us, and a cache hit has about 10 us in all.
_request_now: Callable[[], Any] = request._get_current_object  # type: ignore[attr-defined]
_g_now: Callable[[], Any] = g._get_current_object
#: Authlib's name, so code reading ``g.authlib_server_oauth2_token`` keeps working.
#: Where Authlib keeps the request's token, which ported code may read from g.
_G_TOKEN = "authlib_server_oauth2_token"
_G_REATTACH = "_bearerguard_reattach"
#: A cached ORM row's detached copy, while it waits to be re-attached.
_G_COPY = "_bearerguard_copy"
_G_OAUTH_REQUEST = "_bearerguard_oauth_request"
#: Methods Authlib's protector calls on itself, which bearerguard's hot path does not.
_NOT_OVERRIDABLE = ("validate_request", "get_token_validator", "parse_request_authorization")


class BearerGuardHTTPException(HTTPException):
    """Carries a refusal through Flask; ``@app.errorhandler(401)`` can catch it.

    Raised as a subclass of Werkzeug's exception for its status (Unauthorized,
    Forbidden, ...), because Flask finds error handlers by class, not instance.
    ``error`` is the :class:`BearerGuardError`; the response is ready-made.
    """

    def __init__(self, error: BearerGuardError, response: Response) -> None:
        super().__init__(description=error.description, response=response)
        self.error = error


_HTTP_EXCEPTIONS: dict[int, type[BearerGuardHTTPException]] = {
    base.code: type(f"BearerGuard{base.__name__}", (BearerGuardHTTPException, base), {})
    for base in (BadRequest, Unauthorized, Forbidden, ServiceUnavailable)
    if base.code is not None
}


class ResourceProtector:
    """Protect Flask views with bearer tokens; Authlib's API, routed and cached.

    Example::

        require_oauth = ResourceProtector()
        require_oauth.register_token_validator(MyBearerTokenValidator())

        @app.route("/user")
        @require_oauth("profile")
        def user_profile():
            return jsonify(current_token.user.to_dict())

    The ``Authorization`` scheme picks the validators (their ``TOKEN_TYPE``,
    ``bearer`` by default); a refusal is raised by :meth:`acquire_token` as
    an ``OAuth2Error`` and answered by :meth:`raise_error_response`.

    :param realm: the ``realm`` of challenges whose validator names none.
    :param cache: a :class:`TokenCache`, for this protector alone (a second
        protector given it raises ``ValueError``); ``None`` validates every request.
    :param revocations: the deny-list; default an in-process
        :class:`RevocationStore`, or ``bearerguard.redis.RedisRevocationStore``
        to share it between processes.
    :param allow_form_token: accept ``access_token`` in a form body (RFC 6750 §2.2).
    :param allow_query_token: accept ``access_token`` in the query (§2.3); it
        leaks into logs and history, so it is off by default.
    :param max_token_length: longer tokens are refused before any parsing.
    :param clock: wall-clock seconds, shared with the default cache and store.
    """

    def __init__(
        self,
        *,
        realm: str | None = "api",
        cache: TokenCache | None = _DEFAULT,
        revocations: RevocationStore | None = None,
        allow_form_token: bool = False,
        allow_query_token: bool = False,
        max_token_length: int = 8192,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.realm = realm
        self.clock = clock
        self.cache = TokenCache(clock=clock) if cache is _DEFAULT else cache
        if self.cache is not None:
            self.cache.bind(self)  # one protector's validations, never another's
        self.revocations = revocations if revocations is not None else RevocationStore(clock=clock)
        self.revocations.add_listener(self._evict_key)
        self.allow_form_token = allow_form_token
        self.allow_query_token = allow_query_token
        self.max_token_length = max_token_length
        self._jwt: dict[str, TokenValidator] = {}
        self._jws_entry: dict[str, Callable[[str, Any, Any], TokenInfo]] = {}
        self._opaque: list[TokenValidator] = []
        self._request_checks: list[Any] = []
        #: Validators by Authorization scheme (``TOKEN_TYPE``), in registration order.
        self._schemes: dict[str, list[TokenValidator]] = {}
        #: The non-Bearer schemes (MAC, ...) and their request checks.
        self._others: dict[str, list[Any]] = {}
        self._policies: dict[int, Policy] = {}
        #: The plain check until a validator brings per-request hooks.
        self._check: Callable[[Requirement, bool], None] = self._check_plain
        self._outcomes: Counter[str] = Counter()
        self._outcomes_lock = threading.Lock()
        self._accepted = _Counter()
        #: Called with each authorization's duration in seconds (metrics); None: not timed.
        self.observe_latency: Callable[[float], None] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _NOT_OVERRIDABLE:
            if name in vars(cls):
                # Authlib's acquire_token calls these; bearerguard's does not
                # (its hot path is its own), so an override would be ignored.
                raise TypeError(
                    f"{cls.__name__}.{name} would never be called: put per-request checks "
                    "in the validator's validate_request() or validate_token() hook"
                )

    # -- configuration ---------------------------------------------------------

    def register_token_validator(self, validator: TokenValidator) -> None:
        """Add a validator for its ``TOKEN_TYPE`` (``Authorization`` scheme).

        Bearer: JWT validators are keyed by issuer, opaque ones tried in
        registration order. Other schemes' validators are tried in order.
        An Authlib validator (not ported) raises TypeError saying what to import.
        """
        check_registrable(validator)
        scheme = validator.TOKEN_TYPE.lower()
        checks = request_checks(validator)
        if scheme != "bearer":
            self._others.setdefault(scheme, []).extend(checks)
        elif validator.kind == "jwt":
            if not validator.issuer:
                raise ValueError("a JWT validator needs an issuer")
            if validator.issuer in self._jwt:
                raise ValueError(f"a validator for issuer {validator.issuer!r} is registered")
            self._jwt[validator.issuer] = validator
            self._jws_entry[validator.issuer] = _jws_entry(validator)
        else:
            self._opaque.append(validator)
        self._schemes.setdefault(scheme, []).append(validator)
        # Only a hook the user wrote costs anything per request.
        if scheme == "bearer":
            self._request_checks.extend(checks)
        policy = policy_of(validator)
        if policy is not None:
            self._policies[id(validator)] = policy
            self._check = self._check_hooked
        validator.bind(self)

    @property
    def validators(self) -> list[TokenValidator]:
        return [v for validators in self._schemes.values() for v in validators]

    def get_token_validator(self, token_type: str) -> TokenValidator:
        """The first validator registered for ``token_type`` (Authlib's method).

        Raises :class:`UnsupportedTokenTypeError` when none serves it.
        """
        validators = self._schemes.get(token_type.lower())
        if not validators:
            raise self._stamped(UnsupportedTokenTypeError())
        return validators[0]

    def parse_request_authorization(self, request: Any) -> tuple[TokenValidator, str]:
        """``(validator, token_string)`` from ``request.headers`` (Authlib's method).

        Raises :class:`MissingTokenError` (Authlib's ``MissingAuthorizationError``)
        or :class:`UnsupportedTokenTypeError`; a malformed Bearer header is a 400.
        """
        header = request.headers.get("Authorization")
        if not header:
            raise self._stamped(MissingTokenError())
        try:
            found = scheme_credentials(header, self._others, self.max_token_length)
            if found is None:
                found = ("bearer", parse_authorization(header, self.max_token_length))
        except BearerGuardError as error:
            raise self._stamped(error) from None
        return self.get_token_validator(found[0]), found[1]

    # -- the decorator and its friends ------------------------------------------

    @overload
    def __call__(self, scope: Callable[P, R]) -> Callable[P, R]: ...

    @overload
    def __call__(
        self,
        scope: str | Iterable[str] | None = None,
        operator: Literal["AND", "OR"] | str | ScopeOperator = "AND",
        *,
        scopes: str | Iterable[str] | None = None,
        optional: bool = False,
        **claims: Any,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def __call__(
        self,
        scope: Any = None,
        operator: Any = "AND",
        *,
        scopes: Any = None,
        optional: bool = False,
        **claims: Any,
    ) -> Any:
        """Decorate a view: ``@require_oauth('profile email', 'OR')``.

        ``scopes=`` is Authlib's name for ``scope``. ``optional=True`` lets
        requests without credentials through with a falsy ``current_token``;
        a bad token, or an unsupported scheme, is still refused. ``groups=``,
        ``roles=`` and ``entitlements=`` require any one of the listed values.
        """
        if callable(scope) and not isinstance(scope, str | list | tuple):
            return self()(scope)  # bare @require_oauth
        requirement = compile_requirement(_one_scope(scope, scopes), operator, claims)

        def decorator(view: Callable[P, R]) -> Callable[P, R]:
            if inspect.iscoroutinefunction(view):
                async_view: Callable[P, Awaitable[Any]] = view

                @functools.wraps(view)
                async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                    try:
                        self._authorize(requirement, optional)
                    except OAuth2Error as error:
                        self.raise_error_response(error)
                    return await async_view(*args, **kwargs)

                return async_wrapper  # type: ignore[return-value]

            @functools.wraps(view)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                try:
                    self._authorize(requirement, optional)
                except OAuth2Error as error:
                    self.raise_error_response(error)
                return view(*args, **kwargs)

            return wrapper

        return decorator

    @contextmanager
    def acquire(
        self,
        scope: str | Iterable[str] | None = None,
        operator: str | ScopeOperator = "AND",
        *,
        scopes: str | Iterable[str] | None = None,
        **claims: Any,
    ) -> Iterator[Any]:
        """``with require_oauth.acquire('profile') as token:`` inside a view.

        As in Authlib, an ``OAuth2Error`` raised here, by the authorization or
        by the block itself, becomes its response.
        """
        try:
            yield self.acquire_token(_one_scope(scope, scopes), operator, **claims)
        except OAuth2Error as error:
            self.raise_error_response(error)

    def acquire_token(
        self,
        scopes: str | Iterable[str] | None = None,
        operator: str | ScopeOperator = "AND",
        **claims: Any,
    ) -> Any:
        """Authorize this request and return its token, re-attached if it is an ORM row.

        Raises the refusal, an ``OAuth2Error`` (Authlib's like-named class), so
        ``except OAuth2Error`` and ``AuthorizationServer.handle_error_response``
        work as with Authlib.
        """
        self._authorize(compile_requirement(scopes, operator, claims), False)
        return _reattached() if g.get(_G_REATTACH) is not None else g.get(_G_TOKEN)

    def validate_request(self, scopes: Any, request: Any, **kwargs: Any) -> Any:
        """Authlib's method: authorize ``request`` for ``scopes`` and return its token.

        ``request`` must describe the current Flask request (Authlib passes its
        wrapper of it); its hooks receive it.
        """
        header = _request_now().headers.get("Authorization")
        if request.headers.get("Authorization") != header:
            raise ValueError("validate_request() checks the current Flask request only")
        setattr(_g_now(), _G_OAUTH_REQUEST, request)
        return self.acquire_token(scopes, **kwargs)

    def raise_error_response(self, error: OAuth2Error) -> NoReturn:
        """Turn a refusal into a response; override to customize (as in Authlib)."""
        error = self._stamped(adopted(error))
        body = json.dumps(dict(error.get_body()))
        response = Response(body, status=error.status_code, mimetype="application/json")
        for name, value in error.get_headers():
            response.headers[name] = value
        raise _HTTP_EXCEPTIONS.get(error.status_code, BearerGuardHTTPException)(error, response)

    # -- the hot path -----------------------------------------------------------

    def _authorize(self, requirement: Requirement, optional: bool) -> None:
        observe = self.observe_latency
        if observe is None:
            return self._check(requirement, optional)
        start = time.perf_counter()
        try:
            return self._check(requirement, optional)
        finally:
            observe(time.perf_counter() - start)

    def _check_plain(self, requirement: Requirement, optional: bool) -> None:
        try:
            info = self._cached() or self.authenticate()
        except MissingTokenError as error:
            if optional:
                setattr(g, _G_TOKEN, None)
                setattr(g, _G_REATTACH, None)
                return
            self._refused(error)
            raise
        except BearerGuardError as error:
            self._refused(error)
            raise
        missing = requirement.missing(info)
        if missing is not None:
            raise self._refused(requirement.refusal(missing))
        current = _g_now()  # one context lookup, not two
        if info.reattach is None:
            setattr(current, _G_TOKEN, info.token)
            setattr(current, _G_REATTACH, None)
        else:
            _publish_detached(current, info.token, info.reattach)
        self._accepted.bump()
        if token_authenticated.receivers:
            # A cached ORM row is a detached copy without its token columns:
            # receivers get current_token, which re-attaches it as they read.
            token = info.token if info.reattach is None else current_token
            token_authenticated.send(self, token=token)

    def _check_hooked(self, requirement: Requirement, optional: bool) -> None:
        """:meth:`_check_plain` with the per-request hooks a validator overrides."""
        info = self._found(optional)
        if info is None:
            return
        token, reattach, policy = info.token, info.reattach, info.hooks
        try:
            if policy is None:
                missing = requirement.missing(info)
                if missing is not None:
                    raise requirement.refusal(missing)
            else:
                if reattach is not None and policy.validate_token is not None:
                    # The hook may read a lazy relationship: give it a live row.
                    token, reattach = call_hook(reattach, token), None
                policy.check(info, token, requirement, _oauth_request())
        except BearerGuardError as error:
            if isinstance(error, InsufficientScopeError) and error.scope is None:
                error.scope = requirement.scope  # a hook's 403 names the scope too
            self._refused(error)
            raise
        current = _g_now()
        if reattach is None:
            setattr(current, _G_TOKEN, token)
            setattr(current, _G_REATTACH, None)
        else:
            _publish_detached(current, token, reattach)
        self._accepted.bump()
        if token_authenticated.receivers:
            # A detached ORM copy lacks its token columns: current_token re-attaches.
            token_authenticated.send(self, token=token if reattach is None else current_token)

    def _found(self, optional: bool) -> TokenInfo | None:
        """This request's token, or None for an anonymous ``optional`` request."""
        try:
            return self._cached() or self.authenticate()
        except MissingTokenError as error:
            if optional:
                setattr(g, _G_TOKEN, None)
                setattr(g, _G_REATTACH, None)
                return None
            self._refused(error)
            raise
        except BearerGuardError as error:
            self._refused(error)
            raise

    def _cached(self) -> TokenInfo | None:
        """The common request, answered from the cache: a plain ``Bearer <token>``
        header whose token is cached, live and not revoked. None sends the
        request down :meth:`authenticate`, which checks everything again.

        The token's syntax is not checked here: only tokens that passed
        ``parse_authorization`` are ever cached, so a digest found in the cache
        is one of those. That check is the hit's largest cost for a JWT.
        """
        cache = self.cache
        if cache is None or self._request_checks or self.allow_query_token or self.allow_form_token:
            return None
        header = _request_now().environ.get("HTTP_AUTHORIZATION")
        if header is None or header[:7] != "Bearer " or len(header) > self.max_token_length + 7:
            return None
        key = digest(header[7:])
        entry = cache._index.get(key)
        if entry is None:
            return None
        info = entry.info
        now = self.clock()
        if now >= entry.deadline or info.expiry_check is not None:
            return None
        if self.revocations.is_revoked(key, info, now):
            return None
        cache.hits.bump()
        return info

    def authenticate(self) -> TokenInfo:
        """Find, validate and deny-list-check this request's token (no scope check)."""
        if self._others:
            header = _request_now().environ.get("HTTP_AUTHORIZATION") or ""
            found = scheme_credentials(header, self._others, self.max_token_length)
            if found is not None:
                return self._authenticate_scheme(*found)
        token = self._token_from_request()
        if self._others and "bearer" not in self._schemes:
            raise UnsupportedTokenTypeError()
        if self._request_checks:
            flask_request = _request_now()
            for check in self._request_checks:
                check(flask_request, _oauth_request)
        key = digest(token)
        cache = self.cache
        entry = cache.get(key) if cache is not None else None
        if entry is not None:
            info = entry.info
            if info.expiry_check is not None and call_hook(info.expiry_check):
                cache.evict(key)  # type: ignore[union-attr]
                raise TokenExpiredError()
        elif cache is not None:
            info = cache.load(key, lambda: self._validate(token))
        else:
            info = self._validate(token)
        # Expiry again, at the instant the deny-list is read (as _cached does):
        # a revocation ends at the token's exp, so a token seen unexpired at
        # the cache lookup, or when a shared validation began, may find its
        # deny-list entry already gone.
        now = self.clock()
        expires_at = info.expires_at
        if expires_at is not None and now >= expires_at:
            raise TokenExpiredError()
        if self.revocations.is_revoked(key, info, now):
            raise TokenRevokedError()
        return info

    def _authenticate_scheme(self, scheme: str, credentials: str) -> TokenInfo:
        """A non-Bearer scheme (MAC, ...): its validators in order, never cached,
        since such credentials are bound to the request they sign."""
        validators = self._schemes[scheme]
        try:
            flask_request = _request_now()
            for check in self._others[scheme]:
                check(flask_request, _oauth_request)
            info = self._first_valid(validators, credentials)
            now = self.clock()
            if info.expires_at is not None and now >= info.expires_at:
                raise TokenExpiredError()
            if info.expiry_check is not None and call_hook(info.expiry_check):
                raise TokenExpiredError()
            if self.revocations.is_revoked(digest(credentials), info, now):
                raise TokenRevokedError()
        except BearerGuardError as error:
            self._stamped(error, validators[0])
            raise
        return info

    def _token_from_request(self) -> str:
        header = _request_now().environ.get("HTTP_AUTHORIZATION")
        if not (self.allow_query_token or self.allow_form_token):
            if header is None:
                raise MissingTokenError()
            return parse_authorization(header, self.max_token_length)
        found = [] if header is None else [parse_authorization(header, self.max_token_length)]
        if self.allow_query_token:
            found += request.args.getlist("access_token")
        if (
            self.allow_form_token
            and request.method not in ("GET", "HEAD")
            and request.mimetype == "application/x-www-form-urlencoded"
        ):
            found += request.form.getlist("access_token")
        if not found:
            raise MissingTokenError()
        if len(found) > 1:
            raise InvalidRequestError("access token sent in more than one place")
        return check_token(found[0], self.max_token_length)

    # -- validation (cache misses) ------------------------------------------------

    def _validate(self, token: str) -> TokenInfo:
        info = self._route(token)
        limit = self.revocations.max_token_lifetime
        if limit is not None:
            _check_lifetime(info, limit)
        return info

    def _route(self, token: str) -> TokenInfo:
        jws = peek_jws(token) if self._jwt else None
        if jws is not None:
            payload = jws[1]
            issuer = payload.get("iss") if payload is not None else None
            entry = self._jws_entry.get(issuer) if isinstance(issuer, str) else None
            if entry is None or not isinstance(issuer, str):
                raise InvalidTokenError("untrusted issuer" if payload else "malformed token")
            # Behind the guard: a validator may call user code (get_jwks, claims_check).
            info = call_hook(entry, token, jws[0], payload)
            if info.revocation_key is None:  # a JWT validator of the user's own
                info = dataclasses.replace(info, revocation_key=_signed_content_key(token))
            return self._with_policy(info, self._jwt[issuer]) if self._policies else info
        return self._first_valid(self._opaque, token)

    def _first_valid(self, validators: list[TokenValidator], token: str) -> TokenInfo:
        """The first answer of ``validators`` that knows ``token``."""
        unavailable: ValidatorUnavailableError | None = None
        for validator in validators:
            try:
                info = call_hook(validator.validate, token)
            except UnknownTokenError:
                continue
            except ValidatorUnavailableError as error:
                unavailable = error
                continue
            return self._with_policy(info, validator) if self._policies else info
        if unavailable is not None:
            raise unavailable
        if not self._schemes:
            throttled("no-validators", "ResourceProtector has no validator registered")
        raise UnknownTokenError()

    def _with_policy(self, info: TokenInfo, validator: TokenValidator) -> TokenInfo:
        policy = self._policies.get(id(validator))
        return info if policy is None else dataclasses.replace(info, hooks=policy)

    def _refused(self, error: BearerGuardError) -> BearerGuardError:
        """Count and log a refusal, and give it its challenge attributes."""
        # No exception chain goes out with it: a hook's refusal raised while
        # handling a driver's error (whose text quotes the token) carries it.
        error.__cause__ = error.__context__ = None
        outcome = "missing_token" if isinstance(error, MissingTokenError) else error.error
        with self._outcomes_lock:
            self._outcomes[outcome or "refused"] += 1
        # The rendered description: a hook's own text may hold CR/LF (log injection).
        logger.debug("refused: %s %s", error.status_code, error.get_error_description())
        return self._stamped(error)

    def _stamped(
        self, error: BearerGuardError, validator: TokenValidator | None = None
    ) -> BearerGuardError:
        """``error`` with the realm and extra attributes of ``validator`` (default:
        the first registered, as Authlib's ``_default_realm``), else this
        protector's realm; what an error already carries is kept."""
        if validator is None:
            bearer = self._schemes.get("bearer") or self.validators
            validator = bearer[0] if bearer else None
        realm = getattr(validator, "realm", None)
        if error.realm is None:
            error.realm = realm if realm is not None else self.realm
        extra = getattr(validator, "extra_attributes", None)
        if extra and not error.extra_attributes:
            error.extra_attributes = extra
        return error

    # -- revocation ---------------------------------------------------------------

    def revoke(self, token_string: str) -> None:
        """Refuse ``token_string`` from the next request on, as long as it could be accepted.

        The token is checked first, by its cached validation or its validator
        (the deny-list aside), so that only what it proves is believed:

        * valid: refused until its verified expiry, however far (for ever if
          it states none). A JWS is revoked by what it signs, so every
          spelling of its signature is refused with it;
        * expired, revoked or unknown: it can never be accepted, so nothing is
          stored; every process's cache forgets it (``evict``);
        * not verifiable now (its validator is down, or refuses it for a
          reason that may pass, such as ``nbf``): refused until the expiry the
          string states, at most ``revocations.unverified_lifetime``, and at
          most ``revocations.max_unverified`` such entries are kept; past
          that this raises :class:`~bearerguard.errors.ValidatorUnavailableError`.
        """
        key = digest(token_string)
        try:
            info: TokenInfo | None = self._revocable(key, token_string)
        except (TokenExpiredError, TokenRevokedError, UnknownTokenError):
            self.revocations.evict(key)
            logger.info("revoke: token %s is refused anyway", fingerprint(token_string))
            return
        except Exception:  # an outage, a failing hook, a refusal that may pass
            info = None  # handled below, out of the except: nothing chains to it
        if info is None:
            deny_key = self._revocation_key(key, token_string)
            self.revocations.revoke_token(
                deny_key, self._stated_expiry(token_string), verified=False
            )
        else:
            until = info.expires_at if info.expires_at is not None else math.inf
            self.revocations.revoke_token(info.revocation_key or key, until)
        self._evict_key(key)  # a JWS's entry is not under its revocation key
        verified = "" if info is not None else "unverified "
        logger.info("revoked %stoken %s", verified, fingerprint(token_string))

    def _revocable(self, key: bytes, token_string: str) -> TokenInfo:
        """The token's verified facts, from the cache or a validator (no deny-list)."""
        entry = self.cache.peek(key) if self.cache is not None else None
        if entry is None:
            return self._validate(token_string)
        info = entry.info
        if info.expiry_check is not None and info.expiry_check():
            raise TokenExpiredError()
        return info

    def revoke_jti(self, jti: str, exp: float) -> None:
        """Refuse every token with this ``jti`` until ``exp``."""
        self.revocations.revoke_jti(jti, float(exp))

    def revoke_subject(self, subject: str, before: float | None = None) -> None:
        """Refuse every token of ``subject`` issued up to ``before`` (default: now).

        The rule lasts as long as such a token can: for ever, unless the
        store's ``max_token_lifetime`` bounds every token accepted.
        """
        self.revocations.revoke_subject(subject, self.clock() if before is None else before)

    def revoke_client(self, client_id: str, before: float | None = None) -> None:
        """Refuse every token of ``client_id`` issued up to ``before`` (default: now),
        for as long as :meth:`revoke_subject` keeps its rule."""
        self.revocations.revoke_client(client_id, self.clock() if before is None else before)

    def evict(self, token_string: str) -> None:
        """Forget a cached validation everywhere (the token changed), without refusing it."""
        self.revocations.evict(digest(token_string))

    def _evict_key(self, key: bytes) -> None:
        if self.cache is not None:
            self.cache.evict(key)

    def _revocation_key(self, key: bytes, token_string: str) -> bytes:
        """The deny-list key a validation of ``token_string`` would carry: what
        :meth:`_validate` sends to a JWT validator is keyed by its signed content."""
        if self._jwt and peek_jws(token_string) is not None:
            return _signed_content_key(token_string)
        return key

    def _stated_expiry(self, token_string: str) -> float:
        """The expiry ``token_string`` states, unverified (inf if it states none)."""
        jws = peek_jws(token_string)
        exp = number_or_none(jws[1].get("exp")) if jws is not None and jws[1] is not None else None
        if exp is not None:
            return exp
        for validator in self._opaque:
            try:
                peeked = validator.peek_expiry(token_string)
            except Exception as exc:  # a user's hook, and only a hint: the entry stands
                name = type(validator).__name__
                logger.debug("%s.peek_expiry failed (%s)", name, type(exc).__name__)
                continue
            if peeked is not None:
                return peeked
        return math.inf

    # -- observability ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: validations by outcome and error code, cache, revocations,
        and each validator's own (JWKS fetches, introspection calls, ...)."""
        with self._outcomes_lock:
            refused = dict(self._outcomes)
        validators = {}
        for index, validator in enumerate(self.validators):
            counters = getattr(validator, "stats", None)
            if callable(counters):
                name = validator.issuer or f"{index}:{type(validator).__name__}"
                validators[f"{validator.kind}:{name}"] = counters()
        return {
            "validations": {"accepted": self._accepted.value, "refused": refused},
            "cache": self.cache.stats() if self.cache is not None else None,
            "revocations_applied": self.revocations.applied,
            "revocations": self.revocations.stats(),
            "validators": validators,
        }


def _check_lifetime(info: TokenInfo, limit: float) -> None:
    """Refuse a token that may outlive ``limit`` seconds: a subject or client
    rule is kept only that long, and must not lapse while a token it covers lives."""
    if info.expires_at is None:
        raise InvalidTokenError("token states no expiry")
    if info.issued_at is None:
        raise InvalidTokenError("token states no issue time")
    if info.expires_at - info.issued_at > limit:
        raise InvalidTokenError("token lifetime exceeds the limit")


def _signed_content_key(token: str) -> bytes:
    return signed_content_digest(token.rpartition(".")[0])


def _jws_entry(validator: TokenValidator) -> Callable[[str, Any, Any], TokenInfo]:
    """``validator.validate_jws``, unless a subclass overrides ``validate`` below
    the class that defines it (to wrap or count it): then ``validate`` runs."""
    mro = type(validator).__mro__
    jws_owner = next(k for k in mro if "validate_jws" in vars(k))
    validate_owner = next(k for k in mro if "validate" in vars(k))
    if issubclass(jws_owner, validate_owner):
        return validator.validate_jws
    return lambda token, _header, _claims: validator.validate(token)


def _one_scope(scope: Any, scopes: Any) -> Any:
    """``scope`` (bearerguard's, positional) or ``scopes=`` (Authlib's keyword)."""
    if scopes is None:
        return scope
    if scope is not None:
        raise TypeError("pass scope or scopes=, not both")
    return scopes


def _oauth_request() -> Any:
    """Authlib's wrapper of this request, for Authlib 1.x hooks: one per request."""
    current = _g_now()
    wrapped = getattr(current, _G_OAUTH_REQUEST, None)
    if wrapped is None:
        wrapped = FlaskJsonRequest(_request_now())
        setattr(current, _G_OAUTH_REQUEST, wrapped)
    return wrapped


def _current() -> Any:
    if g.get(_G_REATTACH) is not None:
        return g.get(_G_COPY)
    return g.get(_G_TOKEN)


def _publish_detached(current: Any, copy: Any, reattach: Callable[[Any], Any]) -> None:
    """Put a cached ORM row's detached copy on ``g``, to be re-attached on demand.

    ``g.authlib_server_oauth2_token`` is then :data:`current_token` itself, so
    code that reads it there (as Authlib's does) re-attaches the row too when
    it reads something the copy lacks (a relationship, the token columns).
    """
    setattr(current, _G_COPY, copy)
    setattr(current, _G_TOKEN, current_token)
    setattr(current, _G_REATTACH, reattach)


class _CurrentToken(LocalProxy):  # type: ignore[type-arg]
    """``current_token``: this request's token, re-attaching cached ORM rows lazily.

    A cached SQLAlchemy row is detached; the first time a view reads an
    attribute it has not loaded (a lazy relationship), the row is merged into
    the current session without a query and the read is retried.
    """

    def __getattr__(self, name: str) -> Any:
        if g.get(_G_REATTACH) is None:
            return getattr(g.get(_G_TOKEN), name)
        try:
            return getattr(g.get(_G_COPY), name)
        except Exception as exc:
            if type(exc).__name__ != "DetachedInstanceError":
                raise
        return getattr(_reattached(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A write must land on this request's own copy, never on the cached
        # row that other requests share.
        token = _reattached() if g.get(_G_REATTACH) is not None else g.get(_G_TOKEN)
        setattr(token, name, value)


def _reattached() -> Any:
    token = g.get(_G_REATTACH)(g.get(_G_COPY))
    setattr(g, _G_TOKEN, token)
    setattr(g, _G_REATTACH, None)
    setattr(g, _G_COPY, None)
    return token


current_token: Any = _CurrentToken(_current)
