"""A WSGI app that takes DPoP-bound JWTs, its replay store in Redis, for the
multi-worker DPoP tests (tests/test_multiprocess_dpop.py).

Configured by environment variables: ``BEARERGUARD_TEST_DPOP_JWKS`` (a JWKS
file of the issuer), ``..._ISSUER``, ``..._AUDIENCE``, ``..._REDIS`` (the
replay store's URL), ``..._PREFIX`` (its key prefix, one per test) and
``..._IAT_ONLY`` (``1``: the ``iat``-window-only mode while Redis is down).
``GET /r`` answers the token's ``sub`` and says which worker answered
(``X-Worker``: its pid), on refusals too.
"""

from __future__ import annotations

import json
import os

from flask import Flask, Response

from bearerguard import ResourceProtector, current_token
from bearerguard.core.dpop import ProofChecker
from bearerguard.redis_replay import RedisReplayStore
from bearerguard.validators import JWTBearerTokenValidator

PREFIX = "BEARERGUARD_TEST_DPOP_"

with open(os.environ[PREFIX + "JWKS"], encoding="utf-8") as f:
    keys = json.load(f)

replay = RedisReplayStore(
    os.environ[PREFIX + "REDIS"],
    key_prefix=os.environ[PREFIX + "PREFIX"],
    iat_window_only=os.environ.get(PREFIX + "IAT_ONLY") == "1",
)
require_oauth = ResourceProtector(dpop_proofs=ProofChecker(replay=replay))
require_oauth.register_token_validator(
    JWTBearerTokenValidator(
        os.environ[PREFIX + "ISSUER"], os.environ[PREFIX + "AUDIENCE"], jwks=keys
    )
)

app = Flask(__name__)


@app.get("/r")
@require_oauth("profile")
def resource() -> str:
    return str(current_token["sub"])


@app.after_request
def worker(response: Response) -> Response:
    response.headers["X-Worker"] = str(os.getpid())
    return response
