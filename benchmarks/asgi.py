"""ASGI cases: Starlette and FastAPI apps called in-process, on one event loop.

Each request is one ``await app(scope, receive, send)`` with a prebuilt scope,
its status checked, so the cost is the whole framework request minus the
socket. As in the WSGI groups, cases run interleaved round by round and each
is reported against the bare floor of its framework, round by round (median
of the ratios). A hit is answered on the loop; a miss (a never-seen token)
goes through ``anyio.to_thread``, so its cost includes the thread hop.

``python -m benchmarks.asgi [--rounds N]``, or the ``asgi`` section of
``python -m benchmarks``.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .harness import PATH
from .tokens import AUDIENCE, ISSUER, Minter, jwks, new_key

HIT_CYCLE = 16
Scope = dict[str, Any]


def scope_for(token: str | None) -> Scope:
    headers = [(b"host", b"bench")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }


@dataclass
class ASGICase:
    name: str
    app: Any
    floor: str
    #: ``take(n)`` -> n scopes: a cycle of cached tokens, or fresh ones.
    take: Callable[[int], list[Scope]]
    batch: int
    samples_ns: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)


def cycle(tokens: list[str]) -> Callable[[int], list[Scope]]:
    scopes = [scope_for(t) for t in tokens]
    counter = itertools.count()
    return lambda n: [scopes[next(counter) % len(scopes)] for _ in range(n)]


def fresh(mint: Callable[[int], list[str]]) -> Callable[[int], list[Scope]]:
    return lambda n: [scope_for(t) for t in mint(n)]


# -- the apps ---------------------------------------------------------------------------


def starlette_app(protector: Any | None) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Any) -> Any:
        return JSONResponse({"hello": "world"})

    endpoint = hello if protector is None else protector.route("profile")(hello)
    return Starlette(routes=[Route(PATH, endpoint)])


def digest_lookup_app(tokens: list[str]) -> Any:
    """Bare Starlette whose endpoint hashes the presented token (SHA-256) and
    finds it in a dict: issue 15's physical limit of a hit on this front."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    table = {hashlib.sha256(t.encode()).digest(): t for t in tokens}

    async def hello(request: Any) -> Any:
        header = next(v for k, v in request.scope["headers"] if k == b"authorization")
        if table.get(hashlib.sha256(header[7:]).digest()) is None:
            raise RuntimeError("not cached")
        return JSONResponse({"hello": "world"})

    return Starlette(routes=[Route(PATH, hello)])


def fastapi_app(protector: Any | None) -> Any:
    from fastapi import Depends, FastAPI, Security

    app = FastAPI()
    if protector == "noop":  # FastAPI's own price for one async dependency

        async def nothing() -> None:
            return None

        noop = Depends(nothing)

        @app.get(PATH)
        async def hello_noop(token: Any = noop) -> dict[str, str]:
            return {"hello": "world"}

    elif protector is None:

        @app.get(PATH)
        async def hello() -> dict[str, str]:
            return {"hello": "world"}

    else:
        protector.init_app(app)
        profile = Security(protector("profile"))

        @app.get(PATH)
        async def hello_protected(token: Any = profile) -> dict[str, str]:
            return {"hello": "world"}

    return app


def fastapi_limit_app(tokens: list[str]) -> Any:
    """FastAPI whose view takes one dependency of the shape a bearerguard
    dependency has (the request, the response, the security scopes, and one
    sub-dependency per scheme the view lists in ``/openapi.json``, each with
    its scopes), doing only a hit's least: the presented token hashed
    (SHA-256) and found in a dict. Issue 15's limit of a FastAPI hit: FastAPI
    solves each scheme sub-dependency on every request."""
    from fastapi import FastAPI, Request, Security

    from bearerguard.starlette import ResourceProtector

    table = {hashlib.sha256(t.encode()).digest(): t for t in tokens}

    async def lookup(request: Request, **_: Any) -> str:
        token = table.get(hashlib.sha256(request.headers["authorization"][7:].encode()).digest())
        if token is None:
            raise RuntimeError("not cached")
        return token

    # The very signature bearerguard's dependency declares for a view that
    # requires "profile" in the default DPoP mode (both schemes listed).
    lookup.__signature__ = ResourceProtector()("profile").__signature__  # type: ignore[attr-defined]
    app = FastAPI()
    profile = Security(lookup)

    @app.get(PATH)
    async def hello_limit(token: Any = profile) -> dict[str, str]:
        return {"hello": "world"}

    return app


