"""nginx as a test's own process: a TLS-terminating proxy on 127.0.0.1.

:func:`nginx_binary` finds Debian's nginx (``make test`` installs
``nginx-light`` where it can); tests skip with a one-line reason without it,
and fail under ``BEARERGUARD_REQUIRE_SERVICES=1``. :func:`nginx_proxy` writes
the configuration into the test's directory and runs
``nginx -c <conf> -p <dir> -g 'daemon off; ...'`` until the block ends: never
a system service, never port 80.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .certkit import PKI, Issued
from .conftest import REQUIRE_SERVICES
from .servers import free_port, server_process

#: The address nginx connects to the app from (``proxy_bind``): Linux routes
#: all of 127.0.0.0/8 to lo, so a request from 127.0.0.1 is another peer.
PROXY_ADDRESS = "127.0.0.2"


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(reason + " (BEARERGUARD_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def nginx_binary() -> str:
    """nginx's path, or skip (fail under BEARERGUARD_REQUIRE_SERVICES=1)."""
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        _missing("nginx not installed (make test installs nginx-light as root with apt)")
    assert found is not None
    try:
        with socket.socket() as probe:
            probe.bind((PROXY_ADDRESS, 0))
    except OSError:
        _missing(f"cannot bind {PROXY_ADDRESS} (needs Linux's 127.0.0.0/8 on lo)")
    return found


CONF = """
worker_processes 1;
{user}
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_client_certificate {dir}/ca.pem;
        ssl_verify_client optional;
        {location}
    }}
    server {{
        listen 127.0.0.1:{self_signed_port} ssl;
        ssl_verify_client optional_no_ca;
        {location}
    }}
}}
"""
LOCATION = """location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind {proxy_address};
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}"""


@dataclass
class Proxy:
    """nginx in front of an app: ``get`` over real HTTPS, with a client certificate
    or none; ``port`` takes the CA's client certificates only, ``self_signed_port``
    any (``optional_no_ca``)."""

    port: int
    self_signed_port: int
    directory: Path
    pki: PKI

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(
        self,
        path: str,
        headers: dict[str, str],
        certificate: Issued | None = None,
        port: int | None = None,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:
        context = ssl.create_default_context(cafile=str(self.directory / "ca.pem"))
        if certificate is not None:
            context.load_cert_chain(*certificate.files(self.directory))
        conn = http.client.HTTPSConnection(
            "127.0.0.1", port or self.port, context=context, timeout=20
        )
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, response.headers, response.read()  # names in any case
        finally:
            conn.close()


@contextlib.contextmanager
def nginx_proxy(directory: Path, pki: PKI, upstream: int) -> Iterator[Proxy]:
    """nginx terminating mutual TLS on a free port, proxying to ``upstream``."""
    binary = nginx_binary()
    for issued in (pki.ca, pki.server, pki.client_a, pki.client_b, pki.self_signed):
        issued.write(directory)
    port, self_signed_port = free_port(), free_port()
    # As root, nginx's workers would run as nobody, who cannot enter tmp_path.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = directory / "nginx.conf"
    conf.write_text(
        CONF.format(
            user=user,
            dir=directory,
            port=port,
            self_signed_port=self_signed_port,
            location=LOCATION.format(upstream=upstream, proxy_address=PROXY_ADDRESS),
        )
    )
    proxy = Proxy(port, self_signed_port, directory, pki)
    command = [
        binary,
        "-e",
        str(directory / "startup.log"),
        "-c",
        str(conf),
        "-p",
        str(directory),
        "-g",
        f"daemon off; pid {directory}/nginx.pid; error_log {directory}/error.log warn;",
    ]

    def ready() -> bool:
        return proxy.get("/health", {})[0] == 200

    with server_process(command, directory / "nginx.out", ready, start_timeout=15):
        yield proxy
