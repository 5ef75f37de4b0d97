"""The ASGI edge: bearer-token protection for Starlette and FastAPI.

The core's :class:`~bearerguard.core.guard.Guard` decides; this translates. A
cache hit is answered on the event loop (no I/O); a miss (a query, a key
fetch, single-flight waits) runs in a worker thread (``anyio.to_thread``), so
the loop never blocks. Refusals are :meth:`Guard.render`'s bytes, as Flask's.
FastAPI: ``token = Security(require_oauth("profile"))``; Starlette:
``@require_oauth.route("profile")`` or :class:`BearerMiddleware`, the token at
``request.state.token``. Loads neither Flask nor FastAPI; README.md has examples.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, overload
from urllib.parse import parse_qs

import anyio.to_thread
from authlib.oauth2 import OAuth2Error
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ._asgi_nonce import nonce_of, nonce_sender, with_nonce
from ._openapi import bearer_scheme, scheme_parameters
from .core.connection import header_values, joined_header, scope_certificate, scope_peer
from .core.credentials import Credentials
from .core.front import Front, one_scope
from .core.hooks import call_hook
from .core.requirements import Requirement, ScopeOperator, compile_requirement
from .core.sender import DPoPMode, check_mode, is_dpop
from .errors import BearerGuardError

__all__ = ["BearerMiddleware", "Dependency", "RefusedError", "ResourceProtector"]

Endpoint: TypeAlias = Callable[[Request], Awaitable[Response]]
SyncEndpoint: TypeAlias = Callable[[Request], Response]
_FORM = "application/x-www-form-urlencoded"
#: ``ResourceProtector._hit``'s answer when the cache cannot decide.
_MISSED: Any = object()


class RefusedError(HTTPException):
    """A refusal raised by the FastAPI dependency; ``response`` is ready-made, sent
    once :meth:`ResourceProtector.init_app` ran (else FastAPI's own handler sends
    the status and ``WWW-Authenticate``, with its ``{"detail": ...}`` body)."""

    def __init__(self, error: BearerGuardError, response: Response) -> None:
        headers = {k: v for k, v in response.headers.items() if k != "content-length"}
        super().__init__(response.status_code, error.get_error_description(), headers)
        self.error = error
        self.response = response


class ResourceProtector(Front):
    """Protects Starlette routes and FastAPI operations with a :class:`Guard`.

    Takes the Flask ``ResourceProtector``'s arguments (``realm``, ``cache``,
    ``revocations``, ``allow_query_token``, ...); registration, revocation and
    stats are the guard's, as there (:class:`~bearerguard.core.front.Front`).
    """

    # -- the request ---------------------------------------------------------------

    async def authorize(
        self,
        request: Request,
        requirement: Requirement,
        optional: bool = False,
        dpop: DPoPMode | None = None,
    ) -> Any:
        """This request's token held to ``requirement`` (None: anonymous and
        ``optional``), also put on ``request.state.token``; raises the refusal."""
        token = self._hit(request, requirement, dpop)
        if token is _MISSED:
            return await self._decide(request, requirement, optional, dpop)
        return token

    def _hit(self, request: Request, requirement: Requirement, dpop: DPoPMode | None) -> Any:
        """The token when the cache answers (most requests), put on
        ``request.state.token``, or ``_MISSED`` for :meth:`_decide`. Not a
        coroutine: the entries call it before awaiting anything, so a hit
        creates none (a bare Starlette request is about 11 µs, and a
        coroutine made and awaited is a visible part of that)."""
        if dpop == "required":  # a DPoP-only view is never answered by a Bearer hit
            return _MISSED
        guard = self.guard
        observe = guard.observe_latency
        start = time.perf_counter() if observe is not None else 0.0
        try:
            info = guard.try_cached(joined_header(request.scope, b"authorization"), requirement)
        except BearerGuardError:  # a refusal from the cache (403) is timed as answered
            if observe is not None:
                call_hook(observe, time.perf_counter() - start)  # a user's callable
            raise
        if info is None:
            return _MISSED  # timed by _decide, which decides the request
        if observe is not None:
            call_hook(observe, time.perf_counter() - start)  # a user's callable
        request.scope.setdefault("state", {})["token"] = info.token  # request.state's dict
        return info.token

    async def _decide(
        self,
        request: Request,
        requirement: Requirement,
        optional: bool,
        dpop: DPoPMode | None,
    ) -> Any:
        """The whole decision of a request the cache did not answer."""
        observe = self.guard.observe_latency
        start = time.perf_counter() if observe is not None else 0.0
        try:
            header = joined_header(request.scope, b"authorization")
            credentials = await self._credentials(request, header)
            info = await anyio.to_thread.run_sync(
                self.guard.authorize, credentials, requirement, optional, dpop
            )
        finally:
            if observe is not None:
                call_hook(observe, time.perf_counter() - start)  # a user's callable
        token = None if info is None else info.token
        state = request.scope.setdefault("state", {})  # request.state's dict
        state["token"] = token
        if info is not None and info.dpop_nonce is not None:  # RFC 9449 §8.2, sent on success
            state["dpop_nonce"] = info.dpop_nonce
        return token

    async def _credentials(self, request: Request, header: str | None) -> Credentials:
        """The request as plain values; the query and the form only when allowed."""
        guard = self.guard
        query: Mapping[str, Sequence[str]] | None = None
        form: Mapping[str, Sequence[str]] | None = None
        # The settings' own slots, as the guard reads them (their descriptor's
        # __get__ is a Python call each, on every miss).
        if guard._allow_query_token:
            query = parse_qs(request.scope.get("query_string", b"").decode("latin-1"))
        if (
            guard._allow_form_token
            and request.method not in ("GET", "HEAD")
            and _media_type(request) == _FORM
        ):
            # Read on the loop (it is async); the body stays cached for the view.
            form = parse_qs((await request.body()).decode("utf-8", "replace"))
        scope = request.scope
        return Credentials(
            header,
            request.method,
            str(request.url) if is_dpop(header) else "",  # only DPoP's htu reads it
            query,
            form,
            scope_certificate(scope),
            request,
            dpop=header_values(scope, b"dpop"),
            peer=scope_peer(scope),
            proxy_headers=guard.proxy_headers.from_scope(scope),
        )

    def response(self, error: OAuth2Error) -> Response:
        """The refusal as a response: :meth:`Guard.render`'s status, headers and body."""
        status, headers, body = self.guard.render(error)
        return Response(body, status, headers=dict(headers), media_type="application/json")

    async def _refusal(
        self,
        request: Request,
        requirement: Requirement,
        optional: bool,
        dpop: DPoPMode | None = None,
    ) -> Response | None:
        try:
            if self._hit(request, requirement, dpop) is _MISSED:
                await self._decide(request, requirement, optional, dpop)
        except BearerGuardError as error:
            return self.response(error)
        return None

    # -- Starlette: the route decorator ---------------------------------------------

    @overload
    def route(self, scope: Endpoint) -> Endpoint: ...

    @overload
    def route(
        self,
        scope: str | Iterable[str] | None = None,
        operator: Literal["AND", "OR"] | str | ScopeOperator = "AND",
        *,
        scopes: str | Iterable[str] | None = None,
        optional: bool = False,
        dpop: DPoPMode | None = None,
        **claims: Any,
    ) -> Callable[[Endpoint | SyncEndpoint], Endpoint]: ...

    def route(
        self,
        scope: Any = None,
        operator: Any = "AND",
        *,
        scopes: Any = None,
        optional: bool = False,
        dpop: DPoPMode | None = None,
        **claims: Any,
    ) -> Any:
        """Decorate a Starlette endpoint ``(request) -> Response`` as Flask's
        ``@require_oauth(...)`` does a view (the token: ``request.state.token``;
        a refusal is answered without calling it; a sync one runs in a thread)."""
        if callable(scope) and not isinstance(scope, str | list | tuple):
            return self.route()(scope)  # bare @require_oauth.route
        compiled = compile_requirement(one_scope(scope, scopes), operator, claims)
        requirement = self._required(compiled)
        mode = None if dpop is None else check_mode(dpop)

        def decorator(endpoint: Endpoint | SyncEndpoint) -> Endpoint:
            run: Endpoint = (
                endpoint if inspect.iscoroutinefunction(endpoint) else _in_thread(endpoint)  # type: ignore[arg-type]
            )

            @functools.wraps(endpoint)
            async def wrapper(request: Request) -> Response:
                try:  # _refusal, written out: no coroutine at all on a hit
                    hit = self._hit(request, requirement, mode) is not _MISSED
                    if not hit:
                        await self._decide(request, requirement, optional, mode)
                except BearerGuardError as error:
                    return self.response(error)
                if hit:  # a Bearer token from the cache: no DPoP nonce to send
                    return await run(request)
                return with_nonce(request, await run(request))

            return wrapper

        return decorator

    # -- FastAPI: the dependency ----------------------------------------------------

    def __call__(
        self,
        scope: str | Iterable[str] | None = None,
        operator: Literal["AND", "OR"] | str | ScopeOperator = "AND",
        *,
        scopes: str | Iterable[str] | None = None,
        optional: bool = False,
        dpop: DPoPMode | None = None,
        **claims: Any,
    ) -> Any:
        """A FastAPI dependency: ``token = Security(require_oauth("profile"))``.

        Its value is the token (None for an anonymous ``optional`` request);
        ``Security(..., scopes=[...])`` adds required scopes, all listed in
        ``/openapi.json`` under the HTTP bearer and DPoP schemes the view takes.
        """
        mode = None if dpop is None else check_mode(dpop)
        return Dependency(self, one_scope(scope, scopes), operator, claims, optional, mode)

    def init_app(self, app: Any) -> None:
        """Make a Starlette or FastAPI app answer the dependency's refusals
        with their RFC 6750 response (status, JSON body, ``WWW-Authenticate``),
        and, with ``resource=``, serve the metadata document (:meth:`metadata_route`)."""
        app.add_exception_handler(RefusedError, _answer_refusal)
        if self.guard.metadata is not None:
            app.router.routes.append(self.metadata_route())

    def metadata_route(self) -> Any:
        """A Starlette ``Route`` serving the RFC 9728 document at its
        well-known path (for an app built from a list of routes)."""
        from starlette.routing import Route

        metadata = self.guard.metadata
        if metadata is None:
            raise ValueError("this protector has no resource= to publish")

        async def endpoint(request: Request) -> Response:
            status, headers, body = self.metadata_response(request.method)
            return Response(body, status, headers=dict(headers))

        return Route(metadata.path, endpoint, methods=["GET", "HEAD", "OPTIONS"])

    def security_scheme(self) -> Any:
        """The FastAPI security scheme (HTTP bearer) of the operations."""
        return bearer_scheme()


