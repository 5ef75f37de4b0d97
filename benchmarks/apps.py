"""The Flask apps under test: one app per case, identical but for the decorator.

Every app has the single route ``/hello/protected`` answering
``{"hello": "world"}``, the view of ``examples/demo.py``. The floor is that
app with no protection; the others wrap the same view in one decorator each,
so the difference between a case and the floor is exactly what protection
costs.
"""

from __future__ import annotations

import functools
import threading
import warnings
from collections.abc import Callable
from typing import Any

from flask import Flask, abort, g, request

from .harness import PATH, Skip

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def make_app(name: str, decorate: Decorator | None = None) -> Flask:
    app = Flask(f"bench-{name}")

    def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_url_rule(PATH, "hello", hello if decorate is None else decorate(hello))
    return app


def quiet_authlib() -> None:
    """Silence Authlib's deprecation warnings, which 1.9 turns on with "always".

    Authlib's documented ``get_jwks()`` returns a JWKS dict, and 1.9 then warns
    on every request ("use KeySet.import_key_set"). Printing that to stderr per
    request is not what anyone would deploy, so it is filtered; the
    ``warnings.warn`` call itself is still paid, as a user who filters it pays it.
    """
    from authlib.deprecate import AuthlibDeprecationWarning
    from joserfc.errors import SecurityWarning

    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)
    # joserfc 1.x warns once that "EdDSA" is deprecated (RFC 9864) for the
    # EdDSA Authlib cases; the algorithm is what PyJWT and the others use.
    warnings.filterwarnings("ignore", category=SecurityWarning)


def require_bearerguard_feature(cls: type, what: str) -> None:
    """Skip when ``cls`` is still the in-progress stub (no ``validate`` of its own)."""
    from bearerguard.validators.base import TokenValidator

    if getattr(cls, "validate", None) is TokenValidator.validate:
        raise Skip(f"{what} is still a stub in src/ (no validate())", "stub")


# -- minimal hand-written references (what a user might write instead) -------------


def pyjwt_decorator(public_key: Any, alg: str, issuer: str, audience: str) -> Decorator:
    """A minimal PyJWT decorator: verify on every request, check one scope, no cache."""
    import jwt

    def require(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                abort(401)
            try:
                claims = jwt.decode(
                    header[7:], public_key, algorithms=[alg], audience=audience, issuer=issuer
                )
            except jwt.InvalidTokenError:
                abort(401)
            if "profile" not in claims.get("scope", "").split():
                abort(403)
            g.claims = claims
            return view(*args, **kwargs)

        return wrapper

    return require


def ttlcache_decorator(lookup: Callable[[str], Any]) -> Decorator:
    """A minimal decorator with a cachetools TTLCache (and the lock it needs)."""
    from cachetools import TTLCache

    cache: TTLCache[str, Any] = TTLCache(maxsize=100_000, ttl=300)
    lock = threading.Lock()

    def require(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                abort(401)
            token = header[7:]
            with lock:
                info = cache.get(token)
            if info is None:
                info = lookup(token)
                if info is None:
                    abort(401)
                with lock:
                    cache[token] = info
            if "profile" not in info["scope"]:
                abort(403)
            g.token = info
            return view(*args, **kwargs)

        return wrapper

    return require
