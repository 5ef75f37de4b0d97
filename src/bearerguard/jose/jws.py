"""JWS compact tokens (RFC 7515): the strict parse, the header policy, the signature.

Decoding is its own step, as in joserfc: :func:`extract` turns a compact token
into a :class:`CompactJWS` (header, payload, signing input, signature) or
refuses it as malformed; :class:`HeaderPolicy` refuses what the header must
not say; :func:`verify_signature` checks the signature with a key chosen from
configuration, never one the token names. Nothing in the payload is read here:
that is :mod:`bearerguard.jose.claims`.

Why not ``jwt.decode``: it re-checks each segment's alphabet character by
character in Python (about 70 µs for a 650-byte RS256 token, three times the
RSA verification itself); a regex does the same here in C.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, NoReturn

from ..core.frozen import freeze
from ..core.values import json_object
from ..errors import InvalidTokenError
from .keys import VerifyKey

__all__ = [
    "B64URL_ALPHABET",
    "CompactJWS",
    "HeaderPolicy",
    "HeaderStep",
    "decode_parts",
    "extract",
    "is_canonical",
    "known_header",
    "remember_header",
    "verify_signature",
]

_MISSING: Final = object()
_B64URL_TEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#: The base64url alphabet (RFC 4648 §5) as bytes: ``data.translate(None,
#: B64URL_ALPHABET)`` is what else ``data`` holds (a check of a byte each).
B64URL_ALPHABET: Final = _B64URL_TEXT.encode()
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: The last character a canonical segment may have, by its length mod 4: of
#: 4n+2 (4n+3) characters, its low 4 (2) bits, past the data, are zero (RFC
#: 4648 §3.5); of 4n, any (or none: empty); no encoding is 4n+1 long.
_CANONICAL_LAST: tuple[frozenset[str], ...] = (
    frozenset(_B64URL_TEXT) | {""},
    frozenset(),
    frozenset(_B64URL_TEXT[::16]),
    frozenset(_B64URL_TEXT[::4]),
)
#: RFC 9068 §4: the ``typ`` of a JWT access token. Media types are
#: case-insensitive (compared lowered) and ``application/`` may be left out
#: (RFC 7515 §4.1.9), so each value is listed both ways.
_AT_JWT = frozenset({"at+jwt", "application/at+jwt"})
#: ``typ`` values accepted when ``at+jwt`` is not required (or no ``typ``):
#: plain ``JWT`` too (RFC 7519 §5.1), as many servers still send. Any other
#: names another kind of JWT (``dpop+jwt``, ``logout+jwt``, ``secevent+jwt``,
#: ``id_token+jwt``...), which must not pass for an access token (RFC 8725 §3.11).
_ACCESS_TOKEN_TYPES = _AT_JWT | {"jwt", "application/jwt"}

#: One named check of a header: raises ``InvalidTokenError`` to refuse it.
HeaderStep = tuple[str, Callable[[Mapping[str, Any]], None]]


def _refuse(description: str) -> NoReturn:
    raise InvalidTokenError(description)


class CompactJWS(NamedTuple):
    """A JWS compact token, split and decoded, nothing verified yet.

    ``payload`` is None when it is not a JSON object: a JWS may sign any
    bytes, but an access token's payload is a claims set, refused after the
    signature check. The signature is decoded when it is checked, after the
    header policy: a header that names no allowed algorithm (``none``, with
    its empty signature) is refused for that. A named tuple: made on every
    cache miss, and three times cheaper than a frozen dataclass.
    """

    header: dict[str, Any]
    payload: dict[str, Any] | None
    #: ``header.payload`` as sent: the bytes the signature covers (ASCII, checked).
    signing_input: str
    encoded_signature: str

    def claims(self) -> dict[str, Any]:
        """The payload as a claims set, once verified: a JWS may sign any bytes,
        a JWT's are a JSON object (RFC 7519 §7.2); else ``malformed token``."""
        if self.payload is None:
            _refuse("malformed token")
        return self.payload

    @property
    def signature(self) -> bytes:
        """The signature's bytes, from a strict and canonical base64url segment."""
        return _decode_segment(self.encoded_signature, canonical=True)


#: Headers decoded from strictly encoded segments, by segment. The tokens of
#: one key repeat its header byte for byte, so a cache miss decodes a header
#: once per key rather than once per token, and every cached token of that
#: key shares one read-only header. It memoises a function of the segment
#: alone, filled only by this module's own decoding: whoever's tokens fill
#: it, it answers what decoding would. Full, it is emptied.
_HEADERS: dict[str, dict[str, Any]] = {}  # FrozenDicts
_HEADERS_MAX = 256

#: The memoised header of a segment, or None (never seen, or not strict).
known_header: Callable[[str], dict[str, Any] | None] = _HEADERS.get


def remember_header(segment: str, header: dict[str, Any]) -> dict[str, Any]:
    """``header``, just decoded from ``segment`` by the caller, memoised and
    returned read-only if the segment is strictly encoded; else as it is."""
    try:
        _check_segment(segment)
    except InvalidTokenError:
        return header  # refused by extract anyway; never memoised
    frozen: dict[str, Any] = freeze(header)
    if len(_HEADERS) >= _HEADERS_MAX:
        _HEADERS.clear()
    _HEADERS[segment] = frozen
    return frozen