class Dependency:
    """What ``require_oauth(...)`` gives FastAPI's ``Depends``/``Security``: its
    signature (built, and FastAPI imported, on first read) asks for the request,
    its response (a ``DPoP-Nonce``), ``SecurityScopes`` and the schemes the view
    takes with its scopes, for ``/openapi.json`` (:mod:`bearerguard._openapi`)."""

    def __init__(
        self,
        protector: ResourceProtector,
        scope: str | Iterable[str] | None,
        operator: str | ScopeOperator,
        claims: Mapping[str, Any],
        optional: bool,
        dpop: DPoPMode | None = None,
    ) -> None:
        self.protector = protector
        self.dpop = dpop
        self.scope, self.operator, self.claims = scope, operator, dict(claims)
        self.optional = optional
        # Compiled now: errors at import time, and the scopes in the metadata.
        self.requirement = protector._required(compile_requirement(scope, operator, claims))
        self._with_scopes: dict[tuple[str, ...], Requirement] = {}
        self._signature: inspect.Signature | None = None

    @property
    def __signature__(self) -> inspect.Signature:
        if self._signature is None:
            from fastapi.security import SecurityScopes

            listed = [] if self.scope is None else _words(self.scope)
            kind, new = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter
            mode = self.dpop or self.protector.guard.dpop
            self._signature = inspect.Signature(
                [
                    new("request", kind, annotation=Request),
                    new("response", kind, annotation=Response),
                    new("security_scopes", kind, annotation=SecurityScopes),
                    *scheme_parameters(mode, listed),  # list the scopes in /openapi.json
                ]
            )
        return self._signature

    async def __call__(
        self,
        request: Request,
        response: Response | None = None,
        security_scopes: Any = None,
        **_schemes: Any,
    ) -> Any:
        extra = tuple(security_scopes.scopes) if security_scopes is not None else ()
        requirement = self._requirement(extra) if extra else self.requirement
        protector = self.protector
        try:
            token = protector._hit(request, requirement, self.dpop)
            if token is not _MISSED:
                return token  # a Bearer token from the cache: no DPoP nonce to send
            token = await protector._decide(request, requirement, self.optional, self.dpop)
        except BearerGuardError as error:
            raise RefusedError(error, self.protector.response(error)) from None
        if response is not None:  # FastAPI adds its headers unless the view returns a Response
            with_nonce(request, response)
        return token

    def _requirement(self, extra: tuple[str, ...]) -> Requirement:
        """This requirement with FastAPI's ``Security(scopes=...)`` added (all of them)."""
        found = self._with_scopes.get(extra)
        if found is None:
            scope = self.scope
            if not (isinstance(self.operator, str) and self.operator.upper() == "AND"):
                raise TypeError("Security(scopes=...) adds to an 'AND' requirement only")
            added = " ".join(extra)
            if scope is None or isinstance(scope, str):
                merged: Any = f"{scope or ''} {added}"
            else:
                merged = [f"{alternative} {added}" for alternative in scope]
            found = self.protector._required(compile_requirement(merged, "AND", self.claims))
            self._with_scopes[extra] = found
        return found


