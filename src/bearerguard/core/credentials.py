"""What a front hands the core about a request, and the token read out of it.

A front (Flask's ``protector``, ``bearerguard.starlette``) translates its
request into :class:`Credentials`, plain values; the token is read from them
here as RFC 6750 §2 says. Every way a request can be malformed ends in a
``BearerGuardError`` with the right status; nothing here can raise anything
else, whatever the bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import InvalidRequestError, MissingTokenError, UnsupportedTokenTypeError

__all__ = [
    "Credentials",
    "check_token",
    "digest",
    "parse_authorization",
    "signed_content_digest",
    "token_of",
]


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class Credentials(NamedTuple):
    """One request, as the core sees it: plain values a front read from it.

    Built by the front only when ``Guard.try_cached`` cannot answer (a miss,
    a request check to run), so a cache hit never pays for it; a named tuple,
    as a frozen dataclass's ``__init__`` cost four times as much.
    """

    #: The ``Authorization`` header value, None when absent.
    authorization: str | None
    method: str = "GET"
    #: The URL the server saw: ``scheme://host[:port]/path?query``; only DPoP's
    #: ``htu`` reads it, so the fronts leave it empty for other requests.
    url: str = ""
    #: The query's values by name; filled only when the guard accepts query tokens.
    query: Mapping[str, Sequence[str]] | None = None
    #: The form body's values; only when the guard accepts form tokens and the
    #: body is ``application/x-www-form-urlencoded``.
    form: Mapping[str, Sequence[str]] | None = None
    #: The TLS connection's client certificate as the server reports it (PEM
    #: text: the ASGI TLS extension's; or DER), for certificate-bound tokens
    #: (RFC 8705) read by ``tls_client_certificate``.
    client_certificate: bytes | str | None = None
    #: The framework's request object, for the user's hooks that take one
    #: (the seed's ``request_invalid``): its type is the framework's.
    request: Any = None
    #: Builds what Authlib 1.x's hooks (``validate_request``, ``validate_token``)
    #: receive, Authlib's request wrapper in Flask; None: they get ``request``.
    hook_request: Callable[[], Any] | None = None
    #: The ``DPoP`` header values (RFC 9449 §4.1), each as sent: a proof is
    #: accepted only when there is exactly one.
    dpop: Sequence[str] = ()
    #: The connection's peer address (``REMOTE_ADDR``, the ASGI ``client``).
    peer: str | None = None
    #: The headers the guard reads from a trusted proxy (lower-case names;
    #: repeated ones joined with ", "): empty unless ``peer`` is one.
    proxy_headers: Mapping[str, str] = _NO_HEADERS

    def oauth_request(self) -> Any:
        """What Authlib 1.x's hooks receive as ``request``."""
        return self.hook_request() if self.hook_request is not None else self.request


# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def _is_b64token(token: str) -> bool:
    """``token`` is a b64token: deleting its alphabet (a C loop, twice as fast as
    the regex on a JWT) leaves nothing before the ``=`` padding; outside ASCII
    is ``?``, refused."""
    body = token.rstrip("=")
    return bool(body) and not body.encode("ascii", "replace").translate(None, _B64TOKEN_CHARS)


def parse_authorization(value: str, max_length: int) -> str:
    """The token from an ``Authorization`` header value.

    ``Bearer`` is matched case-insensitively and may be followed by several
    spaces (RFC 7235 ``1*SP``). An empty value is no credentials, another
    scheme an unsupported one (both 401 with a bare challenge, RFC 6750 §3.1);
    a bearer header that is not ``Bearer <b64token>`` is a malformed request (400).
    """
    if len(value) > max_length + 64:
        raise InvalidRequestError("access token too large")
    scheme, _, rest = value.partition(" ")
    if scheme.lower() != "bearer":
        stripped = value.strip(" \t")
        if not stripped:
            raise MissingTokenError()
        if stripped[:6].lower() == "bearer" and stripped[6:7] in ("", " ", "\t"):
            raise InvalidRequestError("malformed Authorization header")  # "Bearer\tx", " Bearer x"
        raise UnsupportedTokenTypeError()
    token = rest.lstrip(" ")
    if not token:
        raise InvalidRequestError("missing token in Authorization header")
    if len(token) > max_length:
        raise InvalidRequestError("access token too large")
    if not _is_b64token(token):
        raise InvalidRequestError("malformed Authorization header")
    return token


def check_token(token: str, max_length: int) -> str:
    """Check a token taken from a form body or query string (RFC 6750 §2.2, §2.3)."""
    if len(token) > max_length:
        raise InvalidRequestError("access token too large")
    if not _is_b64token(token):
        raise InvalidRequestError("malformed access_token parameter")
    return token


def token_of(credentials: Credentials, *, max_length: int, query: bool, form: bool) -> str:
    """The one bearer token ``credentials`` carry: in the header, or (when
    allowed) an ``access_token`` in the query or the form, never in two places."""
    header = credentials.authorization
    if not (query or form):
        if header is None:
            raise MissingTokenError()
        return parse_authorization(header, max_length)
    found = [] if header is None else [parse_authorization(header, max_length)]
    if query and credentials.query is not None:
        found += credentials.query.get("access_token", ())
    if form and credentials.form is not None and credentials.method not in ("GET", "HEAD"):
        found += credentials.form.get("access_token", ())
    if not found:
        raise MissingTokenError()
    if len(found) > 1:
        raise InvalidRequestError("access token sent in more than one place")
    return check_token(found[0], max_length)


def digest(token: str) -> bytes:
    """The cache and deny-list key of a token: its SHA-256."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def signed_content_digest(signing_input: str) -> bytes:
    """The deny-list key of a JWS: SHA-256 of its signing input, ``header.payload``.

    A revocation must cover every string that carries the same signed content,
    not just the one spelling it was given: an ECDSA signature ``(r, s)`` has a
    twin ``(r, n - s)`` that verifies as well. The prefix keeps these keys
    apart from token digests, so revoking an opaque token ``"a.b"`` revokes no
    JWS ``"a.b.<sig>"``. Never a cache key: a forged signature shares it too.
    """
    return hashlib.sha256(b"jws\0" + signing_input.encode("utf-8", "surrogatepass")).digest()