def extract(
    token: str, peeked: tuple[dict[str, Any] | None, dict[str, Any] | None] | None = None
) -> CompactJWS:
    """``token`` strictly parsed (RFC 7515 §7.1), or ``InvalidTokenError("malformed token")``.

    ``peeked``: the ``(header, payload)`` a router already decoded, unverified,
    from these same segments (``peek_jws``), so they are not decoded twice.
    The segments are checked as strictly either way: base64url alphabet, no
    padding (the signature's when it is checked, canonical too).
    """
    signing_input, _, encoded_signature = token.rpartition(".")
    if peeked is None:
        peeked = decode_parts(token)
    else:
        head, _, body = signing_input.partition(".")
        if head not in _HEADERS:  # a memoised segment was checked when memoised
            _check_segment(head)
        _check_segment(body)
    header, payload = peeked
    if header is None:
        _refuse("malformed token")
    return CompactJWS(header, payload, signing_input, encoded_signature)


def decode_parts(token: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The header and payload of a compact token, each a JSON object or None,
    from strictly checked segments (else ``InvalidTokenError``); unverified."""
    head, _, body = token.rpartition(".")[0].partition(".")
    header = _HEADERS.get(head)
    if header is None:
        header = json_object(_decode_segment(head))
    return header, json_object(_decode_segment(body))


def verify_signature(jws: CompactJWS, key: VerifyKey) -> None:
    """Refuse ``jws`` unless ``key`` verifies its signature with the header's ``alg``.

    ``key`` comes from a key set lookup for that ``alg``, so it suits it; the
    segments were checked to be ASCII by :func:`extract`.
    """
    if not key.verify(jws.header["alg"], jws.signing_input.encode("ascii"), jws.signature):
        _refuse("invalid signature")


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """What a JWS header must (not) say to be verified at all.

    ``alg`` among ``algorithms`` (never taken from the token; RFC 8725 §3.1),
    no ``crit`` or ``b64`` (no extension is understood here), a string
    ``kid``, and a ``typ`` that names an access token. ``jku``, ``x5u``,
    ``jwk`` and ``x5c`` are never read: keys come from configuration only.
    """

    algorithms: frozenset[str]
    #: Require RFC 9068's ``typ: at+jwt`` (else it may also be absent or ``JWT``).
    require_typ: bool = False
    _checks: tuple[Callable[[Mapping[str, Any]], None], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_checks", tuple(check for _, check in self.steps()))

    def steps(self) -> tuple[HeaderStep, ...]:
        """The checks in the order :meth:`check` runs them, each with its name
        (what ``bearerguard verify`` prints, one line each)."""
        return (
            ("alg allowed", self.check_alg),
            ("crit", check_no_extension),
            ("kid", check_kid),
            ("typ", self.check_typ),
        )

    def check(self, header: Mapping[str, Any]) -> None:
        """Refuse the header (``InvalidTokenError``) at its first failed step."""
        for check in self._checks:
            check(header)

    def check_alg(self, header: Mapping[str, Any]) -> None:
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            _refuse("algorithm not allowed")

    def check_typ(self, header: Mapping[str, Any]) -> None:
        typ = header.get("typ", _MISSING)
        if typ is _MISSING:
            if self.require_typ:
                _refuse("wrong token type")
            return
        accepted = _AT_JWT if self.require_typ else _ACCESS_TOKEN_TYPES
        if not isinstance(typ, str) or typ.lower() not in accepted:
            _refuse("wrong token type")


def check_no_extension(header: Mapping[str, Any]) -> None:
    """No JWS extension is understood here, so any ``crit`` must be refused
    (RFC 7515 §4.1.11); ``b64: false`` (RFC 7797) changes what is signed."""
    if "crit" in header or "b64" in header:
        _refuse("unsupported critical header")


def check_kid(header: Mapping[str, Any]) -> None:
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        _refuse("malformed token")


def _check_segment(segment: str) -> bytes:
    """Strict base64url (RFC 7515 §2): its alphabet only, no padding; its ASCII bytes.

    Deleting the alphabet with ``bytes.translate`` must leave nothing: a C
    loop twice as fast as a regex over a 342-character RSA signature. A
    character outside ASCII is encoded as ``?`` and so refused.
    """
    data = segment.encode("ascii", "replace")
    if not data or len(data) % 4 == 1 or data.translate(None, B64URL_ALPHABET):
        _refuse("malformed token")
    return data


def _decode_segment(segment: str, *, canonical: bool = False) -> bytes:
    """A strict base64url segment, decoded.

    ``canonical`` also refuses encodings with stray trailing bits: several
    strings would decode to the same signature, and a variant of a revoked
    token would not match its deny-list entry.
    """
    data = _check_segment(segment)
    if canonical and not is_canonical(segment):
        _refuse("malformed token")
    # Checked to be the alphabet: the standard decoder, once translated, is exact.
    return binascii.a2b_base64(data.translate(_TO_STANDARD) + b"=="[: -len(data) % 4])


def is_canonical(segment: str) -> bool:
    """False when the last character of a base64url ``segment`` (of the
    alphabet, checked) carries stray bits past its data (RFC 4648 §3.5), or
    when no encoding is that long: several spellings would decode to the same
    bytes. Cheaper than encoding the decoded bytes again to compare."""
    return segment[-1:] in _CANONICAL_LAST[len(segment) % 4]
