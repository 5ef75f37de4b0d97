"""Coverage-guided fuzzing of the request path: header parsing, routing, JWS.

Run: ``make fuzz`` (60 s by default, FUZZ_SECONDS=N to change), or
``python fuzz/fuzz_protector.py -max_total_time=20``. Every input becomes an
``Authorization`` header (raw, or a real signed token with one segment
mutated) sent through a Flask app protected by an opaque and a JWT validator.
The invariants, checked on every input, crash the run when broken: the answer
is 200/400/401/403 (never 500 or an unhandled exception), a 200 only for a
token the validators really know, and nothing from the token is echoed back.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from typing import Any

import atheris

with atheris.instrument_imports(include=["bearerguard"]):
    from flask import Flask

    from bearerguard import ResourceProtector
    from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

ISSUER = "https://fuzz.example"
KEY = ec.generate_private_key(ec.SECP256R1())
JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(KEY.public_key()))
JWK.update(kid="k1", alg="ES256", use="sig")
NOW = int(time.time())
OPAQUE = "known-opaque-token"
VALID_JWT = jwt.encode(
    {"iss": ISSUER, "aud": "api", "sub": "s", "scope": "read", "exp": NOW + 86400, "iat": NOW},
    KEY,
    algorithm="ES256",
    headers={"kid": "k1"},
)
ACCEPTED = {OPAQUE, VALID_JWT}


class DictValidator(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> Any:
        if token_string == OPAQUE:
            return {"scope": "read", "exp": NOW + 86400, "sub": "s"}
        return None


def build_app() -> Flask:
    protector = ResourceProtector(allow_query_token=True)
    protector.register_token_validator(DictValidator())
    protector.register_token_validator(
        JWTBearerTokenValidator(issuer=ISSUER, audience="api", jwks={"keys": [JWK]})
    )
    app = Flask("fuzz")

    @app.route("/r")
    @protector("read")
    def resource() -> str:
        return "ok"

    return app


CLIENT = build_app().test_client()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def header_from(data: bytes) -> tuple[str, bool]:
    """The header to send, and whether a 200 is allowed for it."""
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    if mode == 0:  # raw bytes, as a WSGI server would hand them over (latin-1)
        return fdp.ConsumeBytes(fdp.remaining_bytes()).decode("latin-1"), False
    if mode == 1:  # a real token with one segment replaced
        parts = VALID_JWT.split(".")
        index = fdp.ConsumeIntInRange(0, 2)
        parts[index] = _b64(fdp.ConsumeBytes(fdp.remaining_bytes()))
        return "Bearer " + ".".join(parts), False
    if mode == 2:  # fuzzed JSON header/payload with the real signature bytes
        header = _b64(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200)))
        payload = _b64(fdp.ConsumeBytes(fdp.remaining_bytes()))
        return f"Bearer {header}.{payload}.{VALID_JWT.split('.')[2]}", False
    token = fdp.ConsumeUnicodeNoSurrogates(fdp.remaining_bytes())
    return f"Bearer {token}", token in ACCEPTED


def test_one_input(data: bytes) -> None:
    header, may_pass = header_from(data)
    response = CLIENT.get("/r", environ_overrides={"HTTP_AUTHORIZATION": header})
    status = response.status_code
    if status not in (200, 400, 401, 403):
        raise AssertionError(f"status {status} for {header[:80]!r}")
    if status == 200 and not may_pass:
        raise AssertionError(f"accepted a token nobody issued: {header[:80]!r}")
    body = response.get_data(as_text=True)
    token = header.partition(" ")[2].strip()
    if len(token) >= 8 and token in body:
        raise AssertionError("the token was echoed in the response body")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
