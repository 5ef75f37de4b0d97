"""Trusted proxies: whose headers about the client are believed.

A TLS-terminating proxy (nginx, Envoy) knows what the application server
cannot see: the client's certificate, the scheme and host it was reached
by. It says so in request headers, which any client can send too, so they
are read only from a connection whose peer address is one of the
:class:`TrustedProxies` networks; from anyone else they are dropped before
the core sees them (``Credentials.proxy_headers`` is empty).

The peer is the address the WSGI/ASGI server reports (``REMOTE_ADDR``,
``scope["client"]``): whatever rewrites it from ``X-Forwarded-For`` (Werkzeug's
``ProxyFix``, uvicorn's ``--proxy-headers``, on by default for 127.0.0.1)
must be off, or the check would be made on an address the client chose.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Literal
from urllib.parse import urlsplit

from ..errors import InvalidRequestError

__all__ = ["ForwardedHeaders", "TrustedProxies", "split_unquoted"]

ForwardedHeaders = Literal["x-forwarded", "forwarded"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The headers each family names the scheme and host with.
_FAMILIES: dict[str, tuple[str, ...]] = {
    "x-forwarded": ("x-forwarded-proto", "x-forwarded-host"),
    "forwarded": ("forwarded",),
}
#: RFC 3986 authority: reg-name or IP literal, and a port; no userinfo, no path.
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]{1,5})?")
_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*')
_MAX_PEERS = 256


class TrustedProxies:
    """The proxies whose headers are believed, by peer address.

    :param networks: addresses or networks (``"127.0.0.1"``, ``"10.0.0.0/8"``,
        ``"::1"``), as :mod:`ipaddress` reads them.
    :param forwarded: which headers give the public scheme and host for DPoP's
        ``htu``: ``"x-forwarded"`` (``X-Forwarded-Proto``/``X-Forwarded-Host``),
        ``"forwarded"`` (RFC 7239 ``Forwarded: proto=..;host=..``), or None
        (neither). One family only: a proxy that sets one and passes the
        other through from the client would let the client choose.

    When a header holds several values (proxies that append), the last is
    used: the one the trusted peer added.
    """

    def __init__(
        self,
        networks: Iterable[str | Network],
        *,
        forwarded: ForwardedHeaders | None = "x-forwarded",
    ) -> None:
        if isinstance(networks, str):
            networks = [networks]
        self.networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )
        if not self.networks:
            raise ValueError("trusted_proxies needs at least one address or network")
        if forwarded is not None and forwarded not in _FAMILIES:
            raise ValueError(
                f"forwarded must be 'x-forwarded', 'forwarded' or None, not {forwarded!r}"
            )
        self.forwarded = forwarded
        #: The forwarded headers read (lower-case names).
        self.headers: tuple[str, ...] = _FAMILIES[forwarded] if forwarded is not None else ()
        self._seen: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"TrustedProxies({[str(n) for n in self.networks]!r}, forwarded={self.forwarded!r})"

    def trusts(self, peer: str | None) -> bool:
        """True when ``peer`` (an IP address, as the server reports it) is trusted."""
        if not peer:
            return False  # a Unix socket, or a server that does not say
        known = self._seen.get(peer)
        if known is not None:
            return known
        trusted = self._lookup(peer)
        if len(self._seen) >= _MAX_PEERS:
            self._seen.clear()  # bounded: a few proxies, but any client may connect
        self._seen[peer] = trusted
        return trusted

    def _lookup(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer.partition("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
        return any(address in network for network in self.networks)

    def public_url(self, url: str, headers: Mapping[str, str]) -> str:
        """``url`` (what the server saw) with the scheme and host the trusted
        proxy forwarded; ``headers`` are ``Credentials.proxy_headers``, so
        empty for any other peer, and ``url`` comes back unchanged."""
        if self.forwarded == "forwarded":
            proto, host = _rfc7239(headers.get("forwarded"))
        else:
            proto = _last(headers.get("x-forwarded-proto"))
            host = _last(headers.get("x-forwarded-host"))
        if proto is None and host is None:
            return url
        parts = urlsplit(url)
        if proto is not None:
            proto = proto.lower()
            if proto not in ("http", "https"):
                raise InvalidRequestError("malformed forwarded scheme from the proxy")
        if host is not None and _HOST.fullmatch(host) is None:
            raise InvalidRequestError("malformed forwarded host from the proxy")
        rest = parts.path + (f"?{parts.query}" if parts.query else "")
        return f"{proto or parts.scheme}://{host or parts.netloc}{rest}"


def _last(value: str | None) -> str | None:
    """The last of comma-separated values, the one the nearest proxy added."""
    if value is None:
        return None
    last = value.rsplit(",", 1)[-1].strip(" \t")
    return last or None


def _rfc7239(value: str | None) -> tuple[str | None, str | None]:
    """``proto`` and ``host`` of the last element of a ``Forwarded`` value."""
    if value is None or not value.strip(" \t"):
        return None, None
    malformed = InvalidRequestError("malformed Forwarded header from the proxy")
    try:
        pairs = split_unquoted(split_unquoted(value, ",")[-1], ";")
    except ValueError:
        raise malformed from None
    found: dict[str, str] = {}
    for pair in pairs:
        match = _PAIR.fullmatch(pair)
        if match is None:
            raise malformed
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        found[match.group(1).lower()] = raw
    return found.get("proto"), found.get("host")


def split_unquoted(value: str, separator: str) -> list[str]:
    """``value`` split at ``separator`` outside double quotes (RFC 9110
    quoted-string, backslash escapes); ValueError for an unterminated quote."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise ValueError("unterminated quoted string")
    parts.append("".join(current))
    return parts
