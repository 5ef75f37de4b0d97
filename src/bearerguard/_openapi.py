"""FastAPI's view of a protected operation: the security schemes ``/openapi.json`` lists.

FastAPI is imported on first use only (``bearerguard.starlette`` serves plain
Starlette too). An operation lists each scheme it takes as one alternative of
its ``security`` (OpenAPI: any one of them suffices): ``bearerAuth`` unless it
takes DPoP only, ``dpopAuth`` unless DPoP is disabled for it.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

__all__ = ["scheme_parameters"]


@functools.cache
def _scheme_classes() -> tuple[type, type]:
    """FastAPI security schemes for bearer and DPoP tokens, defined when first needed."""
    from fastapi.openapi.models import HTTPBase, HTTPBearer
    from fastapi.security.base import SecurityBase

    class BearerScheme(SecurityBase):
        """HTTP bearer in ``/openapi.json``; checks nothing itself (the dependency does)."""

        def __init__(self) -> None:
            self.model = HTTPBearer(description="OAuth 2.0 bearer token (RFC 6750)")
            self.scheme_name = "bearerAuth"

        async def __call__(self) -> None:
            return None

    class DPoPScheme(SecurityBase):
        """DPoP in ``/openapi.json``; checks nothing itself either.

        OpenAPI has no DPoP type. ``type: http`` takes any scheme of the IANA
        HTTP Authentication Scheme registry, where RFC 9449 §12.2 put ``DPoP``:
        so ``scheme: DPoP``, which code generators and validators read as an
        ``Authorization: DPoP <token>`` header (Swagger UI lists it, cannot fill
        it in). An ``apiKey`` in the ``Authorization`` header would misname it:
        OpenAPI ignores an apiKey of that name. The proof header goes in the
        description: OpenAPI has no way to say a second header is signed.
        """

        def __init__(self) -> None:
            self.model = HTTPBase(
                scheme="DPoP",
                description=(
                    "OAuth 2.0 DPoP-bound token (RFC 9449): Authorization: DPoP <token>, "
                    "with a DPoP header holding a fresh proof signed by the token's key"
                ),
            )
            self.scheme_name = "dpopAuth"

        async def __call__(self) -> None:
            return None

    return BearerScheme, DPoPScheme


@functools.cache
def _schemes() -> tuple[Any, Any]:
    bearer, dpop = _scheme_classes()
    return bearer(), dpop()


def bearer_scheme() -> Any:
    """The HTTP bearer scheme object (one per process: FastAPI keys schemes by name)."""
    return _schemes()[0]


def scheme_parameters(mode: str, scopes: list[str]) -> list[inspect.Parameter]:
    """The dependency parameters that list the schemes of a view in DPoP ``mode``."""
    from fastapi import Security

    bearer, dpop = _schemes()
    kind, new = inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter
    parameters = []
    if mode != "required":
        parameters.append(new("bearer", kind, default=Security(bearer, scopes=scopes)))
    if mode != "disabled":
        parameters.append(new("dpop_scheme", kind, default=Security(dpop, scopes=scopes)))
    return parameters
