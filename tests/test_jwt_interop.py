"""Tokens nobody here wrote: Authlib's authorization server, and the RFC examples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from cryptography.hazmat.primitives.asymmetric import ed448 as ed448_key
from flask import Flask
from joserfc import jws
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet, OKPKey
from jwt.algorithms import OKPAlgorithm

from bearerguard import ResourceProtector
from bearerguard.errors import InvalidTokenError
from bearerguard.validators.jwt import ANY_AUDIENCE, RFC9068_CLAIMS, JWTBearerTokenValidator

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    JWKS_PATH,
    Keypair,
    assert_refused,
    b64url,
    call,
    jwks,
    loopback_client,
    protected_app,
    segments,
)
from .servers import LoopbackServer, Reply, Seen

# -- Authlib's AuthorizationServer issuing RFC 9068 tokens ------------------------------


class Client(ClientMixin):  # type: ignore[misc]
    """A confidential client allowed the client_credentials grant."""

    client_id = "svc"
    client_secret = "s3cret"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic"

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def authorization_server(issuer: str, key: Keypair) -> Flask:
    """An Authlib AS: token endpoint, RFC 8414 metadata and its public JWKS."""

    class Generator(JWTBearerTokenGenerator):  # type: ignore[misc]
        def get_jwks(self) -> KeySet:
            return KeySet.import_key_set({"keys": [key.jwk(private=True)]})

        def get_audiences(self, client: Any, user: Any, scope: str) -> str:
            return AUDIENCE

        def get_extra_claims(self, client: Any, grant_type: str, user: Any, scope: str) -> Any:
            return {"roles": ["student"]}

    app = Flask("authorization-server")
    server = AuthorizationServer(
        app,
        query_client=lambda client_id: Client() if client_id == Client.client_id else None,
        save_token=lambda token, request: None,
    )
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_token_generator("default", Generator(issuer=issuer, alg=key.alg))

    @app.post("/oauth/token")
    def issue_token() -> Any:
        return server.create_token_response()

    @app.get("/.well-known/oauth-authorization-server")
    def metadata() -> Any:
        return {
            "issuer": issuer,
            "token_endpoint": issuer + "/oauth/token",
            "jwks_uri": issuer + JWKS_PATH,
            "grant_types_supported": ["client_credentials"],
        }

    @app.get(JWKS_PATH)
    def public_keys() -> Any:
        return jwks(key)

    return app


@pytest.fixture
def as_server(serve: Any) -> Iterator[tuple[LoopbackServer, dict[str, Flask]]]:
    """A loopback server answering with whatever AS app the test installs."""
    apps: dict[str, Flask] = {}

    def handler(seen: Seen) -> Reply:
        response = apps["as"].test_client().get(seen.path)
        return Reply(response.status_code, response.get_data(), {"Content-Type": response.mimetype})

    yield serve(handler), apps


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_tokens_from_authlibs_authorization_server(
    as_server: tuple[LoopbackServer, dict[str, Flask]], alg: str
) -> None:
    server, apps = as_server
    issuer = server.url
    apps["as"] = authorization_server(issuer, Keypair.generate(alg, kid="as-key-1"))
    issued = (
        apps["as"]
        .test_client()
        .post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "profile"},
            auth=("svc", "s3cret"),
        )
    )
    assert issued.status_code == 200, issued.get_data()
    access_token = issued.get_json()["access_token"]
    http = loopback_client()
    protector = ResourceProtector()
    protector.register_token_validator(
        # Discovery, the strict RFC 9068 profile, and the real clock (Authlib stamps real times).
        JWTBearerTokenValidator(
            issuer, AUDIENCE, require_typ=True, required_claims=RFC9068_CLAIMS, http=http
        )
    )
    app = protected_app(protector)

    outcome = call(app, access_token)
    by_role = call(app, access_token, "/students")
    http.close()

    assert outcome.status == 200, outcome
    assert outcome.body["scope"] == "profile"
    assert outcome.body["claims"]["client_id"] == "svc"
    assert outcome.body["claims"]["iss"] == issuer
    assert by_role.status == 200
    assert call(app, access_token, "/admin").status == 403
    assert [seen.path for seen in server.requests] == [
        "/.well-known/openid-configuration",  # Authlib's AS has none: 404
        "/.well-known/oauth-authorization-server",
        JWKS_PATH,
    ]
    header = segments(access_token)[0]
    assert (header["typ"], header["alg"], header["kid"]) == ("at+jwt", alg, "as-key-1")


# -- RFC 7515 Appendix A.2 (RS256) and A.3 (ES256) -----------------------------------------

RFC7515_PAYLOAD = (
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
)
RFC7515_EXAMPLES = {
    "A.2-RS256": (
        {
            "kty": "RSA",
            "n": (
                "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2"
                "mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7"
                "OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMT"
                "BQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkM"
                "Ls91kzk2PAcDTW9gb54h4FRWyuXpoQ"
            ),
            "e": "AQAB",
        },
        "eyJhbGciOiJSUzI1NiJ9." + RFC7515_PAYLOAD + ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2Vt"
        "Qgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAyn"
        "RFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--x"
        "i12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIh"
        "WkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw",
    ),
    "A.3-ES256": (
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        },
        "eyJhbGciOiJFUzI1NiJ9." + RFC7515_PAYLOAD + ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXF"
        "CgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q",
    ),
}
RFC7515_EXP = 1300819380


def rfc_app(jwk: dict[str, Any], clock: FakeClock, audience: Any) -> Flask:
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        JWTBearerTokenValidator("joe", audience, jwks={"keys": [jwk]}, clock=clock)
    )
    return protected_app(protector)


@pytest.mark.parametrize(("jwk", "token"), RFC7515_EXAMPLES.values(), ids=RFC7515_EXAMPLES.keys())
def test_rfc7515_examples(jwk: dict[str, Any], token: str) -> None:
    clock = FakeClock(RFC7515_EXP - 3600)
    # The examples carry no aud: the test says so explicitly; the default still wants one.
    app = rfc_app(jwk, clock, ANY_AUDIENCE)

    outcome = call(app, token, "/any")

    assert outcome.status == 200, outcome
    assert outcome.body["claims"] == {
        "iss": "joe",
        "exp": RFC7515_EXP,
        "http://example.com/is_root": True,
    }
    assert_refused(call(rfc_app(jwk, clock, AUDIENCE), token, "/any"), "missing claim: aud")
    clock.now = RFC7515_EXP
    assert_refused(call(app, token, "/any"), "token expired")


@pytest.mark.parametrize(("jwk", "token"), RFC7515_EXAMPLES.values(), ids=RFC7515_EXAMPLES.keys())
def test_rfc7515_examples_with_another_key_fail(jwk: dict[str, Any], token: str) -> None:
    clock = FakeClock(RFC7515_EXP - 3600)
    other = Keypair.generate("RS256" if jwk["kty"] == "RSA" else "ES256").jwk()
    del other["alg"], other["use"]

    assert_refused(call(rfc_app(other, clock, ANY_AUDIENCE), token, "/any"), "invalid signature")


# -- RFC 8037 Appendix A (Ed25519) -------------------------------------------------------

RFC8037_KEY = {
    "kty": "OKP",
    "crv": "Ed25519",
    "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
}
RFC8037_PUBLIC = {k: v for k, v in RFC8037_KEY.items() if k != "d"}
RFC8037_SIGNING_INPUT = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
RFC8037_SIGNATURE = (
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
)


def rfc8037_validator(jwk: dict[str, Any]) -> JWTBearerTokenValidator:
    return JWTBearerTokenValidator("joe", ANY_AUDIENCE, jwks={"keys": [jwk]})


def description(validator: JWTBearerTokenValidator, token: str) -> str:
    with pytest.raises(InvalidTokenError) as caught:
        validator.validate(token)
    return caught.value.description


def test_rfc8037_example_signature_verifies() -> None:
    # Its payload is the text "Example of Ed25519 signing", not a claim set:
    # the signature passes, then the payload is refused.
    token = f"{RFC8037_SIGNING_INPUT}.{RFC8037_SIGNATURE}"
    tampered = f"{RFC8037_SIGNING_INPUT}.{RFC8037_SIGNATURE[:10]}A{RFC8037_SIGNATURE[11:]}"
    another_key = Keypair.generate("EdDSA").jwk()

    assert description(rfc8037_validator(RFC8037_PUBLIC), token) == "malformed token"
    assert description(rfc8037_validator(RFC8037_PUBLIC), tampered) == "invalid signature"
    assert description(rfc8037_validator(another_key), token) == "invalid signature"


def test_rfc8037_key_signs_tokens_that_validate() -> None:
    key = Keypair.from_jwk(RFC8037_KEY, "EdDSA")
    # The RFC's private key reproduces the RFC's signature (Ed25519 is deterministic)...
    signature = key.private_key.sign(RFC8037_SIGNING_INPUT.encode())
    assert b64url(signature) == RFC8037_SIGNATURE
    # ...and its tokens validate against the RFC's public key.
    token = key.sign({"iss": "joe", "exp": 4102444800, "sub": "rfc8037"})

    assert rfc8037_validator(RFC8037_PUBLIC).validate(token).subject == "rfc8037"


# -- RFC 9864: "Ed25519", the fully specified name of EdDSA with Ed25519 ------------------

#: The RFC 8037 A.1 key's token with header {"alg":"Ed25519"} and these claims. Not
#: published in an RFC (RFC 9864 has no JWS example): derived here from the RFC's key,
#: and checked to be the same, byte for byte, as computed by three independent means
#: (Ed25519 is deterministic): `cryptography`, OpenSSL's command line
#: (`openssl pkeyutl -sign -rawin` over the signing input), and a plain-integer
#: implementation of RFC 8032 §5.1 that first reproduced RFC 8037 A.4's signature.
#: The test below has joserfc sign it again.
RFC9864_CLAIMS = {"iss": "joe", "exp": 4102444800, "sub": "rfc9864"}
RFC9864_TOKEN = (
    "eyJhbGciOiJFZDI1NTE5In0.eyJpc3MiOiJqb2UiLCJleHAiOjQxMDI0NDQ4MDAsInN1YiI6InJmYzk4NjQifQ."
    "5ETDReHpVbO2xsCUaSk71qlGg8i2uOobhkDyz4_EqK969dmh0-8N_eEbr_Kq0-6-XK_2NaeQwG_3zVraxs60AA"
)


def test_an_ed25519_token_of_the_rfc8037_key_verifies() -> None:
    signature = RFC9864_TOKEN.rpartition(".")[2]
    tampered = RFC9864_TOKEN[: -len(signature)] + signature[:10] + "A" + signature[11:]

    info = rfc8037_validator(RFC8037_PUBLIC).validate(RFC9864_TOKEN)
    assert (info.subject, info.token.header) == ("rfc9864", {"alg": "Ed25519"})
    assert dict(info.token) == RFC9864_CLAIMS
    tagged = rfc8037_validator({**RFC8037_PUBLIC, "alg": "Ed25519"})
    assert tagged.validate(RFC9864_TOKEN).subject == "rfc9864"
    assert description(rfc8037_validator(RFC8037_PUBLIC), tampered) == "invalid signature"
    eddsa_only = rfc8037_validator({**RFC8037_PUBLIC, "alg": "EdDSA"})
    assert description(eddsa_only, RFC9864_TOKEN) == "algorithm not allowed"
    another_key = Keypair.generate("Ed25519").jwk()
    assert description(rfc8037_validator(another_key), RFC9864_TOKEN) == "invalid signature"


def test_joserfc_signs_the_same_ed25519_token_and_its_tokens_pass(clock: FakeClock) -> None:
    key = OKPKey.import_key(RFC8037_KEY)
    claims = json.dumps(RFC9864_CLAIMS, separators=(",", ":")).encode()
    # Ed25519 is deterministic: joserfc's JWS of the same bytes is the vector.
    assert jws.serialize_compact({"alg": "Ed25519"}, claims, key, algorithms=["Ed25519"]) == (
        RFC9864_TOKEN
    )
    token = jose_jwt.encode(
        {"alg": "Ed25519", "typ": "at+jwt"},
        {"iss": "joe", "exp": int(clock()) + 60, "scope": "profile"},
        key,
        algorithms=["Ed25519"],
    )
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(rfc8037_validator(RFC8037_PUBLIC))

    assert call(protected_app(protector), token).status == 200


def test_an_ed448_key_never_verifies_an_ed25519_token() -> None:
    ed448 = ed448_key.Ed448PrivateKey.generate()
    jwk = {**OKPAlgorithm.to_jwk(ed448.public_key(), as_dict=True), "alg": "Ed25519"}

    def signed(header: dict[str, Any]) -> str:
        signing_input = f"{b64url(header)}.{b64url(RFC9864_CLAIMS)}"
        return f"{signing_input}.{b64url(ed448.sign(signing_input.encode()))}"

    # An Ed448 key named for Ed25519 is skipped, or its crv is a lie and it does not import.
    for lying in ({**jwk, "kid": "ed448"}, {**jwk, "kid": "ed448", "crv": "Ed25519"}):
        with pytest.raises(ValueError, match="no usable"):
            rfc8037_validator(lying)
        both = JWTBearerTokenValidator("joe", ANY_AUDIENCE, jwks={"keys": [lying, RFC8037_PUBLIC]})
        assert description(both, signed({"alg": "Ed25519", "kid": "ed448"})) == (
            "unknown signing key"
        )
        assert description(both, signed({"alg": "Ed25519"})) == "invalid signature"
