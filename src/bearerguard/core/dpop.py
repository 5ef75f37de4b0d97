"""DPoP proofs (RFC 9449 §4.3): the checks a resource server makes on one.

:class:`ProofChecker` takes the ``DPoP`` header value(s) of a request, its
method and URL, and the access token, and returns the RFC 7638 thumbprint of
the proof's key, for the binding check (:mod:`bearerguard.core.binding`); or
refuses with :class:`~bearerguard.errors.InvalidDPoPProofError`, one
description per check. The proof differs per request, so it is verified per
request; only parsed keys are cached (by thumbprint, bounded). Replay of a
``jti`` is the business of a :class:`ReplayStore`.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple, NoReturn, Protocol
from urllib.parse import quote, urlsplit

from jwt.algorithms import Algorithm

from .._forksafe import renew_after_fork
from ..errors import InvalidDPoPProofError, UseDPoPNonceError
from ..jose.jws import B64URL_ALPHABET, is_canonical
from ..jose.keys import MIN_RSA_BITS
from ..jose.signatures import fast_verifiers
from .nonces import NonceIssuer
from .routing import b64url_decode
from .values import json_object

__all__ = [
    "DEFAULT_PROOF_ALGORITHMS",
    "MemoryReplayStore",
    "NonceIssuer",
    "Proof",
    "ProofChecker",
    "ReplayStore",
    "normalized_uri",
    "thumbprint",
]

#: Asymmetric algorithms only (RFC 9449 §4.3 check 5): never ``none``, never HS*.
DEFAULT_PROOF_ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
_SUPPORTED = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
#: RFC 7638 §3.2: the required members of each key type, the thumbprint's input.
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}
#: RFC 7517/7518 private members: a proof's jwk must carry none of them.
_PRIVATE = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_VERIFIERS: dict[str, Algorithm] = fast_verifiers(_SUPPORTED)  # ES*: no PyJWT DER helpers
_MAX_PROOF = 8192
_MAX_JTI = 256
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: What a URI path holds as it is: unreserved, sub-delims, ":", "@", "/" and "%".
_IRI_SAFE = "-._~!$&'()*+,;=:@/%"
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _refuse(description: str) -> NoReturn:
    raise InvalidDPoPProofError(description)


class ReplayStore(Protocol):
    """Remembers proofs: ``first_use(key, ttl)`` is True once per key within ``ttl``."""

    def first_use(self, key: str, ttl: float) -> bool: ...


class MemoryReplayStore:
    """The proofs seen by this process, bounded: the default :class:`ReplayStore`.

    One process only; several workers need a shared store
    (``bearerguard.redis_replay.RedisReplayStore``). When full, the oldest
    entries go first: a proof that old is refused by its ``iat`` anyway
    as long as ``max_entries`` exceeds the proofs of one window.
    """

    def __init__(self, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        renew_after_fork(self, "_lock")

    def first_use(self, key: str, ttl: float) -> bool:
        now = self.clock()
        with self._lock:
            seen = self._seen
            until = seen.get(key)
            if until is not None and now < until:
                return False
            seen[key] = now + ttl
            if until is not None:  # an expired entry, renewed: now the newest
                seen.move_to_end(key)
            while seen and (len(seen) > self.max_entries or next(iter(seen.values())) <= now):
                seen.popitem(last=False)
            return True


class Proof(NamedTuple):
    """A proof that passed: its key's thumbprint, and the nonce to send next."""

    jkt: str
    #: For the success response's ``DPoP-Nonce`` (RFC 9449 §8.2), or None.
    next_nonce: str | None = None


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a public JWK, base64url (what ``cnf.jkt`` holds)."""
    kty = jwk.get("kty")
    members = _REQUIRED.get(kty) if isinstance(kty, str) else None  # a list is unhashable
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        _refuse("unsupported DPoP proof key")
    text = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(text.encode()).digest())


def _sha256(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> str:
    # base64.urlsafe_b64encode's steps without its Python wrappers: the
    # expected ath of every DPoP request (and a new key's thumbprint).
    return binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode()


def _unescape(match: re.Match[str]) -> str:
    char = chr(int(match.group()[1:], 16))
    return char if char in _UNRESERVED else match.group().upper()


def _remove_dots(path: str) -> str:
    """RFC 3986 §5.2.4, on a path split at its slashes."""
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    tail = "/" if path.endswith(("/.", "/..")) else ""
    return "/" + "/".join(out) + tail


@functools.lru_cache(maxsize=1024)  # a request's URI, and its proofs' htu, repeat
def normalized_uri(uri: str) -> str:
    """``uri`` without query and fragment, RFC 3986 §6.2.2 normalised: scheme
    and host lower-case, default port dropped, percent-encodings upper-case
    (unreserved ones decoded), dot segments removed, empty path ``/``. A path
    given as an IRI (RFC 3987 §3.1: what ASGI servers report, decoded) is
    mapped to its URI first, so ``/café`` meets a client's ``/caf%C3%A9``.

    Raises ValueError for what is no absolute http(s) URI.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URI")
    port = parts.port  # ValueError for a bad one
    host = f"[{host}]" if ":" in host else host
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(parts.path or "/", safe=_IRI_SAFE)  # only what a URI cannot hold
    path = _remove_dots(_PERCENT.sub(_unescape, path))
    return f"{scheme}://{authority}{path}"


