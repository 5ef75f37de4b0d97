"""``bearerguard metadata`` and the RFC 9728 §5 discovery flow a client follows,
against real servers on 127.0.0.1 (Authlib's AuthorizationServer for the tokens)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
from typing import Any

import pytest
import requests

from bearerguard import ResourceMetadata
from bearerguard.cli import main
from bearerguard.validators import JWTBearerTokenValidator

from .fronts import FRONTS
from .jwtkit import Keypair, jwks
from .prmkit import api, jwt_protector, protector_of, served

# -- the CLI ----------------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(["metadata", *argv], out=out), out.getvalue()


def as_metadata_app(issuer_holder: dict[str, str]) -> Any:
    """A minimal RFC 8414 metadata endpoint for the issuer the test names."""
    from flask import Flask

    app = Flask("as")

    @app.get("/.well-known/oauth-authorization-server")
    def meta() -> Any:
        issuer = issuer_holder["issuer"]
        return {"issuer": issuer, "token_endpoint": issuer + "/token"}

    return app


@pytest.mark.parametrize("front_name", FRONTS)
def test_cli_accepts_a_consistent_document_and_catches_a_resource_mismatch(
    front_name: str,
) -> None:
    holder: dict[str, str] = {}
    with served("flask", lambda base: as_metadata_app(holder)) as issuer:
        holder["issuer"] = issuer

        def build(base: str) -> Any:
            metadata = ResourceMetadata(base + "/api", authorization_servers=[issuer])
            return api(front_name, jwt_protector(front_name, metadata), "/api")

        with served(front_name, build) as base:
            code, text = cli(base + "/api")
            assert code == 0, text
            assert "from the 401 challenge" in text and "VALID" in text
            # Asked for a URL the document does not describe: §3.3 says refuse it.
            code, text = cli(base + "/api/admin")
            assert code == 1, text
            assert "is not" in text and "§3.3" in text
        with served(front_name, build) as base:
            holder["issuer"] = issuer + "/elsewhere"  # the AS names another issuer
            code, text = cli(base + "/api")
            assert code == 1
            assert "RFC 8414" in text


def test_cli_exits_2_when_nothing_answers() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    code, text = cli(f"http://127.0.0.1:{port}/api")
    assert code == 2
    assert text.startswith("error:")


def test_cli_refuses_plain_http_to_a_remote_host() -> None:
    code, text = cli("http://api.example.com/")
    assert code == 2
    assert "https" in text


# -- RFC 9728 §5: the client's discovery, end to end ------------------------------------------


def authlib_authorization_server(issuer: str, key: Keypair) -> Any:
    """Authlib's AuthorizationServer (client credentials), its RFC 8414 metadata and
    JWKS; the token's ``aud`` is the RFC 8707 ``resource`` the client asks for."""
    from authlib.integrations.flask_oauth2 import AuthorizationServer
    from authlib.oauth2.rfc6749 import grants
    from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
    from flask import Flask, request
    from joserfc.jwk import KeySet

    from .test_jwt_interop import Client

    class Generator(JWTBearerTokenGenerator):  # type: ignore[misc]
        def get_jwks(self) -> KeySet:
            return KeySet.import_key_set({"keys": [key.jwk(private=True)]})

        def get_audiences(self, client: Any, user: Any, scope: str) -> str:
            return str(request.form["resource"])  # RFC 8707 §2

    app = Flask("authorization-server")
    server = AuthorizationServer(
        app,
        query_client=lambda client_id: Client() if client_id == Client.client_id else None,
        save_token=lambda token, request: None,
    )
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_token_generator("default", Generator(issuer=issuer, alg=key.alg))
    app.add_url_rule("/token", "token", server.create_token_response, methods=["POST"])
    meta = {"issuer": issuer, "token_endpoint": issuer + "/token", "jwks_uri": issuer + "/jwks"}
    app.add_url_rule("/.well-known/oauth-authorization-server", "meta", lambda: meta)
    app.add_url_rule("/jwks", "jwks", lambda: jwks(key))
    return app


def _param(challenge: str, name: str) -> str:
    found = re.search(rf'{name}="([^"]*)"', challenge)
    assert found is not None, challenge
    return found.group(1)


@pytest.mark.parametrize("front_name", FRONTS)
def test_a_client_discovers_the_authorization_server_and_steps_up(front_name: str) -> None:
    from .jwtkit import loopback_client

    key = Keypair.generate("ES256", kid="as-1")
    http = loopback_client()
    with contextlib.ExitStack() as stack:
        issuer = stack.enter_context(
            served("flask", lambda base: authlib_authorization_server(base, key))
        )

        def build(base: str) -> Any:
            protector = protector_of(front_name, resource=base + "/mcp")
            protector.register_token_validator(JWTBearerTokenValidator(issuer, http=http))
            return api(front_name, protector, "/mcp")

        base = stack.enter_context(served(front_name, build))
        resource = base + "/mcp"
        # 1. The request without a token: 401 naming the metadata (§5.1).
        first = requests.get(resource, timeout=5)
        assert first.status_code == 401
        document_url = _param(first.headers["WWW-Authenticate"], "resource_metadata")
        # 2. The document, and §3.3's check: its resource is the one requested.
        doc = requests.get(document_url, timeout=5).json()
        assert doc["resource"] == resource
        # 3. The authorization server's RFC 8414 metadata, its issuer checked.
        (server,) = doc["authorization_servers"]
        as_meta = requests.get(server + "/.well-known/oauth-authorization-server", timeout=5)
        assert as_meta.json()["issuer"] == server

        def obtain(scope: str) -> str:
            issued = requests.post(
                as_meta.json()["token_endpoint"],
                data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
                auth=("svc", "s3cret"),
                timeout=5,
            )
            assert issued.status_code == 200, issued.text
            return str(issued.json()["access_token"])

        # 4. A token for this resource, with a scope it lists; the retry passes.
        assert "profile" in doc["scopes_supported"]
        bearer = {"Authorization": "Bearer " + obtain("profile")}
        assert requests.get(resource, headers=bearer, timeout=5).status_code == 200
        # 5. A view needing more: 403 naming the scope, then step-up.
        refused = requests.get(resource + "/admin", headers=bearer, timeout=5)
        assert refused.status_code == 403
        challenge = refused.headers["WWW-Authenticate"]
        assert _param(challenge, "error") == "insufficient_scope"
        assert _param(challenge, "resource_metadata") == document_url
        needed = _param(challenge, "scope")
        stepped = {"Authorization": "Bearer " + obtain(f"profile {needed}")}
        assert requests.get(resource + "/admin", headers=stepped, timeout=5).status_code == 200
    http.close()


def test_cli_json_lists_each_check() -> None:
    holder: dict[str, str] = {}
    with served("flask", lambda base: as_metadata_app(holder)) as issuer:
        holder["issuer"] = issuer

        def build(base: str) -> Any:
            metadata = ResourceMetadata(base, authorization_servers=[issuer])
            return api("flask", jwt_protector("flask", metadata))

        with served("flask", build) as base:
            code, text = cli(base, "--json")
    result = json.loads(text)
    assert code == 0 and result["valid"] is True
    names = {check["name"]: check["ok"] for check in result["checks"]}
    assert names["resource"] is True and names[f"AS {issuer}"] is True
