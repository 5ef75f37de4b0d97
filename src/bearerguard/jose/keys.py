"""JSON Web Keys (RFC 7517): a JWKS document parsed once into ready verifiers.

:class:`KeySet` turns a JWKS document into ready public-key objects, indexed so
a lookup is one dict access whatever the number of keys: a token's signature
check never re-imports a key (Authlib's validator re-imports the whole JWKS per
request). Each key verifies one algorithm unless configured otherwise (RFC 8725
§3.1); an ``oct`` key only when configured in this process (``local``), never
one fetched. Where the documents come from is :mod:`bearerguard.jose.fetch`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import Algorithm, HMACAlgorithm, get_default_algorithms

from .._log import logger, throttled
from ..errors import InvalidTokenError
from .signatures import fast_verifiers

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "MIN_RSA_BITS",
    "KeySet",
    "VerifyKey",
    "allowed_algorithms",
]

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
#: Ed25519 keys: RFC 8037's polymorphic "EdDSA", and "Ed25519", the fully
#: specified name RFC 9864 replaces it with. The same signature either way, so
#: a key without ``alg`` verifies both.
_ED25519_ALGORITHMS = frozenset({"EdDSA", "Ed25519"})
#: What an RSA key without ``alg`` verifies when no ``algorithms`` are configured.
_RSA_DEFAULT = frozenset({"RS256"})
#: Every algorithm a token may name: public-key signatures only. ``none`` and
#: HS* are absent on purpose (RFC 8725 §3.1, §3.2): a public key used as an
#: HMAC secret would let anyone sign.
ASYMMETRIC_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_ALGORITHMS.values()) | _ED25519_ALGORITHMS
#: RFC 7518 §3.3: RSA keys MUST be 2048 bits or larger.
MIN_RSA_BITS = 2048
#: Shared-secret algorithms: only for an ``oct`` key configured in this
#: process (``jwks=``, ``get_jwks()``), never one fetched (RFC 8725 §3.2).
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


#: PyJWT's verifier for each allowed algorithm, made once. PyJWT names Ed25519
#: "EdDSA" only; its EdDSA verifier checks an Ed25519 key's signature, and keys
#: for "Ed25519" are Ed25519 keys (checked in ``_parse_key``), never Ed448 ones.
_VERIFIERS: dict[str, Algorithm] = fast_verifiers(ASYMMETRIC_ALGORITHMS)  # ES* direct
_VERIFIERS["Ed25519"] = _VERIFIERS["EdDSA"]
#: PyJWT's HMAC verifiers compare with ``hmac.compare_digest``. Kept apart from
#: _VERIFIERS: only _parse_secret hands them out, to ``oct`` keys alone.
_HMAC_VERIFIERS: dict[str, HMACAlgorithm] = {
    name: algorithm
    for name, algorithm in get_default_algorithms().items()
    if name in HMAC_ALGORITHMS and isinstance(algorithm, HMACAlgorithm)
}


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A public key, imported once, and PyJWT's verifier for each algorithm it may use."""

    kid: str | None
    #: A ``cryptography`` public-key object, or a local ``oct`` key's secret
    #: bytes (so never in the repr).
    key: Any = field(repr=False)
    verifiers: Mapping[str, Algorithm]

    @property
    def algorithms(self) -> frozenset[str]:
        return frozenset(self.verifiers)

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        """True when ``signature`` is this key's ``alg`` signature of ``signing_input``.

        ``alg`` must be one of :attr:`algorithms` (a KeySet lookup guarantees it).
        """
        return self.verifiers[alg].verify(signing_input, self.key, signature)


class _SkippedKey(Exception):
    """A JWK that cannot be used; the message says why, for the log."""


