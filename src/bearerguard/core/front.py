"""What every front shares: :class:`Front`, the base of Flask's
``ResourceProtector`` and of the ASGI front.

A front holds a :class:`~bearerguard.core.guard.Guard` as ``guard`` and adds
its framework's side; registration, revocation, counters and settings are the
guard's, offered on the front (``require_oauth.revoke(token)``,
``require_oauth.cache``) as they were when the protector was all there was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from .guard import DEFAULT_CACHE, Guard

if TYPE_CHECKING:
    from ..cache import TokenCache
    from ..revocation import RevocationStore
    from ..validators.base import TokenValidator
    from .certificates import CertificateReader
    from .dpop import ProofChecker
    from .metadata import ResourceMetadata
    from .proxies import TrustedProxies
    from .stats import GuardStats

__all__ = ["Front", "GuardSetting", "HasGuard", "one_scope"]

T = TypeVar("T")


class HasGuard(Protocol):
    """A front: anything that decides through a guard."""

    guard: Guard


class GuardSetting(Generic[T]):
    """An attribute of the front's guard, read and written through the front::

    class ResourceProtector:
        realm: GuardSetting[str | None] = GuardSetting()
    """

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, front: None, owner: type) -> GuardSetting[T]: ...

    @overload
    def __get__(self, front: HasGuard, owner: type) -> T: ...

    def __get__(self, front: HasGuard | None, owner: type) -> T | GuardSetting[T]:
        if front is None:
            return self
        value: T = getattr(front.guard, self.name)
        return value

    def __set__(self, front: HasGuard, value: T) -> None:
        setattr(front.guard, self.name, value)


class Front:
    """A guard offered through a framework: the parameters are the guard's
    (see ``ResourceProtector``); a subclass adds requests and responses."""

    def __init__(
        self,
        *,
        realm: str | None = "api",
        cache: TokenCache | None = DEFAULT_CACHE,
        revocations: RevocationStore | None = None,
        allow_form_token: bool = False,
        allow_query_token: bool = False,
        max_token_length: int = 8192,
        clock: Callable[[], float] = time.time,
        dpop: str = "allowed",
        dpop_proofs: ProofChecker | None = None,
        dpop_public_url: str | None = None,
        dpop_nonce: bool | bytes = False,
        resource: str | ResourceMetadata | None = None,
        client_certificate: CertificateReader | None = None,
        trusted_proxies: TrustedProxies | Iterable[str] | None = None,
    ) -> None:
        #: The framework-neutral decision maker; this object is its front.
        self.guard = Guard(
            realm=realm,
            cache=cache,
            revocations=revocations,
            allow_form_token=allow_form_token,
            allow_query_token=allow_query_token,
            max_token_length=max_token_length,
            clock=clock,
            dpop=dpop,
            dpop_proofs=dpop_proofs,
            dpop_public_url=dpop_public_url,
            dpop_nonce=dpop_nonce,
            resource=resource,
            client_certificate=client_certificate,
            trusted_proxies=trusted_proxies,
        )

    realm: GuardSetting[str | None] = GuardSetting()
    clock: GuardSetting[Callable[[], float]] = GuardSetting()
    cache: GuardSetting[TokenCache | None] = GuardSetting()
    revocations: GuardSetting[RevocationStore] = GuardSetting()
    allow_form_token: GuardSetting[bool] = GuardSetting()
    allow_query_token: GuardSetting[bool] = GuardSetting()
    max_token_length: GuardSetting[int] = GuardSetting()
    #: The DPoP mode of views that name none (RFC 9449): allowed, required, disabled.
    dpop: GuardSetting[str] = GuardSetting()
    #: Called with each authorization's duration in seconds (metrics).
    observe_latency: GuardSetting[Callable[[float], None] | None] = GuardSetting()

    @property
    def validators(self) -> list[TokenValidator]:
        return self.guard.validators

    @property
    def metadata(self) -> ResourceMetadata | None:
        """The Protected Resource Metadata configuration (RFC 9728), or None."""
        return self.guard.metadata

    def metadata_response(self, method: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)`` for a request to the metadata document."""
        if self.guard.metadata is None:
            raise ValueError("this protector has no resource= to publish")
        return self.guard.metadata.response(self.guard, method)

    def _required(self, requirement: Any) -> Any:
        """``requirement``, its scopes recorded for ``scopes_supported`` (decoration time)."""
        if self.guard.metadata is not None:
            self.guard.metadata.add_scopes(requirement.hook_scopes)
        return requirement

    def register_token_validator(self, validator: TokenValidator) -> None:
        """Add a validator for its ``TOKEN_TYPE`` (see :meth:`Guard.register_token_validator`)."""
        self.guard.register_token_validator(validator)

    def stats(self) -> GuardStats:
        """Counters: validations, cache, revocations, validators (:class:`GuardStats`)."""
        return self.guard.stats()

    # -- revocation: the guard's (see :class:`~bearerguard.core.revoking.Revoking`)

    def revoke(self, token_string: str) -> None:
        self.guard.revoke(token_string)

    def revoke_jti(self, jti: str, exp: float) -> None:
        self.guard.revoke_jti(jti, exp)

    def revoke_subject(self, subject: str, before: float | None = None) -> None:
        self.guard.revoke_subject(subject, before)

    def revoke_client(self, client_id: str, before: float | None = None) -> None:
        self.guard.revoke_client(client_id, before)

    def evict(self, token_string: str) -> None:
        self.guard.evict(token_string)


def one_scope(
    scope: str | Iterable[str] | None, scopes: str | Iterable[str] | None
) -> str | Iterable[str] | None:
    """``scope`` (bearerguard's, positional) or ``scopes=`` (Authlib's keyword)."""
    if scopes is None:
        return scope
    if scope is not None:
        raise TypeError("pass scope or scopes=, not both")
    return scopes
