"""What a front reads about the connection, as plain values: the peer
address, the headers a trusted proxy set, the TLS client certificate the
server reports, and header values out of an ASGI scope.

WSGI environs and ASGI scopes are plain dicts, so the fronts hand them here
and the core decides what is believed (:class:`ProxyHeaders`); the fronts
stay a translation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from .proxies import TrustedProxies

__all__ = [
    "ProxyHeaders",
    "environ_url",
    "header_values",
    "joined_header",
    "proxies_of",
    "scope_certificate",
    "scope_peer",
]

_NONE: Mapping[str, str] = MappingProxyType({})
#: A Host value of a name or IPv4 or [IPv6] address and a port: Werkzeug's
#: rule; any other is no host (so no proof's htu matches: refused).
_HOST = re.compile(r"(?:[a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([1-9][0-9]{0,4}))?", re.I | re.A)
#: RFC 3986 pchar and "/" beyond the unreserved, which quote() never encodes.
_PATH_SAFE = "!$&'()*+,;=:@/"


def environ_url(environ: Mapping[str, Any]) -> str:
    """The URL a WSGI request was made to, without its query: scheme, host
    (``Host``, else ``SERVER_NAME:SERVER_PORT``), ``SCRIPT_NAME`` and
    ``PATH_INFO``. What DPoP's ``htu`` is compared with.

    A URI, not Werkzeug's IRI: ``PATH_INFO`` is the decoded path as bytes in
    latin-1, so it is re-encoded byte for byte, as the client sent it (a
    literal ``%``, a ``"``, UTF-8 or not, each as its percent-encoding); only
    ``%2F``, which servers decode, is not told from ``/``.
    """
    host = environ.get("HTTP_HOST")
    if host is None:
        port = environ.get("SERVER_PORT")
        host = environ.get("SERVER_NAME", "")
        if ":" in host and host[:1] != "[":
            host = f"[{host}]"
        host = f"{host}:{port}" if port else ""
    return _url(
        environ.get("wsgi.url_scheme", "http"),
        host,
        environ.get("SCRIPT_NAME", ""),
        environ.get("PATH_INFO", ""),
    )


@functools.lru_cache(maxsize=1024)  # a service's paths repeat; bounded against many
def _url(scheme: str, host: str, root: str, path: str) -> str:
    match = _HOST.fullmatch(host)
    if match is None or int(match.group(1) or 1) > 65535:
        host = ""  # normalized_uri refuses a URL with no host
    # Werkzeug's joining: the root without its trailing, the path without its
    # leading slashes. Latin-1 is WSGI's str-as-bytes (PEP 3333).
    raw = root.rstrip("/") + "/" + path.lstrip("/")
    return f"{scheme}://{host}{quote(raw.encode('latin-1', 'replace'), safe=_PATH_SAFE)}"


def proxies_of(value: TrustedProxies | Iterable[str] | str | None) -> TrustedProxies | None:
    """``trusted_proxies=`` as given: a :class:`TrustedProxies`, or its addresses."""
    if value is None or isinstance(value, TrustedProxies):
        return value
    return TrustedProxies(value)


class ProxyHeaders:
    """The headers read from a trusted proxy: the forwarded scheme and host
    (``proxies.headers``) and those the certificate reader names (its
    ``headers``). From any other peer, none."""

    def __init__(self, proxies: TrustedProxies | None, reader: object) -> None:
        wanted = tuple(getattr(reader, "headers", ()))
        if wanted and proxies is None:
            raise ValueError(f"{reader!r} reads a proxy's header: give trusted_proxies= too")
        self.proxies = proxies
        names = (*proxies.headers, *wanted) if proxies is not None else ()
        #: The lower-case header names read.
        self.names: tuple[str, ...] = tuple(dict.fromkeys(name.lower() for name in names))
        self._environ = tuple(("HTTP_" + n.upper().replace("-", "_"), n) for n in self.names)
        self._scope = frozenset(n.encode("latin-1") for n in self.names)

    def from_environ(self, environ: Mapping[str, Any]) -> Mapping[str, str]:
        """From a WSGI environ (its server joined repeated headers with commas)."""
        proxies = self.proxies
        if proxies is None or not proxies.trusts(environ.get("REMOTE_ADDR")):
            return _NONE
        return {name: environ[key] for key, name in self._environ if key in environ}

    def from_scope(self, scope: Mapping[str, Any]) -> Mapping[str, str]:
        """From an ASGI scope, repeated headers joined with ", " as WSGI servers do."""
        proxies = self.proxies
        if proxies is None or not proxies.trusts(scope_peer(scope)):
            return _NONE
        found: dict[str, str] = {}
        for raw, value in scope["headers"]:
            if raw in self._scope:
                name, text = raw.decode("latin-1"), value.decode("latin-1")
                found[name] = f"{found[name]}, {text}" if name in found else text
        return found


def scope_peer(scope: Mapping[str, Any]) -> str | None:
    """The peer's address in an ASGI scope (``client``), None when not given."""
    client = scope.get("client")
    return str(client[0]) if client else None


def scope_certificate(scope: Mapping[str, Any]) -> str | None:
    """The client certificate (PEM) of the ASGI TLS extension, where the
    server provides it: ``client_cert_chain[0]``, the client's own."""
    tls = (scope.get("extensions") or {}).get("tls")
    chain = tls.get("client_cert_chain") if isinstance(tls, Mapping) else None
    return chain[0] if chain and isinstance(chain[0], str) else None


def header_values(scope: Mapping[str, Any], name: bytes) -> tuple[str, ...]:
    """Every value of the header ``name`` (lower-case bytes) in an ASGI scope."""
    return tuple(v.decode("latin-1") for k, v in scope["headers"] if k == name)


def joined_header(scope: Mapping[str, Any], name: bytes) -> str | None:
    """The header's values joined with ", " as WSGI servers do (so two
    ``Authorization`` headers are refused, 400, rather than one silently
    used); None when absent. On every ASGI request: one pass, no list."""
    found: str | None = None
    for key, value in scope["headers"]:
        if key == name:
            text = value.decode("latin-1")
            found = text if found is None else f"{found}, {text}"
    return found
