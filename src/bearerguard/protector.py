"""The Flask front: ``ResourceProtector``, ``current_token``, the signal.

The only module that touches Flask. It reads a request into plain values for
the framework-neutral :class:`~bearerguard.core.guard.Guard`, which decides,
and turns the guard's refusal into a Flask response.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal, NoReturn, ParamSpec, TypeVar, overload

from authlib.integrations.flask_oauth2.requests import FlaskJsonRequest
from authlib.integrations.flask_oauth2.signals import token_authenticated
from authlib.oauth2 import OAuth2Error
from flask import Flask, Request, Response, after_this_request, g, request
from flask.globals import _cv_app, _cv_request
from werkzeug.exceptions import (
    BadRequest,
    Forbidden,
    HTTPException,
    ServiceUnavailable,
    Unauthorized,
)
from werkzeug.local import LocalProxy

from .core.connection import environ_url
from .core.credentials import Credentials
from .core.front import Front, one_scope
from .core.hooks import adopted, call_hook
from .core.requirements import Requirement, ScopeOperator, compile_requirement
from .core.sender import DPoPMode, check_mode, dpop_values, is_dpop
from .errors import BearerGuardError
from .validators.base import TokenInfo, TokenValidator

__all__ = ["BearerGuardHTTPException", "ResourceProtector", "current_token", "token_authenticated"]

P = ParamSpec("P")
R = TypeVar("R")
# Behind Flask's proxies, bound once: request.environ through the proxy ~1.1 us,
# through _get_current_object ~0.3 us, the context variable's get (a C call) less.
_request_now: Callable[[], Request] = request._get_current_object  # type: ignore[attr-defined]
_g_now: Callable[[], object] = g._get_current_object
_request_context: Callable[[], Any] = _cv_request.get
_app_context: Callable[[], Any] = _cv_app.get
#: Where Authlib keeps the request's token, which ported code may read from g.
_G_TOKEN = "authlib_server_oauth2_token"
#: A cached token's TokenInfo while its copy waits to be re-attached (an ORM row).
_G_DETACHED = "_bearerguard_detached"
_G_OAUTH_REQUEST = "_bearerguard_oauth_request"
#: Methods Authlib's protector calls on itself, which bearerguard's hot path does not.
_NOT_OVERRIDABLE = ("validate_request", "get_token_validator", "parse_request_authorization")
_FORM = "application/x-www-form-urlencoded"


class BearerGuardHTTPException(HTTPException):
    """Carries a refusal through Flask as a subclass of Werkzeug's exception for
    its status (Flask finds ``@app.errorhandler(401)`` by class); ``error`` is
    the :class:`BearerGuardError`, the response ready-made."""

    def __init__(self, error: BearerGuardError, response: Response) -> None:
        super().__init__(description=error.description, response=response)
        self.error = error


_HTTP_EXCEPTIONS: dict[int, type[BearerGuardHTTPException]] = {
    base.code: type(f"BearerGuard{base.__name__}", (BearerGuardHTTPException, base), {})
    for base in (BadRequest, Unauthorized, Forbidden, ServiceUnavailable)
    if base.code is not None
}


class ResourceProtector(Front):
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

    The parameters are the guard's (:class:`~bearerguard.core.front.Front`),
    each in README.md's configuration table (``realm``, ``cache``, ..., the
    ``dpop*`` of RFC 9449, ``resource``, ``client_certificate``/``trusted_proxies``).
    """

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

    # -- Authlib's methods ----------------------------------------------------------

    def get_token_validator(self, token_type: str) -> TokenValidator:
        """The first validator for ``token_type``, or UnsupportedTokenTypeError (Authlib)."""
        return self.guard.validator_for(token_type)

    def parse_request_authorization(self, request: Any) -> tuple[TokenValidator, str]:
        """``(validator, token_string)`` from ``request.headers`` (Authlib's method).

        Raises MissingTokenError, UnsupportedTokenTypeError, or a 400 for a malformed header.
        """
        return self.guard.split_authorization(request.headers.get("Authorization"))

    def validate_request(self, scopes: Any, request: Any, **kwargs: Any) -> Any:
        """Authlib's method: authorize ``request`` (the current Flask request,
        as Authlib wraps it; its hooks receive it) for ``scopes``; its token."""
        header = _request_now().headers.get("Authorization")
        if request.headers.get("Authorization") != header:
            raise ValueError("validate_request() checks the current Flask request only")
        setattr(_g_now(), _G_OAUTH_REQUEST, request)
        return self.acquire_token(scopes, **kwargs)

    def raise_error_response(self, error: OAuth2Error) -> NoReturn:
        """Turn a refusal into a response; override to customize (as in Authlib)."""
        refusal = self.guard.stamp(adopted(error))
        status, headers, body = self.guard.render(refusal)
        response = Response(body, status=status, mimetype="application/json")
        for name, value in headers:
            response.headers[name] = value
        raise _HTTP_EXCEPTIONS.get(status, BearerGuardHTTPException)(refusal, response)

    # -- Flask extension: the metadata document -------------------------------------

    def init_app(self, app: Flask) -> None:
        """Register on ``app`` (``app.extensions["bearerguard"]``, path to
        protector) and, with ``resource=``, serve its metadata document at
        ``/.well-known/oauth-protected-resource[/path]`` (RFC 9728 §3.1)."""
        state: dict[str, ResourceProtector] = app.extensions.setdefault("bearerguard", {})
        metadata = self.guard.metadata
        key = metadata.path if metadata is not None else f"<no resource {id(self)}>"
        if state.get(key, self) is not self:
            raise ValueError(f"another protector already publishes {key}")
        state[key] = self
        if metadata is None:
            return
        app.add_url_rule(
            metadata.path,
            endpoint=f"bearerguard_metadata:{metadata.path}",
            view_func=self._metadata_view,
            methods=["GET", "OPTIONS"],
            provide_automatic_options=False,
        )

    def _metadata_view(self) -> Response:
        status, headers, body = self.metadata_response(_request_now().method)
        response = Response(body, status=status)
        for name, value in headers:
            response.headers[name] = value
        return response

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
        dpop: DPoPMode | None = None,
        **claims: str | Iterable[str] | None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def __call__(
        self,
        scope: Any = None,
        operator: Any = "AND",
        *,
        scopes: Any = None,
        optional: bool = False,
        dpop: DPoPMode | None = None,
        **claims: str | Iterable[str] | None,
    ) -> Any:
        """Decorate a view: ``@require_oauth('profile email', 'OR')``.

        ``scopes=`` is Authlib's name for ``scope``. ``optional=True`` lets
        requests without credentials through with a falsy ``current_token``;
        a bad token, or an unsupported scheme, is still refused. ``groups=``,
        ``roles=`` and ``entitlements=`` require any one of the listed values.
        ``dpop=`` overrides the protector's DPoP mode for this view
        (``"allowed"``, ``"required"``, ``"disabled"``; RFC 9449).
        """
        if callable(scope) and not isinstance(scope, str | list | tuple):
            return self()(scope)  # bare @require_oauth
        compiled = compile_requirement(one_scope(scope, scopes), operator, claims)
        requirement = self._required(compiled)
        mode = None if dpop is None else check_mode(dpop)
        return functools.partial(self._decorate, requirement, optional, mode)

    def _decorate(
        self,
        requirement: Requirement,
        optional: bool,
        dpop: DPoPMode | None,
        view: Callable[P, R],
    ) -> Callable[P, R]:
        """``view`` behind the guard; a coroutine view stays a coroutine."""
        if inspect.iscoroutinefunction(view):
            async_view: Callable[P, Awaitable[Any]] = view

            @functools.wraps(view)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                try:
                    self._authorize(requirement, optional, dpop)
                except OAuth2Error as error:
                    self.raise_error_response(error)
                return await async_view(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                self._authorize(requirement, optional, dpop)
            except OAuth2Error as error:
                self.raise_error_response(error)
            return view(*args, **kwargs)

        return wrapper

    @contextmanager
    def acquire(
        self,
        scope: str | Iterable[str] | None = None,
        operator: str | ScopeOperator = "AND",
        *,
        scopes: str | Iterable[str] | None = None,
        **claims: str | Iterable[str] | None,
    ) -> Iterator[Any]:
        """``with require_oauth.acquire('profile') as token:`` inside a view.

        As in Authlib, an ``OAuth2Error`` raised here, by the authorization or
        by the block itself, becomes its response.
        """
        try:
            yield self.acquire_token(one_scope(scope, scopes), operator, **claims)
        except OAuth2Error as error:
            self.raise_error_response(error)

    def acquire_token(
        self,
        scopes: str | Iterable[str] | None = None,
        operator: str | ScopeOperator = "AND",
        **claims: str | Iterable[str] | None,
    ) -> Any:
        """Authorize this request and return its token, re-attached if it is an ORM row.

        Raises the refusal, an ``OAuth2Error`` (Authlib's like-named class), so
        ``except OAuth2Error`` and ``AuthorizationServer.handle_error_response``
        work as with Authlib.
        """
        self._authorize(compile_requirement(scopes, operator, claims), False)
        return _reattached() if g.get(_G_DETACHED) is not None else g.get(_G_TOKEN)

    def authenticate(self) -> TokenInfo:
        """Find, validate and deny-list-check this request's token (no scope check)."""
        return self.guard.authenticate(self._credentials())

    def _authorize(
        self, requirement: Requirement, optional: bool, dpop: DPoPMode | None = None
    ) -> None:
        # One frame for the whole decision; the latency observer, when set, is
        # timed by try/finally, which costs a hit nothing.
        guard = self.guard
        observe = guard.observe_latency
        start = time.perf_counter() if observe is not None else 0.0
        try:
            try:
                environ = _request_context().request.environ
            except LookupError:  # outside a request: Flask's own RuntimeError
                environ = _request_now().environ
            # A DPoP-only view is never answered by a Bearer hit.
            info = (
                guard.try_cached(environ.get("HTTP_AUTHORIZATION"), requirement, _oauth_request)
                if dpop != "required"
                else None
            )
            if info is None:
                info = guard.authorize(self._credentials(), requirement, optional, dpop)
                if info is not None and info.dpop_nonce is not None:
                    after_this_request(functools.partial(_with_nonce, info.dpop_nonce))
            # g's own dict, written directly: what flask.g's __setattr__ does,
            # without calling that Python method twice on every hit.
            stored = _app_context().g.__dict__
            if info is None:  # an anonymous request to an optional view
                stored[_G_TOKEN] = stored[_G_DETACHED] = None
                return
            if info.reattach is None:
                stored[_G_TOKEN] = info.token
                stored[_G_DETACHED] = None
            else:
                # A cached ORM row's detached copy, re-attached on demand; code
                # reading g.authlib_server_oauth2_token gets current_token itself.
                stored[_G_TOKEN] = current_token
                stored[_G_DETACHED] = info
            if token_authenticated.receivers:
                # A detached ORM copy lacks its token columns: current_token re-attaches.
                token = info.token if info.reattach is None else current_token
                token_authenticated.send(self, token=token)
        finally:
            if observe is not None:
                call_hook(observe, time.perf_counter() - start)  # a user's callable

    def _credentials(self) -> Credentials:
        """This request as the guard reads it (a cache miss, or hooks to run)."""
        flask_request = _request_now()
        guard, environ = self.guard, flask_request.environ
        # The settings' own slots, as the guard reads them: their descriptor's
        # __get__ is a Python call each, on every miss.
        query = flask_request.args.to_dict(flat=False) if guard._allow_query_token else None
        form_ok = guard._allow_form_token and flask_request.mimetype == _FORM
        form = flask_request.form.to_dict(flat=False) if form_ok else None
        header = environ.get("HTTP_AUTHORIZATION")
        return Credentials(
            authorization=header,
            method=flask_request.method,
            url=environ_url(environ) if is_dpop(header) else "",  # only htu reads it
            query=query,
            form=form,
            client_certificate=environ.get("SSL_CLIENT_CERT"),  # Werkzeug, mod_wsgi: PEM
            request=flask_request,
            hook_request=_oauth_request,
            dpop=dpop_values(environ.get("HTTP_DPOP")),
            peer=environ.get("REMOTE_ADDR"),
            proxy_headers=guard.proxy_headers.from_environ(environ),
        )


def _with_nonce(nonce: str, response: Response) -> Response:
    response.headers["DPoP-Nonce"] = nonce  # RFC 9449 §8.2: the next one, before it is needed
    return response


def _oauth_request() -> FlaskJsonRequest:
    """Authlib's wrapper of this request, for Authlib 1.x hooks: one per request."""
    current = _g_now()
    wrapped: FlaskJsonRequest | None = getattr(current, _G_OAUTH_REQUEST, None)
    if wrapped is None:
        wrapped = FlaskJsonRequest(_request_now())
        setattr(current, _G_OAUTH_REQUEST, wrapped)
    return wrapped


def _current() -> Any:
    detached: TokenInfo | None = g.get(_G_DETACHED)
    return detached.token if detached is not None else g.get(_G_TOKEN)


class _CurrentToken(LocalProxy):  # type: ignore[type-arg]
    """``current_token``: this request's token, re-attaching cached copies lazily.

    A cached ORM row is a detached copy; the first time a view reads an
    attribute it lacks (a lazy relationship), the row is re-attached (by the
    token's :class:`~bearerguard.core.tokeninfo.Reattach`) and the read retried.
    """

    def __getattr__(self, name: str) -> Any:
        detached: TokenInfo | None = g.get(_G_DETACHED)
        if detached is None or detached.reattach is None:
            return getattr(g.get(_G_TOKEN), name)
        try:
            return getattr(detached.token, name)
        except Exception as exc:
            if not detached.reattach.needed(exc):
                raise
        return getattr(_reattached(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        # A write must land on this request's own copy, never on the cached
        # row that other requests share.
        token = _reattached() if g.get(_G_DETACHED) is not None else g.get(_G_TOKEN)
        setattr(token, name, value)


def _reattached() -> Any:
    detached: TokenInfo = g.get(_G_DETACHED)
    assert detached.reattach is not None
    token = detached.reattach(detached.token)
    setattr(g, _G_TOKEN, token)
    setattr(g, _G_DETACHED, None)
    return token


current_token: Any = _CurrentToken(_current)
