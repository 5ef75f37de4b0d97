"""The physical limits issue 15 measures against, and the hits it adds.

* ``raw.<alg>.verify``: one signature check with the very key object a
  bearerguard validator uses, in a bare WSGI callable (no Flask), so its
  median is the cryptography's cost in this run; ``raw.null`` is the same
  callable without the check (the harness's own cost per request, subtracted).
* ``floor.verify-<alg>``: the floor app whose view, fed the never-seen tokens
  of the miss cases, decodes and parses each one's payload (one JSON parse)
  and checks its signature: issue 15's physical limit of a cache miss, paid in
  place (colder caches than in a loop).
* ``floor.digest-lookup``: the floor app whose view hashes the presented
  token (SHA-256) and finds it in a dict of the cycle's tokens: issue 15's
  physical limit of a cache hit, measured, not assumed.
* ``opaque.dict.bg.hit``: a cache hit of an opaque token from a dict validator.
* ``opaque.dict.bg.miss``: its miss, a never-seen token on every request: the
  part of a database miss that is neither the query nor the copy of the row.
* ``dpop.es256.bg.hit``: a DPoP-bound JWT, cached, with a fresh ES256 proof on
  every request (minted before timing): a hit plus one proof verified.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

import jwt
from flask.globals import _cv_request  # the environ as bearerguard's Flask front reads it
from jwt.algorithms import ECAlgorithm

from .apps import Decorator, make_app
from .config import Context
from .harness import PATH, Case, Environ, Feed, Group, environ_for
from .tokens import AUDIENCE, ISSUER, Minter, SigningKey, jwks, new_key

HIT_CYCLE = 16
#: The URL Werkzeug's EnvironBuilder gives a request to PATH (a proof's htu).
URL = f"http://localhost{PATH}"


def verify_parts(key: SigningKey, token: str) -> tuple[Any, bytes, bytes]:
    """bearerguard's key object for ``key``, and a token's signing input and signature."""
    from bearerguard.jose.jws import extract
    from bearerguard.jose.keys import KeySet

    jws = extract(token)
    found = KeySet.parse(jwks(key), None, "bench", local=True).find(key.kid, key.alg)
    assert found is not None
    return found, jws.signing_input.encode("ascii"), jws.signature


def raw_verify_app(key: SigningKey, token: str | None) -> Callable[..., Any]:
    """A bare WSGI callable that checks one signature (none: ``token`` None)."""
    verify: Callable[[], bool] = lambda: True  # noqa: E731
    if token is not None:
        found, signing_input, signature = verify_parts(key, token)
        verify = functools.partial(found.verify, key.alg, signing_input, signature)

    def app(environ: Environ, start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK" if verify() else "500 bad signature", [])
        return []

    return app


def verifying(key: SigningKey) -> Decorator:
    """The least a miss can do: the request's token split, its payload decoded
    and parsed, its signature checked with the key (no other check)."""
    found = verify_parts(key, Minter(key)(1)[0])[0]

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _cv_request.get().request.environ["HTTP_AUTHORIZATION"][7:]
            signing_input, _, signature = token.rpartition(".")
            payload = json.loads(_b64url(signing_input.partition(".")[2]))
            if not found.verify(key.alg, signing_input.encode(), _b64url(signature)):
                raise RuntimeError("bad signature")
            if "exp" not in payload:
                raise RuntimeError("no exp")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def digest_lookup(tokens: list[str]) -> Decorator:
    """The least a hit can do: the presented token hashed and found in a dict."""
    table = {hashlib.sha256(t.encode()).digest(): t for t in tokens}

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _cv_request.get().request.environ["HTTP_AUTHORIZATION"][7:]
            if table.get(hashlib.sha256(token.encode()).digest()) is None:
                raise RuntimeError("not cached")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def build(ctx: Context, group: Group) -> None:
    null = raw_verify_app(ctx.key("ES256"), None)
    group.cases.append(Case("raw.null", null, Feed(["x"])))
    for alg in ("RS256", "ES256"):
        key = ctx.key(alg)
        token = Minter(key)(1)[0]
        tag = alg.lower()
        group.cases.append(Case(f"raw.{tag}.verify", raw_verify_app(key, token), Feed(["x"])))
        group.cases.append(
            Case(
                f"floor.verify-{tag}",
                make_app(f"floor-verify-{tag}", verifying(key)),
                Feed(mint=ctx.pool(alg).reader()),
                batch=ctx.profile.fixed(80),
            )
        )
    cycle = Minter(ctx.key("ES256"))(HIT_CYCLE)
    group.cases.append(
        Case("floor.digest-lookup", make_app("floor-digest", digest_lookup(cycle)), Feed(cycle))
    )
    group.cases.append(opaque_dict_hit())
    group.cases.append(opaque_dict_miss(ctx))
    group.cases.append(dpop_hit(ctx))


def opaque_dict_hit(tokens: int = HIT_CYCLE) -> Case:
    """A dict validator that knows ``tokens`` tokens, sent in turn (``take``)."""
    known: dict[str, dict[str, Any]] = {}
    app = make_app("opaque-dict-hit", _dict_protector(known)("profile"))
    return Case("opaque.dict.bg.hit", app, Feed(_dict_tokens(known, tokens)))


def opaque_dict_miss(ctx: Context) -> Case:
    """A dict validator sent a token it has never been sent on every request:
    an opaque miss with no query and no row to copy, so what any database
    miss pays on top of its query, the reference beside those targets."""
    known: dict[str, dict[str, Any]] = {}
    app = make_app("opaque-dict-miss", _dict_protector(known)("profile"))
    mint = functools.partial(_dict_tokens, known)
    return Case("opaque.dict.bg.miss", app, Feed(mint=mint), batch=ctx.profile.fixed(80))


def _dict_tokens(known: dict[str, dict[str, Any]], count: int) -> list[str]:
    """``count`` new tokens, each added to ``known`` with its claims."""
    exp = time.time() + 7200
    tokens = [secrets.token_urlsafe(24) for _ in range(count)]
    for token in tokens:
        known[token] = {"scope": "profile email", "sub": "u", "exp": exp}
    return tokens


def _dict_protector(known: dict[str, dict[str, Any]]) -> Any:
    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.validators import BearerTokenValidator

    class DictValidator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return known.get(token_string)

    protector = ResourceProtector(cache=TokenCache(ttl=3600))
    protector.register_token_validator(DictValidator())
    return protector


def dpop_hit(ctx: Context) -> Case:
    """A cached DPoP-bound JWT; every request a fresh proof of the client key."""
    from bearerguard import ResourceProtector, TokenCache
    from bearerguard.core.dpop import thumbprint
    from bearerguard.validators import JWTBearerTokenValidator

    client = new_key("ES256")
    public = ECAlgorithm.to_jwk(client.private.public_key(), as_dict=True)
    minter = Minter(ctx.key("ES256"))
    tokens = []
    for _ in range(HIT_CYCLE):
        claims = minter.claims()
        claims["cnf"] = {"jkt": thumbprint(public)}
        headers = {"kid": minter.key.kid, "typ": "at+jwt"}
        tokens.append(jwt.encode(claims, minter.key.private, algorithm="ES256", headers=headers))
    protector = ResourceProtector(cache=TokenCache(ttl=3600))
    validator = JWTBearerTokenValidator(
        issuer=ISSUER, audience=AUDIENCE, jwks=jwks(ctx.key("ES256"))
    )
    protector.register_token_validator(validator)
    app = make_app("dpop-hit", protector("profile"))
    served = 0

    def build_environs(count: int) -> list[Environ]:
        nonlocal served
        out = []
        for _ in range(count):
            token = tokens[served % len(tokens)]
            served += 1
            out.append(environ_for(token, scheme="DPoP", DPoP=proof(client, public, token)))
        return out

    return Case("dpop.es256.bg.hit", app, Feed(build=build_environs))


def proof(client: SigningKey, public: dict[str, Any], token: str) -> str:
    """A DPoP proof (RFC 9449 §4.2) for GET ``URL`` bound to ``token``."""
    ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=")
    claims = {
        "jti": secrets.token_urlsafe(12),
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": ath.decode(),
    }
    headers = {"typ": "dpop+jwt", "jwk": public}
    return jwt.encode(claims, client.private, algorithm="ES256", headers=headers)