class BearerMiddleware:
    """Protect every HTTP request of an ASGI app with one requirement.

    Example: ``app.add_middleware(BearerMiddleware, protector=require_oauth,
    scope="profile")``. The token is ``request.state.token``. Form-encoded
    tokens are not read (the body is the app's). A WebSocket handshake is
    refused (closed with 1008, sent as 403), never let past unchecked.
    """

    def __init__(
        self,
        app: ASGIApp,
        protector: ResourceProtector,
        scope: str | Iterable[str] | None = None,
        operator: str | ScopeOperator = "AND",
        *,
        optional: bool = False,
        dpop: DPoPMode | None = None,
        **claims: Any,
    ) -> None:
        if protector.guard.allow_form_token:
            raise ValueError("BearerMiddleware does not read form tokens: use the route decorator")
        self.app = app
        self.protector = protector
        self.requirement = protector._required(compile_requirement(scope, operator, claims))
        self.optional = optional
        self.dpop = None if dpop is None else check_mode(dpop)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # fail closed
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        refusal = await self.protector._refusal(request, self.requirement, self.optional, self.dpop)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        nonce = nonce_of(scope)
        await self.app(scope, receive, send if nonce is None else nonce_sender(send, nonce))


def _in_thread(endpoint: SyncEndpoint) -> Endpoint:
    """A sync endpoint run in a worker thread, as Starlette runs one."""

    async def run(request: Request) -> Response:
        return await anyio.to_thread.run_sync(endpoint, request)

    return run


def _words(scope: str | Iterable[str]) -> list[str]:
    """Every scope named in ``scope`` (a string, or a list of alternatives), once."""
    alternatives = [scope] if isinstance(scope, str) else list(scope)
    return list(dict.fromkeys(word for text in alternatives for word in text.split()))


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


async def _answer_refusal(request: Request, error: Exception) -> Response:
    assert isinstance(error, RefusedError)
    return error.response
