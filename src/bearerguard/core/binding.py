"""Sender-constrained tokens: whether a token's ``cnf`` binding matches what
the request proves (RFC 7800 ``cnf``; RFC 9449 §6 ``jkt``).

A validator states a token's binding in ``TokenInfo.confirmation``; the guard
calls :func:`check_binding` with what the request proved. The extension point
for certificate-bound tokens (RFC 8705 §3): a ``x5t#S256`` member checked
against ``Credentials.client_certificate``, a second ``proved`` entry.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from ..errors import InvalidTokenError

__all__ = ["check_binding", "confirmation_of"]

#: The model attribute a database token's DPoP binding is read from.
DPOP_JKT_ATTRIBUTE = "dpop_jkt"


def confirmation_of(token: Any) -> Mapping[str, Any] | None:
    """The ``cnf`` of a token object: a claims mapping's ``cnf``, or
    ``{"jkt": token.dpop_jkt}`` for a model with a ``dpop_jkt`` attribute."""
    if isinstance(token, Mapping):
        cnf = token.get("cnf")
        return cnf if cnf is None or isinstance(cnf, Mapping) else {"?": cnf}
    jkt = getattr(token, DPOP_JKT_ATTRIBUTE, None)
    return {"jkt": jkt} if jkt else None


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
