"""Bytecodes per request, by function: where a request's Python work goes.

``benchmarks.instructions`` counts the machine's instructions, C and Python
alike; this counts the bytecodes the interpreter runs (``sys.settrace`` with
opcode events, so orders of magnitude slower than a real request), each
charged to the function that ran it. It answers what a change removed from a
request and whose code the rest is: bearerguard's, or the framework's.

``python -m benchmarks.bytecodes [CASE ...] [--top N]`` prints, per case, the
bytecodes a request, bearerguard's share, and its functions that run the
most. Cases: the Flask ``floor``, an ES256 JWT ``hit`` and ``miss``, an
``opaque-miss`` (a dict validator: the miss path with no cryptography and no
query), a ``sqlite-miss`` (``create_bearer_token_validator`` over SQLite,
each token once: the query, the detached copy and the machinery), a ``dpop``
hit (a cached bound token, a fresh proof each request), and on Starlette
its ``starlette.floor``, ``starlette.limit`` (issue 15's: a hash and a
dict lookup) and an opaque ``starlette.hit``.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import bearerguard

from .apps import make_app
from .harness import environ_for, status_log
from .tokens import ISSUER, Minter, jwks, new_key

CASES = (
    "floor",
    "hit",
    "miss",
    "opaque-miss",
    "sqlite-miss",
    "dpop",
    "starlette.floor",
    "starlette.limit",
    "starlette.hit",
)
Counts = collections.Counter[tuple[str, str]]


Switch = Callable[[], None]
#: Set-ups whose temporary files must outlive the case built on them.
_keep: list[Any] = []


def _flask_requests(case: str, count: int, on: Switch, off: Switch) -> Callable[[], None]:
    """``count`` requests of ``case``, set up and warmed: the run, traced
    between ``on()`` and ``off()``."""
    status, start_response = status_log()

    if case == "dpop":
        from .cases_limits import dpop_hit
        from .config import Context

        built = dpop_hit(Context(profile=None))  # type: ignore[arg-type]
        # Its tokens cycle: each one's first request (a miss) is the warm-up's.
        warm = built.feed.take(32)
        app, environs = built.app, built.feed.take(count + 1)
        for environ in warm:
            app(environ, start_response)
    elif case == "opaque-miss":
        from .cases_limits import opaque_dict_hit

        # Each of its tokens sent once: every request a miss.
        built = opaque_dict_hit(count + 1)
        app, environs = built.app, built.feed.take(count + 1)
    elif case == "sqlite-miss":
        from .cases_opaque import TokenDB, bearerguard_protector
        from .config import Context

        ctx = Context(profile=None)  # type: ignore[arg-type]
        db = TokenDB(ctx, "sqlite", f"sqlite:///{ctx.tmp}/tokens.db", count + 1)
        app = db.app("miss", bearerguard_protector(db)("profile"))
        environs = [environ_for(t) for t in db.take(count + 1)]
        # Its database goes when the process does: close() would need the app.
        _keep.append(ctx)
    else:
        from .cases_jwt import bearerguard_jwt_protector

        key = new_key("ES256")
        tokens = Minter(key)(count + 1)
        protected = bearerguard_jwt_protector([(ISSUER, jwks(key))])("profile")
        app = make_app(case, None if case == "floor" else protected)
        fresh = case == "miss"
        environs = [environ_for(tokens[i if fresh else 0]) for i in range(count + 1)]
    app(environs[0], start_response)  # warm: first-request work, the hit's cache entry

    def run() -> None:
        status.clear()
        on()
        for environ in environs[1:]:
            app(environ, start_response)
        off()
        if any(not s.startswith("200") for s in status):
            raise RuntimeError(f"{case}: a request was refused: {set(status)}")

    return run


def _starlette_requests(case: str, count: int, on: Switch, off: Switch) -> Callable[[], None]:
    from .asgi import _batch, digest_lookup_app, opaque_protector, scope_for, starlette_app

    protector, mint = opaque_protector()
    tokens = mint(16)
    if case == "starlette.floor":
        app = starlette_app(None)
    elif case == "starlette.limit":
        app = digest_lookup_app(tokens)
    else:
        app = starlette_app(protector)
    asyncio.run(_batch(app, [scope_for(t) for t in tokens]))  # warm, and cached
    scopes = [scope_for(tokens[i % 16]) for i in range(count)]

    async def batch() -> int:
        on()  # inside the loop: its set-up and teardown are not a request's
        _, refused = await _batch(app, scopes)
        off()
        return refused

    def run() -> None:
        refused = asyncio.run(batch())
        if refused:
            raise RuntimeError(f"{case}: {refused} requests refused")

    return run


def count(case: str, requests: int = 50) -> tuple[float, Counts]:
    """Bytecodes a request of ``case``, and the total by (file, function)."""
    counts: Counts = collections.Counter()

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            counts[(code.co_filename, code.co_name)] += 1
        return trace

    def on() -> None:
        # Garbage of earlier work collected first: its weakref callbacks (a
        # protector's, say) would be charged to these requests.
        gc.collect()
        sys.settrace(trace)

    # Whatever traced before (coverage, a debugger) traces again afterwards.
    previous = sys.gettrace()
    make = _starlette_requests if case.startswith("starlette.") else _flask_requests
    run = make(case, requests, on, lambda: sys.settrace(previous))
    try:
        run()
    finally:
        sys.settrace(previous)
    return sum(counts.values()) / requests, counts


_PACKAGE = os.path.dirname(bearerguard.__file__) + os.sep


def _ours(filename: str) -> bool:
    return filename.startswith(_PACKAGE)


def main(argv: list[str]) -> int:
    top = 12
    if "--top" in argv:
        at = argv.index("--top")
        top = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    requests = 50
    for case in argv or CASES:
        per, counts = count(case, requests)
        ours = sum(n for (f, _), n in counts.items() if _ours(f)) / requests
        print(f"{case}: {per:,.0f} bytecodes a request, bearerguard's {ours:,.0f}")
        mine = [(n, f, name) for (f, name), n in counts.items() if _ours(f)]
        for n, f, name in sorted(mine, reverse=True)[:top]:
            where = f[len(_PACKAGE) :]
            print(f"  {n / requests:7.1f}  {where}:{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
