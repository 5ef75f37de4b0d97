"""Sender-constrained tokens: whether a token's ``cnf`` binding matches what
the request proves (RFC 7800 ``cnf``; RFC 9449 §6 ``jkt``; RFC 8705 §3
``x5t#S256``).

A validator states a token's binding in ``TokenInfo.confirmation``, or the
guard reads it from the token (:func:`confirmation_of`). A DPoP request
proves a key (:func:`check_binding`); a certificate-bound token needs the
client certificate of the request, on every request, cached or not
(:func:`check_certificate`). Only a binding to a certificate alone may come
with the Bearer scheme (RFC 8705 §3); one to a DPoP key never (RFC 9449 §7.2).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidTokenError

__all__ = [
    "DPOP_JKT_ATTRIBUTE",
    "X5T_S256",
    "X5T_S256_ATTRIBUTE",
    "bearer_confirmation",
    "check_binding",
    "check_certificate",
    "confirmation_of",
    "is_certificate_only",
]

#: The model attribute a database token's DPoP binding is read from.
DPOP_JKT_ATTRIBUTE = "dpop_jkt"
#: The model attribute a database token's certificate binding is read from:
#: the certificate's ``x5t#S256`` thumbprint (``certificates.x5t_s256``).
X5T_S256_ATTRIBUTE = "x5t_s256"
#: The ``cnf`` member of a certificate-bound token (RFC 8705 §3.1).
X5T_S256 = "x5t#S256"


def confirmation_of(token: Any) -> Mapping[str, Any] | None:
    """The ``cnf`` of a token object: a claims mapping's ``cnf``, or, for a
    model, ``{"jkt": token.dpop_jkt, "x5t#S256": token.x5t_s256}`` with the
    attributes it has and sets."""
    # dict first: the claims of every JWT and dict miss, a C type check, where
    # Mapping's is a Python frame (ABCMeta.__instancecheck__).
    if isinstance(token, (dict, Mapping)):
        cnf = token.get("cnf")
        return cnf if cnf is None or isinstance(cnf, Mapping) else {"?": cnf}
    cnf = {}
    jkt = getattr(token, DPOP_JKT_ATTRIBUTE, None)
    if jkt:
        cnf["jkt"] = jkt
    x5t = getattr(token, X5T_S256_ATTRIBUTE, None)
    if x5t:
        cnf[X5T_S256] = x5t
    return cnf or None


def is_certificate_only(confirmation: Mapping[str, Any]) -> bool:
    """True for a binding to a client certificate alone: Bearer may carry it."""
    return len(confirmation) == 1 and isinstance(confirmation.get(X5T_S256), str)


def bearer_confirmation(confirmation: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The binding a Bearer token may have: none, or a certificate's; any
    other (a DPoP key, an unknown member) is refused as the wrong scheme."""
    if confirmation is None or is_certificate_only(confirmation):
        return confirmation
    raise InvalidTokenError("sender-constrained token presented as a bearer token")


def check_binding(confirmation: Mapping[str, Any] | None, proved: Mapping[str, str]) -> None:
    """Refuse (``invalid_token``) unless ``confirmation`` names what ``proved`` holds.

    ``proved``: ``{"jkt": <thumbprint of the DPoP proof's key>}``. A token
    with no binding, or a binding of another kind, is refused: the DPoP scheme
    is for bound tokens only (RFC 9449 §7.1).
    """
    if not confirmation:
        raise InvalidTokenError("token is not bound to a DPoP key")
    for member, value in proved.items():
        bound = confirmation.get(member)
        if not isinstance(bound, str) or not hmac.compare_digest(bound.encode(), value.encode()):
            raise InvalidTokenError("DPoP proof key does not match the token's binding")


def check_certificate(confirmation: Mapping[str, Any], presented: str | None) -> None:
    """Refuse (``invalid_token``) unless the request's certificate thumbprint
    ``presented`` is the one ``confirmation["x5t#S256"]`` names."""
    bound = confirmation.get(X5T_S256)
    if not isinstance(bound, str):
        raise InvalidTokenError("invalid claim: cnf")
    if presented is None:
        raise InvalidTokenError("token is bound to a client certificate, and none was presented")
    if not hmac.compare_digest(bound.encode(), presented.encode()):
        raise InvalidTokenError("client certificate does not match the token's binding")