class ProofChecker:
    """The RFC 9449 §4.3 checks of one proof, in the RFC's order.

    :param algorithms: the ``alg`` values a proof may use (asymmetric only).
    :param max_age: seconds a proof's ``iat`` may lie in the past.
    :param max_skew: seconds it may lie in the future (a client clock ahead).
    :param replay: where each proof's ``jti`` is remembered; None: a
        :class:`MemoryReplayStore` of its own (the ``iat``-window-only mode
        is ``RedisReplayStore(..., iat_window_only=True)``'s, on an outage).
    :param max_keys: how many parsed proof keys are kept, by thumbprint.
    :param nonces: a :class:`NonceIssuer` to demand server nonces (401
        ``use_dpop_nonce`` with a ``DPoP-Nonce`` header); None demands none.
    """

    def __init__(
        self,
        algorithms: Iterable[str] = DEFAULT_PROOF_ALGORITHMS,
        *,
        max_age: float = 300.0,
        max_skew: float = 30.0,
        replay: ReplayStore | None = None,
        max_keys: int = 1024,
        nonces: NonceIssuer | None = None,
    ) -> None:
        algs = tuple(dict.fromkeys(algorithms))
        if not algs or not set(algs) <= _SUPPORTED:
            raise ValueError(f"DPoP algorithms must be among {sorted(_SUPPORTED)}")
        if max_age <= 0 or max_skew < 0:
            raise ValueError("max_age must be positive and max_skew not negative")
        self.algorithms = algs
        self.max_age = float(max_age)
        self.max_skew = float(max_skew)
        self.replay = replay if replay is not None else MemoryReplayStore()
        self.max_keys = max_keys
        #: Server nonces demanded in every proof; None: none demanded.
        self.nonces = nonces
        self._keys: OrderedDict[str, Any] = OrderedDict()
        self._headers: OrderedDict[bytes, tuple[dict[str, Any], str, Any]] = OrderedDict()
        self._keys_lock = threading.Lock()
        renew_after_fork(self, "_keys_lock")

    def check(self, proofs: Sequence[str], method: str, uri: str, token: str, now: float) -> str:
        """The thumbprint of the key that signed the one valid proof in ``proofs``."""
        return self.verify(proofs, method, uri, token, now).jkt

    def verify(
        self,
        proofs: Sequence[str],
        method: str,
        uri: str,
        token: str,
        now: float,
        token_digest: bytes | None = None,
    ) -> Proof:
        """:meth:`check`, and the nonce a success response should carry.

        ``token_digest``: the token's SHA-256 if the caller has it (the guard
        does: its cache and deny-list key), so ``ath`` costs no second one.
        """
        header, claims, signing_input, signature, known = self._parse(proofs)
        if known is None:
            jkt, key = self._checked_header(header)
            # A client signs every proof with one key, so every header segment
            # it sends is the same bytes: their checks, thumbprint and parsed
            # key are kept by that segment (what the signature covers).
            with self._keys_lock:
                self._headers[signing_input.partition(b".")[0]] = (header, jkt, key)
                while len(self._headers) > self.max_keys:
                    self._headers.popitem(last=False)
        else:
            jkt, key = known[1], known[2]
        alg = header["alg"]
        if not _VERIFIERS[alg].verify(signing_input, key, signature):
            _refuse("DPoP proof signature invalid")
        ath = _sha256(token) if token_digest is None else token_digest
        self._check_claims(claims, method, uri, ath, now)
        nonces, renewal = self.nonces, None
        if nonces is not None:
            if not nonces.valid(claims.get("nonce"), now):
                raise UseDPoPNonceError(nonce=nonces.issue(now))
            renewal = nonces.renewal(claims["nonce"], now)
        if self.replay is not None:
            jti = claims["jti"]
            if not self.replay.first_use(f"{jkt}:{jti}", self.max_age + self.max_skew):
                _refuse("DPoP proof replayed")
        return Proof(jkt, renewal)

    def _checked_header(self, header: Mapping[str, Any]) -> tuple[str, Any]:
        """Checks 4-6 of a header not seen before: typ, alg, jwk; its thumbprint and key."""
        if header.get("typ") != "dpop+jwt":
            _refuse("DPoP proof typ is not dpop+jwt")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            _refuse("DPoP proof algorithm not allowed")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            _refuse("DPoP proof has no jwk")
        if _PRIVATE.intersection(jwk):
            _refuse("DPoP proof jwk holds a private key")
        jkt = thumbprint(jwk)
        return jkt, self._key(jkt, jwk, alg)

    def _parse(self, proofs: Sequence[str]) -> tuple[Any, dict[str, Any], bytes, bytes, Any]:
        """Check 1-2: exactly one header, a well-formed JWS (JSON header and claims);
        with the checked header, thumbprint and key when this header was seen."""
        if len(proofs) != 1:
            _refuse("missing DPoP proof" if not proofs else "more than one DPoP proof")
        proof = proofs[0]
        if len(proof) > _MAX_PROOF or not proof.isascii():
            _refuse("malformed DPoP proof")
        # The base64url alphabet deleted, a proof holds two dots and nothing
        # more (a check of a byte each, where a regex took ~2 us).
        if proof.encode("ascii").translate(None, B64URL_ALPHABET) != b"..":
            _refuse("malformed DPoP proof")
        head, body, sig = proof.split(".")
        if not (head and body and sig):
            _refuse("malformed DPoP proof")
        known = self._headers.get(head.encode("ascii"))
        try:
            header = known[0] if known is not None else json_object(b64url_decode(head))
            claims = json_object(b64url_decode(body))
            signature = b64url_decode(sig)
        except ValueError:
            _refuse("malformed DPoP proof")
        # Canonical only: stray trailing bits would make many spellings of one proof.
        if header is None or claims is None or not is_canonical(sig):
            _refuse("malformed DPoP proof")
        if "crit" in header or "b64" in header:
            _refuse("malformed DPoP proof")
        return header, claims, f"{head}.{body}".encode("ascii"), signature, known

    def _key(self, jkt: str, jwk: Mapping[str, Any], alg: str) -> Any:
        """The public key object of ``jwk`` for ``alg``, parsed once per thumbprint."""
        # The cache key holds alg too: one key must suit each alg it is used with.
        cache_key = f"{alg}:{jkt}"
        with self._keys_lock:
            key = self._keys.get(cache_key)
        if key is not None:
            return key
        key = _parse_key(jwk, alg)
        with self._keys_lock:
            self._keys[cache_key] = key
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        return key

    def _check_claims(
        self, claims: Mapping[str, Any], method: str, uri: str, token_digest: bytes, now: float
    ) -> None:
        """Checks 7-11: jti, htm, htu, iat, ath (the nonce is the guard's)."""
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
            _refuse("DPoP proof jti missing or invalid")
        if claims.get("htm") != method:
            _refuse("DPoP proof htm does not match the request method")
        htu = claims.get("htu")
        try:
            if not isinstance(htu, str) or normalized_uri(htu) != normalized_uri(uri):
                _refuse("DPoP proof htu does not match the request URI")
        except ValueError:
            _refuse("DPoP proof htu does not match the request URI")
        iat = claims.get("iat")
        if type(iat) not in (int, float) or iat != iat:  # bool and NaN are no times
            _refuse("DPoP proof iat missing or invalid")
        assert iat is not None
        if iat < now - self.max_age or iat > now + self.max_skew:
            _refuse("DPoP proof iat outside the acceptable window")
        ath = claims.get("ath")
        expected = _b64(token_digest)
        if not isinstance(ath, str) or not hmac.compare_digest(ath.encode(), expected.encode()):
            _refuse("DPoP proof ath does not match the access token")


def _parse_key(jwk: Mapping[str, Any], alg: str) -> Any:
    """Checks 5-6 for the key: its type suits ``alg``, strong enough, parseable."""
    kty = jwk.get("kty")
    if alg in _EC_CURVES:
        ok = kty == "EC" and jwk.get("crv") == _EC_CURVES[alg]
    elif alg == "EdDSA":
        ok = kty == "OKP" and jwk.get("crv") == "Ed25519"
    else:
        ok = kty == "RSA"
    if not ok:
        _refuse("DPoP proof jwk does not suit its algorithm")
    try:
        key = _VERIFIERS[alg].from_jwk(dict(jwk))
    except Exception:  # PyJWT's InvalidKeyError, ValueError, binascii.Error...
        _refuse("DPoP proof jwk is not a valid public key")
    if kty == "RSA" and key.key_size < MIN_RSA_BITS:
        _refuse("DPoP proof jwk is too weak")
    return key
