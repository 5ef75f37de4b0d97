"""What a front reads about the connection, as plain values: the peer
address, the headers a trusted proxy set, the TLS client certificate the
server reports, and header values out of an ASGI scope.

WSGI environs and ASGI scopes are plain dicts, so the fronts hand them here
and the core decides what is believed (:class:`ProxyHeaders`); the fronts
stay a translation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .proxies import TrustedProxies

__all__ = [
    "ProxyHeaders",
    "header_values",
    "joined_header",
    "proxies_of",
    "scope_certificate",
    "scope_peer",
]

_NONE: Mapping[str, str] = MappingProxyType({})


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
