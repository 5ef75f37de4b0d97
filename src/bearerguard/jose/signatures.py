"""Signature checks a shade cheaper than PyJWT's, for the algorithms verified
on every request: ECDSA (a DPoP proof per request, an ES* token per miss).

PyJWT's ``ECAlgorithm.verify`` converts the raw ``r || s`` signature (RFC 7518
§3.4) to DER through generic helpers and builds a new ``ECDSA(hash())`` per
call; here the conversion is two ``int.from_bytes`` and the ``ECDSA`` object is
made once. The checks are the same: the exact length ``r || s`` must have for
the key's curve, then OpenSSL's verify.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ec import (
    ECDSA,
    EllipticCurvePrivateKey,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from jwt.algorithms import Algorithm, ECAlgorithm, get_default_algorithms

__all__ = ["fast_verifiers"]


#: Concrete classes of EC public keys seen (cryptography's own, one per backend).
_PUBLIC_KEY_TYPES: set[type] = set()


class _ECVerifier(ECAlgorithm):
    """PyJWT's ECAlgorithm (key parsing, curve checks) with a direct verify."""

    def __init__(self, hash_alg: type[Any]) -> None:
        super().__init__(hash_alg)
        self._ecdsa = ECDSA(hash_alg())

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        # isinstance against cryptography's abstract key classes runs
        # ABCMeta.__instancecheck__, a Python frame, on every verify: a public
        # key's concrete type is recognised once, then by a set lookup.
        if type(key) not in _PUBLIC_KEY_TYPES:
            if isinstance(key, EllipticCurvePrivateKey):
                key = key.public_key()
            elif isinstance(key, EllipticCurvePublicKey):
                _PUBLIC_KEY_TYPES.add(type(key))
        size = (key.curve.key_size + 7) // 8
        if len(sig) != 2 * size:
            return False
        der = encode_dss_signature(
            int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        )
        try:
            key.verify(der, msg, self._ecdsa)
        except InvalidSignature:
            return False
        return True


def fast_verifiers(names: frozenset[str]) -> dict[str, Algorithm]:
    """PyJWT's verifier for each of ``names``, the ECDSA ones replaced by :class:`_ECVerifier`."""
    verifiers: dict[str, Algorithm] = {}
    for name, algorithm in get_default_algorithms().items():
        if name not in names:
            continue
        if isinstance(algorithm, ECAlgorithm):
            algorithm = _ECVerifier(algorithm.hash_alg)
        verifiers[name] = algorithm
    return verifiers
