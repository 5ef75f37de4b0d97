"""The Starlette app uvicorn serves in the load run: ``/hello`` unprotected
(the floor) and ``/hello/protected`` behind bearerguard, over a dict validator
that knows the load client's ``load-NNNN`` tokens (``BEARERGUARD_DEMO_TOKENS``).

``uvicorn benchmarks.asgi_load_app:app``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bearerguard.starlette import ResourceProtector
from bearerguard.validators import BearerTokenValidator

_COUNT = int(os.environ.get("BEARERGUARD_DEMO_TOKENS") or 1000)
_EXP = time.time() + 86400
_KNOWN = {
    f"load-{i:04d}": {"scope": "profile email", "sub": f"user-{i}", "exp": _EXP}
    for i in range(_COUNT)
}


class LoadTokens(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Any:
        return _KNOWN.get(token_string)


require_oauth = ResourceProtector()
require_oauth.register_token_validator(LoadTokens())


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


app = Starlette(
    routes=[
        Route("/hello", hello),
        Route("/hello/protected", require_oauth.route("profile")(hello)),
    ]
)
