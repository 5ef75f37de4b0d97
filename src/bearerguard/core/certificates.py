"""Client certificates (RFC 8705 §3): the thumbprint a certificate-bound
token names, and the readers that find a request's certificate.

A token bound to a certificate carries ``cnf["x5t#S256"]``: base64url of
the SHA-256 of the certificate's DER (:func:`x5t_s256`). The guard asks its
``client_certificate`` reader, ``(credentials) -> ClientCertificate | bytes |
None``, which certificate the request came with:

* :func:`tls_client_certificate`: the TLS connection's own, when the server
  reports it (``scope["extensions"]["tls"]["client_cert_chain"]``, ASGI);
* :class:`NginxClientCertificate`: a header set from nginx's
  ``$ssl_client_escaped_cert``;
* :class:`EnvoyClientCertificate`: Envoy's ``x-forwarded-client-cert``.

The header readers see only what a trusted proxy sent
(``Credentials.proxy_headers``, see :mod:`bearerguard.core.proxies`); from
any other peer there is no header, so no certificate. A header a trusted
proxy sent that is not a certificate is a 400, never a 500. A reader of
your own names the proxy headers it reads in a ``headers`` attribute
(lower-case), as these do, and finds them in ``credentials.proxy_headers``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..errors import InvalidRequestError
from .proxies import split_unquoted

if TYPE_CHECKING:
    from .credentials import Credentials

__all__ = [
    "CertificateReader",
    "ClientCertificate",
    "EnvoyClientCertificate",
    "NginxClientCertificate",
    "presented_thumbprint",
    "tls_client_certificate",
    "x5t_s256",
]

_PEM = re.compile(r"\s*-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----\s*")
_HEX_SHA256 = re.compile(r"[0-9A-Fa-f]{64}")


def x5t_s256(der: bytes) -> str:
    """The RFC 8705 §3.1 thumbprint of a DER certificate: what ``cnf["x5t#S256"]`` holds."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A request's client certificate, as far as the binding check needs it:
    its thumbprint (a proxy may send only the hash, as Envoy's ``Hash=``)."""

    x5t_s256: str

    @classmethod
    def from_der(cls, der: bytes) -> ClientCertificate:
        """From DER bytes, which must parse as an X.509 certificate (ValueError)."""
        from cryptography import x509  # a dependency; loaded when certificates are

        x509.load_der_x509_certificate(der)  # ValueError for what is no certificate
        return cls(x5t_s256(der))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> ClientCertificate:
        """From one PEM ``CERTIFICATE`` block (ValueError for anything else)."""
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        match = _PEM.fullmatch(text)
        if match is None:
            raise ValueError("not one PEM certificate")
        try:
            der = base64.b64decode("".join(match.group(1).split()), validate=True)
        except binascii.Error:
            raise ValueError("PEM body is not base64") from None
        return cls.from_der(der)


#: ``client_certificate=``: which certificate a request came with, or None.
CertificateReader = Callable[["Credentials"], "ClientCertificate | bytes | None"]


def presented_thumbprint(reader: CertificateReader, credentials: Credentials) -> str | None:
    """The thumbprint of what ``reader`` finds (bytes are DER); run behind
    ``call_hook``, so a reader that fails or answers nonsense is a 503."""
    found: Any = reader(credentials)
    if found is None or isinstance(found, ClientCertificate):
        return found.x5t_s256 if found is not None else None
    if isinstance(found, bytes | bytearray):
        return x5t_s256(bytes(found))
    raise TypeError(f"client_certificate returned {type(found).__name__}, not a certificate")


def tls_client_certificate(credentials: Credentials) -> ClientCertificate | None:
    """The TLS connection's client certificate, as the server reports it
    (``Credentials.client_certificate``: the ASGI TLS extension's first
    ``client_cert_chain`` entry, PEM, or DER a front was given)."""
    found = credentials.client_certificate
    if found is None:
        return None
    try:
        if isinstance(found, bytes):
            return ClientCertificate.from_der(found)
        return ClientCertificate.from_pem(found)
    except ValueError:
        raise InvalidRequestError("malformed client certificate from the server") from None


class _ProxyHeaderReader:
    """A reader of one header a trusted proxy sets (``ProxyHeaders`` reads ``headers``)."""

    def __init__(self, header: str) -> None:
        self.header = header.lower()
        #: The headers this reader needs read from a trusted proxy.
        self.headers = (self.header,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.header!r})"


class NginxClientCertificate(_ProxyHeaderReader):
    """The certificate nginx forwards in a header, from a trusted proxy only::

        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;

    ``$ssl_client_escaped_cert`` is the PEM, URL-escaped; empty (so no
    header is sent) when the client presented none.
    """

    def __init__(self, header: str = "X-SSL-Client-Cert") -> None:
        super().__init__(header)

    def __call__(self, credentials: Credentials) -> ClientCertificate | None:
        value = credentials.proxy_headers.get(self.header)
        if not value:
            return None
        try:
            return ClientCertificate.from_pem(unquote(value, errors="strict"))
        except (ValueError, UnicodeError):
            raise InvalidRequestError(
                "malformed client certificate header from the proxy"
            ) from None


class EnvoyClientCertificate(_ProxyHeaderReader):
    """The certificate Envoy forwards in ``x-forwarded-client-cert`` (XFCC),
    from a trusted proxy only.

    An XFCC value is comma-separated elements, each ``;``-separated
    ``key=value`` pairs; every proxy that appends adds its element last, so
    the last element is the one the trusted peer (the nearest proxy) added,
    about the connection it terminated: only that one is read. Its ``Cert=``
    (URL-encoded PEM) is used, else its ``Hash=`` (hex SHA-256 of the DER);
    with both, they must agree. Set ``forward_client_cert_details`` to
    ``SANITIZE_SET`` (or ``APPEND_FORWARD``) with ``Hash`` or ``Cert`` details.
    """

    def __init__(self, header: str = "x-forwarded-client-cert") -> None:
        super().__init__(header)

    def __call__(self, credentials: Credentials) -> ClientCertificate | None:
        value = credentials.proxy_headers.get(self.header)
        if not value or not value.strip(" \t"):
            return None
        try:
            pairs = _xfcc_pairs(split_unquoted(value, ",")[-1])
            return _xfcc_certificate(pairs)
        except (ValueError, UnicodeError):
            raise InvalidRequestError(
                "malformed x-forwarded-client-cert header from the proxy"
            ) from None


def _xfcc_pairs(element: str) -> dict[str, str]:
    """One XFCC element's pairs, keys lower-case, quoted values unquoted."""
    pairs: dict[str, str] = {}
    for pair in split_unquoted(element, ";"):
        key, equals, raw = pair.strip(" \t").partition("=")
        if not equals or not key:
            raise ValueError("pair without a key")
        if raw.startswith('"'):
            if len(raw) < 2 or not raw.endswith('"'):
                raise ValueError("bad quoting")
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        pairs.setdefault(key.lower(), raw)
    return pairs


def _xfcc_certificate(pairs: dict[str, str]) -> ClientCertificate | None:
    cert, digest = pairs.get("cert"), pairs.get("hash")
    from_hash = None
    if digest is not None:
        if _HEX_SHA256.fullmatch(digest) is None:
            raise ValueError("Hash is not a hex SHA-256")
        raw = bytes.fromhex(digest)
        from_hash = ClientCertificate(base64.urlsafe_b64encode(raw).rstrip(b"=").decode())
    if cert:
        found = ClientCertificate.from_pem(unquote(cert, errors="strict"))
        if from_hash is not None and from_hash != found:
            raise ValueError("Hash and Cert disagree")
        return found
    return from_hash
