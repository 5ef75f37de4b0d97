"""Certificate-bound tokens for real: Debian's nginx terminating mutual TLS
in front of gunicorn (Flask) and uvicorn (FastAPI), over real HTTPS.

nginx passes the client's certificate in ``X-SSL-Client-Cert``
(``$ssl_client_escaped_cert``) and connects to the app from 127.0.0.2
(``proxy_bind``), the one trusted proxy address; the test's own requests to
the app come from 127.0.0.1, an untrusted peer, so a header sent around
nginx is really sent by someone else. CA, server and client certificates
are minted by the test (``certkit``), written only to its tmp dir.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .certkit import pki
from .dpopkit import jkt, make_proof
from .jwtkit import cached_keypair, jwks, make_token
from .nginxkit import PROXY_ADDRESS, Proxy, nginx_binary, nginx_proxy
from .servers import free_port, server_process

ROOT = Path(__file__).resolve().parent.parent
ISSUER_KEY = cached_keypair("ES256", "mtls-issuer")
PROOF_KEY = cached_keypair("ES256", "mtls-proof")
SERVERS = {
    "gunicorn": ["-m", "gunicorn", "--workers=1", "tests.apps.mtls_app:app"],
    "uvicorn": [
        "-m",
        "uvicorn",
        "--factory",
        "tests.apps.mtls_app:create_asgi_app",
        # Else uvicorn takes the client address from X-Forwarded-For when the
        # peer is 127.0.0.1: the trust check must see the real peer.
        "--no-proxy-headers",
        "--log-level=warning",
    ],
}


def direct(port: int, headers: dict[str, str]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", "/r", headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def app_server(name: str, directory: Path) -> Any:
    port = free_port()
    bind = ["--bind", f"127.0.0.1:{port}"] if name == "gunicorn" else ["--port", str(port)]
    env = {
        **os.environ,
        "BG_MTLS_JWKS": json.dumps(jwks(ISSUER_KEY)),
        "BG_MTLS_TRUSTED": PROXY_ADDRESS,
    }
    process = server_process(
        [sys.executable, *SERVERS[name], *bind],
        directory / f"{name}.log",
        lambda: direct(port, {})[0] == 401,  # up, and refusing anonymous requests
        env=env,
        cwd=ROOT,
    )
    return port, process


@pytest.fixture(scope="module", params=list(SERVERS))
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Proxy, int]]:
    """nginx (mutual TLS) in front of the app server, started once per server."""
    nginx_binary()  # skip (or fail) before starting anything
    directory = tmp_path_factory.mktemp(f"mtls-{request.param}")
    port, process = app_server(request.param, directory)
    with process, nginx_proxy(directory, pki(), port) as proxy:
        yield proxy, port


def token(**cnf: str) -> str:
    return make_token(ISSUER_KEY, now=time.time(), cnf=cnf)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_token_bound_to_a_certificate_is_accepted_with_it_only(stack: tuple[Proxy, int]) -> None:
    proxy, _ = stack
    bound = token(**{"x5t#S256": pki().client_a.thumbprint})
    for _ in range(2):  # the second one is a cache hit: still checked
        status, _, body = proxy.get("/r", bearer(bound), pki().client_a)
        assert status == 200, body
        assert json.loads(body) == {"sub": "user-1"}
    status, headers, body = proxy.get("/r", bearer(bound), pki().client_b)
    assert status == 401, body
    assert json.loads(body)["error"] == "invalid_token"
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    assert json.loads(body)["error_description"] == (
        "client certificate does not match the token's binding"
    )
    status, _, body = proxy.get("/r", bearer(bound))
    assert status == 401
    assert json.loads(body)["error_description"] == (
        "token is bound to a client certificate, and none was presented"
    )


def test_self_signed_client_certificate_with_optional_no_ca(stack: tuple[Proxy, int]) -> None:
    """RFC 8705 §2.2: no CA, the binding is to the certificate itself."""
    proxy, _ = stack
    bound = token(**{"x5t#S256": pki().self_signed.thumbprint})
    status, _, body = proxy.get("/r", bearer(bound), pki().self_signed, proxy.self_signed_port)
    assert status == 200, body
    status, _, _ = proxy.get("/r", bearer(bound), pki().client_a, proxy.self_signed_port)
    assert status == 401
    # Where nginx verifies against the CA, it refuses the self-signed one itself.
    status, _, _ = proxy.get("/r", bearer(bound), pki().self_signed)
    assert status == 400


def test_certificate_header_sent_around_nginx_is_ignored(stack: tuple[Proxy, int]) -> None:
    proxy, app_port = stack
    bound = token(**{"x5t#S256": pki().client_a.thumbprint})
    forged = {**bearer(bound), "X-SSL-Client-Cert": pki().client_a.nginx_escaped}
    status, body = direct(app_port, forged)  # from 127.0.0.1: not the trusted proxy
    assert status == 401, body
    assert body["error_description"] == (
        "token is bound to a client certificate, and none was presented"
    )
    # And through nginx, a client's own header is replaced by what nginx saw.
    status, _, _ = proxy.get("/r", forged)
    assert status == 401
    status, _, _ = proxy.get("/r", forged, pki().client_b)
    assert status == 401


def test_dpop_htu_is_the_public_url_nginx_forwarded(stack: tuple[Proxy, int]) -> None:
    proxy, app_port = stack
    bound = token(jkt=jkt(PROOF_KEY))

    def dpop(url: str) -> dict[str, str]:
        proof = make_proof(PROOF_KEY, url=url, token=bound, now=time.time())
        return {"Authorization": f"DPoP {bound}", "DPoP": proof}

    public = proxy.url + "/r"  # https, nginx's port: not what the app server saw
    status, _, body = proxy.get("/r", dpop(public))
    assert status == 200, body
    # Forwarded headers from an untrusted peer do not move htu.
    host = f"127.0.0.1:{proxy.port}"
    forged = {**dpop(public), "X-Forwarded-Proto": "https", "X-Forwarded-Host": host}
    status, body = direct(app_port, forged)
    assert status == 401, body
    assert body["error_description"] == "DPoP proof htu does not match the request URI"
