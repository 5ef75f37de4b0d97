"""The resource server behind nginx in the mutual-TLS tests (``test_mtls_nginx.py``).

Flask (``app``, for gunicorn) and FastAPI (``create_asgi_app``, for uvicorn)
alike: JWT access tokens (keys from ``BG_MTLS_JWKS``), the client certificate
from nginx's ``X-SSL-Client-Cert`` header, believed only from
``BG_MTLS_TRUSTED`` (nginx's ``proxy_bind`` address), which also forwards the
scheme and host DPoP's ``htu`` is checked against. ``GET /r`` needs scope
``profile`` and answers ``{"sub": ...}``; ``GET /health`` is open.
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask, jsonify

from bearerguard import ResourceProtector, current_token
from bearerguard.core.certificates import NginxClientCertificate
from bearerguard.validators import JWTBearerTokenValidator

ISSUER = "https://as.example.com"
AUDIENCE = "https://api.example.com"


def _options() -> dict[str, Any]:
    return {
        "client_certificate": NginxClientCertificate("X-SSL-Client-Cert"),
        "trusted_proxies": os.environ["BG_MTLS_TRUSTED"].split(","),
    }


def _validator() -> JWTBearerTokenValidator:
    return JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=json.loads(os.environ["BG_MTLS_JWKS"]))


require_oauth = ResourceProtector(**_options())
require_oauth.register_token_validator(_validator())
app = Flask(__name__)


@app.get("/r")
@require_oauth("profile")
def resource() -> Any:
    return jsonify(sub=current_token["sub"])


@app.get("/health")
def health() -> Any:
    return jsonify(ok=True)


def create_asgi_app() -> Any:
    from fastapi import FastAPI, Security

    from bearerguard.starlette import ResourceProtector as ASGIProtector

    protector = ASGIProtector(**_options())
    protector.register_token_validator(_validator())
    api = FastAPI()
    protector.init_app(api)
    profile = Security(protector("profile"))

    @api.get("/r")
    async def asgi_resource(token: Any = profile) -> dict[str, Any]:
        return {"sub": token["sub"]}

    @api.get("/health")
    async def asgi_health() -> dict[str, Any]:
        return {"ok": True}

    return api
