"""Reading the bearer token out of a request (RFC 6750 §2), framework-neutral.

Every way a request can be malformed ends in a ``BearerGuardError`` with the
right status; nothing here can raise anything else, whatever the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from .errors import InvalidRequestError, MissingTokenError, UnsupportedTokenTypeError

__all__ = ["digest", "json_object", "parse_authorization", "peek_jws", "signed_content_digest"]

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


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
    if _B64TOKEN.fullmatch(token) is None:
        raise InvalidRequestError("malformed Authorization header")
    return token


def check_token(token: str, max_length: int) -> str:
    """Check a token taken from a form body or query string (RFC 6750 §2.2, §2.3)."""
    if len(token) > max_length:
        raise InvalidRequestError("access token too large")
    if _B64TOKEN.fullmatch(token) is None:
        raise InvalidRequestError("malformed access_token parameter")
    return token


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


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and an `exp` of
    # Infinity would be a token that never expires.
    raise ValueError(f"not JSON: {name}")


#: Built once: ``json.loads(data, parse_constant=...)`` builds a decoder and its
#: scanner on every call, a third of the cost of parsing a token's header.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """``data`` parsed as a strict JSON object, or None."""
    try:
        text = data.decode(json.detect_encoding(data)) if isinstance(data, bytes) else data
        value = _STRICT_JSON.decode(text)
    except (ValueError, TypeError, RecursionError):
        # UnicodeDecodeError is a ValueError; RecursionError is deeply nested JSON.
        return None
    return value if isinstance(value, dict) else None


def _json_object(segment: str) -> dict[str, Any] | None:
    try:
        return json_object(b64url_decode(segment))
    except ValueError:  # binascii.Error
        return None


def peek_jws(token: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """Unverified ``(header, payload)`` of a JWS compact token, else None.

    A token is JWS-shaped when it has three dot-separated segments and its
    first decodes to a JSON object with ``alg``. The payload is None when it is
    not a JSON object. Nothing here is trusted: a JWT validator that reuses
    them (``validate_jws``) checks the segments strictly first.
    """
    if token.count(".") != 2:
        return None
    head, body, _ = token.split(".")
    header = _json_object(head)
    if header is None or "alg" not in header:
        return None
    return header, _json_object(body)
