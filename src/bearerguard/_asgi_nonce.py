"""The next DPoP nonce on an ASGI success response (RFC 9449 §8.2), for each
entry of the ASGI front: the route decorator, the FastAPI dependency's
response and the middleware. Framework types only for the type checker: the
values are plain ASGI scopes and messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Message, Scope, Send

__all__ = ["nonce_of", "nonce_sender", "with_nonce"]


def nonce_of(scope: Scope) -> str | None:
    """The next DPoP nonce ``authorize`` left in the scope's state (no State object per hit)."""
    return scope["state"].get("dpop_nonce")  # type: ignore[no-any-return]


def with_nonce(request: Request, response: Response) -> Response:
    if (nonce := nonce_of(request.scope)) is not None:
        response.headers["DPoP-Nonce"] = nonce
    return response


def nonce_sender(send: Send, nonce: str) -> Send:
    """``send``, the app's response given the ``DPoP-Nonce`` header."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [*message.get("headers", ()), (b"dpop-nonce", nonce.encode("latin-1"))]
            message = {**message, "headers": headers}
        await send(message)

    return sending