def _key_family(jwk: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """The algorithms a key's ``kty`` and ``crv`` suit, and the one it verifies by default."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if not isinstance(crv, str | None):
        raise _SkippedKey("crv is not a string")
    if kty == "RSA":
        return _RSA_ALGORITHMS, _RSA_DEFAULT
    if kty == "EC":
        curve_alg = _EC_ALGORITHMS.get(crv or "")
        if curve_alg is None:
            raise _SkippedKey("unsupported EC curve")
        return frozenset({curve_alg}), frozenset({curve_alg})
    if kty == "OKP":
        if crv != "Ed25519":
            raise _SkippedKey("unsupported OKP curve")
        return _ED25519_ALGORITHMS, _ED25519_ALGORITHMS
    if kty == "oct":
        raise _SkippedKey("symmetric key (kty 'oct') never used")
    raise _SkippedKey("unsupported kty")


def _key_algorithms(jwk: Mapping[str, Any], allowed: frozenset[str] | None) -> frozenset[str]:
    """What one key may verify: its own ``alg`` if allowed; without one, the
    allowed algorithms that suit its type, or (``allowed`` None) its type's default.

    RFC 8725 §3.1: each key is used with one algorithm. A key without ``alg``
    would otherwise verify every algorithm of its family (RS*, PS*), so a
    signature made with another padding or hash than the issuer's still passes.
    """
    family, default = _key_family(jwk)
    alg = jwk.get("alg")
    if alg is None:
        return default if allowed is None else family & allowed
    if not isinstance(alg, str):
        raise _SkippedKey("alg is not a string")
    if alg not in family:
        raise _SkippedKey("alg does not suit its kty/crv, or is not supported")
    return frozenset({alg}) if allowed is None or alg in allowed else frozenset()


def _parse_secret(
    kid: str | None, jwk: Mapping[str, Any], allowed: frozenset[str] | None
) -> VerifyKey:
    """A local ``oct`` JWK as a :class:`VerifyKey` for the HS* its length permits.

    As for public keys (RFC 8725 §3.1), one algorithm per key unless configured:
    its own ``alg``, else HS256; with ``allowed``, those of it that suit.
    """
    alg = jwk.get("alg")
    if alg is not None and alg not in HMAC_ALGORITHMS:
        raise _SkippedKey("alg does not suit its kty/crv, or is not supported")
    try:
        secret = HMACAlgorithm.from_jwk(dict(jwk))
        # PyJWT refuses a secret that is a PEM/DER public key or a JWK: the
        # algorithm-confusion key, even when configured on purpose.
        secret = _HMAC_VERIFIERS["HS256"].prepare_key(secret)
    except Exception as exc:  # a bad key is skipped, never a crash
        raise _SkippedKey(f"cannot be imported ({type(exc).__name__})") from exc
    if alg is not None:
        names: set[str] | frozenset[str] = {alg} if allowed is None else {alg} & allowed
    else:
        names = {"HS256"} if allowed is None else HMAC_ALGORITHMS & allowed
    # RFC 7518 §3.2: a key at least as long as the hash output MUST be used.
    usable = {n for n in names if _HMAC_VERIFIERS[n].check_key_length(secret) is None}
    if not usable:
        raise _SkippedKey("oct key too short for its algorithms, or none allowed")
    return VerifyKey(kid, secret, {n: _HMAC_VERIFIERS[n] for n in sorted(usable)})


def _parse_key(jwk: Any, allowed: frozenset[str] | None, local: bool = False) -> VerifyKey | None:
    """One JWK as a :class:`VerifyKey`; None when no allowed algorithm suits it.

    ``allowed`` is the validator's ``algorithms``; None when none were given.
    ``local`` (keys configured in this process) also accepts ``oct`` keys.
    """
    if not isinstance(jwk, Mapping):
        raise _SkippedKey("not a JSON object")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise _SkippedKey("kid is not a string")
    if jwk.get("use", "sig") != "sig":
        raise _SkippedKey("not a signature key (use)")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _SkippedKey("not a verification key (key_ops)")
    if local and jwk.get("kty") == "oct":
        return _parse_secret(kid, jwk, allowed)
    algorithms = _key_algorithms(jwk, allowed)
    if not algorithms:
        return None
    try:
        key = _VERIFIERS[min(algorithms)].from_jwk(dict(jwk))
    except Exception as exc:  # untrusted input: a bad key is skipped, never a crash
        raise _SkippedKey(f"cannot be imported ({type(exc).__name__})") from exc
    if "d" in jwk or not hasattr(key, "verify"):
        raise _SkippedKey("private key material in a public key set")
    if algorithms & _ED25519_ALGORITHMS and not isinstance(key, ed25519.Ed25519PublicKey):
        raise _SkippedKey("not an Ed25519 key")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise _SkippedKey(f"RSA key shorter than {MIN_RSA_BITS} bits")
    return VerifyKey(kid, key, {alg: _VERIFIERS[alg] for alg in sorted(algorithms)})


class KeySet:
    """Parsed, immutable public keys, indexed by ``(kid, alg)`` and by ``alg``.

    Keys that cannot be used are skipped, each with a warning: a bad key in a
    set must not take the good ones down with it.
    """

    __slots__ = ("_by_alg", "_by_kid", "algorithms", "any_kid", "keys", "kids")

    def __init__(self, keys: Iterable[VerifyKey], *, any_kid: bool = False) -> None:
        self.keys = tuple(keys)
        #: The set is one key without ``kid``, configured here: it is the key
        #: whatever ``kid`` a token names, as a single key is in Authlib.
        self.any_kid = any_kid and len(self.keys) == 1 and self.keys[0].kid is None
        self._by_kid: dict[tuple[str, str], VerifyKey] = {}
        by_alg: dict[str, list[VerifyKey]] = {}
        for key in self.keys:
            for alg in key.algorithms:
                by_alg.setdefault(alg, []).append(key)
                if key.kid is not None:
                    self._by_kid.setdefault((key.kid, alg), key)
        self._by_alg = {alg: tuple(found) for alg, found in by_alg.items()}
        self.kids = frozenset(key.kid for key in self.keys if key.kid is not None)
        self.algorithms = frozenset(self._by_alg)

    @classmethod
    def parse(
        cls, document: Any, allowed: frozenset[str] | None, source: str, *, local: bool = False
    ) -> KeySet:
        """Parse a JWKS document (``{"keys": [...]}``); raise ValueError if it is not one.

        ``allowed``: the configured algorithms, or None for each key's own
        ``alg`` (its type's default when it has none). ``local``: the document
        was configured in this process, not fetched, so its ``oct`` keys are
        used (for HS* only); a fetched one never is.
        """
        found = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(found, list):
            raise ValueError("not a JWKS document (no 'keys' list)")
        keys = []
        for jwk in found:
            kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
            try:
                key = _parse_key(jwk, allowed, local)
            except _SkippedKey as why:
                throttled(
                    f"jwks-skip:{source}:{kid!r}:{why}",
                    "JWKS from %s: skipped key kid=%.64r: %s",
                    source,
                    kid,
                    str(why),
                )
                continue
            if key is None:
                logger.debug("JWKS from %s: key kid=%.64r has no allowed algorithm", source, kid)
            else:
                keys.append(key)
        # Authlib uses a lone configured key whatever kid a token names.
        return cls(keys, any_kid=local and len(found) == 1)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"<KeySet {len(self.keys)} keys, algorithms={sorted(self.algorithms)}>"

    def find(self, kid: str | None, alg: str) -> VerifyKey | None:
        """The key for a token's ``kid`` and ``alg``; None when no such key is known.

        Raises InvalidTokenError when the answer cannot change by refetching:
        the ``kid`` is known but for another algorithm, or the token has no
        ``kid`` and several keys could verify it.
        """
        if kid is not None:
            key = self._by_kid.get((kid, alg))
            if key is None and kid in self.kids:
                raise InvalidTokenError("algorithm not allowed")
            if key is None and self.any_kid:
                return self.find(None, alg)
            return key
        candidates = self._by_alg.get(alg, ())
        if len(candidates) > 1:
            raise InvalidTokenError("ambiguous signing key")
        return candidates[0] if candidates else None


def allowed_algorithms(algorithms: Iterable[str] | None, *, local: bool) -> frozenset[str] | None:
    """The configured ``algorithms``, checked; None when none were given.

    HS* only with keys configured here (``local``): a fetched key set never
    holds a secret, and a :class:`KeySet` gives HS* verifiers to ``oct`` keys
    alone. ``none`` is never accepted. Raises ValueError for anything else.
    """
    if algorithms is None:
        return None
    usable = ASYMMETRIC_ALGORITHMS | HMAC_ALGORITHMS if local else ASYMMETRIC_ALGORITHMS
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    allowed = frozenset(algorithms)
    refused = allowed - usable
    if refused or not allowed:
        raise ValueError(
            f"algorithms must be among {sorted(usable)}; refused: {sorted(refused)} "
            "(none is never accepted, HS* only with an oct key given as jwks=)"
        )
    return allowed
