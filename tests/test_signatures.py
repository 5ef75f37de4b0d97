"""The direct ECDSA verifier (jose/signatures.py) agrees with PyJWT's on
every signature: good ones pass, tampered, truncated, padded ones fail."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import get_default_algorithms

from bearerguard.jose.signatures import fast_verifiers

CURVES = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}


@pytest.mark.parametrize("alg", sorted(CURVES))
def test_direct_ecdsa_verify_agrees_with_pyjwt(alg: str) -> None:
    private = ec.generate_private_key(CURVES[alg])
    public = private.public_key()
    pyjwt = get_default_algorithms()[alg]
    fast = fast_verifiers(frozenset({alg}))[alg]
    message = b"header.payload"
    good = pyjwt.sign(message, private)
    flipped = bytes([good[0] ^ 1]) + good[1:]
    other = pyjwt.sign(message, ec.generate_private_key(CURVES[alg]))
    cases = [
        (message, good),
        (message + b"x", good),
        (message, flipped),
        (message, good[:-1]),
        (message, good + b"\0"),
        (message, b"\0" * len(good)),
        (message, other),
        (message, b""),
    ]
    for signed, signature in cases:
        assert fast.verify(signed, public, signature) is pyjwt.verify(signed, public, signature)
    assert fast.verify(message, public, good) and fast.verify(message, private, good)
