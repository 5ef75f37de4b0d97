"""The Starlette app uvicorn serves in the load run: ``/hello`` unprotected
(the floor), ``/hello/protected`` behind bearerguard, over a dict validator
that knows the load client's ``load-NNNN`` tokens (``BEARERGUARD_DEMO_TOKENS``),
and the limit, ``/hello/limit`` (:mod:`.load_limit`).

``uvicorn benchmarks.asgi_load_app:app``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard.core.connection import joined_header
from bearerguard.starlette import ResourceProtector
from bearerguard.validators import BearerTokenValidator

from .load_limit import PATH, known, load_digests, load_tokens

_EXP = time.time() + 86400
_KNOWN = {
    token: {"scope": "profile email", "sub": f"user-{i}", "exp": _EXP}
    for i, token in enumerate(load_tokens())
}


class LoadTokens(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Any:
        return _KNOWN.get(token_string)


require_oauth = ResourceProtector()
require_oauth.register_token_validator(LoadTokens())


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


_DIGESTS = load_digests()


async def hello_limit(request: Request) -> JSONResponse:
    if not known(joined_header(request.scope, b"authorization"), _DIGESTS):
        return JSONResponse({}, 401)
    return JSONResponse({"hello": "world"})


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/hello/protected", require_oauth.route("profile")(hello)),
        # After the protected route: it pays one more failed route match.
        Route(PATH, hello_limit),
    ]
)
