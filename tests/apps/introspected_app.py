"""A WSGI app whose tokens are introspected, for the gunicorn ``--preload`` test.

Configured by environment variables (``BEARERGUARD_TEST_INTROSPECT_URL``,
``..._CLIENT_ID``, ``..._SECRET``, ``..._AUDIENCE``). Importing it introspects
a warm-up token, as an application that checks its authorization server at
start-up would: under ``--preload`` that happens in the master, and leaves a
kept-alive connection in the process-wide HTTP pool that every worker inherits.
``GET /whoami`` answers the token's ``sub``, and says which worker answered
(``X-Worker``: its pid).
"""

from __future__ import annotations

import os

from flask import Flask, Response

from bearerguard import ResourceProtector, current_token
from bearerguard.validators import IntrospectionTokenValidator

PREFIX = "BEARERGUARD_TEST_INTROSPECT_"

validator = IntrospectionTokenValidator(
    os.environ[PREFIX + "URL"],
    os.environ[PREFIX + "CLIENT_ID"],
    os.environ[PREFIX + "SECRET"],
    audience=os.environ[PREFIX + "AUDIENCE"],
)
# The warm-up, through the same validator and the same (default) HTTP client.
assert validator.validate("tok-warm-up").subject == "warm-up"

require_oauth = ResourceProtector()
require_oauth.register_token_validator(validator)

app = Flask(__name__)


@app.get("/whoami")
@require_oauth()
def whoami() -> str:
    return str(current_token["sub"])


@app.after_request
def worker(response: Response) -> Response:
    response.headers["X-Worker"] = str(os.getpid())
    return response