def opaque_protector() -> tuple[Any, Callable[[int], list[str]]]:
    """A protector over a dict validator, and a minter of tokens it knows."""
    from bearerguard.starlette import ResourceProtector
    from bearerguard.validators import BearerTokenValidator

    known: dict[str, dict[str, Any]] = {}

    class DictValidator(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return known.get(token_string)

    def mint(count: int) -> list[str]:
        tokens = [secrets.token_urlsafe(24) for _ in range(count)]
        exp = time.time() + 7200
        known.update((t, {"scope": "profile email", "sub": "u", "exp": exp}) for t in tokens)
        return tokens

    protector = ResourceProtector()
    protector.register_token_validator(DictValidator())
    return protector, mint


def jwt_protector() -> tuple[Any, Callable[[int], list[str]]]:
    from bearerguard.starlette import ResourceProtector
    from bearerguard.validators import JWTBearerTokenValidator

    key = new_key("ES256")
    protector = ResourceProtector()
    protector.register_token_validator(
        JWTBearerTokenValidator(issuer=ISSUER, audience=AUDIENCE, jwks=jwks(key))
    )
    return protector, Minter(key)


def build(hit_batch: int = 2000, miss_batch: int = 300) -> list[ASGICase]:
    cases: list[ASGICase] = []
    for framework, make in (("starlette", starlette_app), ("fastapi", fastapi_app)):
        floor = f"asgi.{framework}.floor"
        cases.append(ASGICase(floor, make(None), floor, cycle(["not-checked"]), hit_batch))
        if framework == "starlette":
            tokens = Minter(new_key("ES256"))(HIT_CYCLE)
            limit = digest_lookup_app(tokens)
            cases.append(
                ASGICase("asgi.starlette.digest-lookup", limit, floor, cycle(tokens), hit_batch)
            )
        if framework == "fastapi":
            # FastAPI's fair floor: the same app with a dependency that does
            # nothing (Security() is a dependency; its machinery is FastAPI's).
            noop = make("noop")
            cases.append(
                ASGICase("asgi.fastapi.noop-dependency", noop, floor, cycle(["x"]), hit_batch)
            )
            floor = "asgi.fastapi.noop-dependency"
            tokens = Minter(new_key("ES256"))(HIT_CYCLE)
            limit = fastapi_limit_app(tokens)
            cases.append(
                ASGICase("asgi.fastapi.digest-lookup", limit, floor, cycle(tokens), hit_batch)
            )
        for kind, protector_of in (("opaque", opaque_protector), ("jwt-es256", jwt_protector)):
            protector, mint = protector_of()
            app = make(protector)
            name = f"asgi.{framework}.{kind}"
            cases.append(ASGICase(f"{name}.hit", app, floor, cycle(mint(HIT_CYCLE)), hit_batch))
            protector, mint = protector_of()  # its own cache: every token is a miss
            app = make(protector)
            cases.append(ASGICase(f"{name}.miss", app, floor, fresh(mint), miss_batch))
    return cases


# -- the runner ---------------------------------------------------------------------------


async def _batch(app: Any, scopes: list[Scope]) -> tuple[int, int]:
    """Nanoseconds for ``scopes``, and how many were not answered 200."""
    bad = 0
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    start = time.perf_counter_ns()
    for scope in scopes:
        await app(dict(scope), receive, send)
        bad += status != 200
    return time.perf_counter_ns() - start, bad


async def _run(cases: list[ASGICase], rounds: int, warmup: int) -> None:
    floors = {c.name: c for c in cases}
    for number in range(warmup + rounds):
        this_round: dict[str, float] = {}
        for case in cases:
            scopes = case.take(case.batch)  # minted outside the timed region
            elapsed, bad = await _batch(case.app, scopes)
            if bad:
                raise RuntimeError(f"{case.name}: {bad} of {case.batch} answers were not 200")
            this_round[case.name] = elapsed / case.batch
        if number < warmup:
            continue
        for case in cases:
            case.samples_ns.append(this_round[case.name])
            case.ratios.append(this_round[case.name] / this_round[floors[case.floor].name])


def measure(rounds: int = 10, warmup: int = 2) -> list[dict[str, Any]]:
    """Build and measure every case; one row per case (median ns, median ratio)."""
    import anyio

    cases = build()
    anyio.run(_run, cases, rounds, warmup)
    return [
        {
            "name": case.name,
            "floor": case.floor,
            "us_per_request": round(statistics.median(case.samples_ns) / 1000, 2),
            "over_floor_us": round(
                statistics.median(
                    s - f
                    for s, f in zip(case.samples_ns, _floor(cases, case).samples_ns, strict=True)
                )
                / 1000,
                2,
            ),
            "x_floor": round(statistics.median(case.ratios), 2),
        }
        for case in cases
    ]


def _floor(cases: list[ASGICase], case: ASGICase) -> ASGICase:
    return next(c for c in cases if c.name == case.floor)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'ASGI case':32} {'us/req':>9} {'+floor us':>10} {'x floor':>8}"]
    lines += [
        f"{r['name']:32} {r['us_per_request']:9.2f} {r['over_floor_us']:10.2f} {r['x_floor']:8.2f}"
        for r in rows
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.asgi", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    print(table(measure(args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
