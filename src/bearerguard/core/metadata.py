"""Protected Resource Metadata (RFC 9728): the document a client reads to learn
how to get a token for this API, and where it is served.

:class:`ResourceMetadata` is configuration; :meth:`ResourceMetadata.document`
derives the document from the guard it describes (its validators' issuers,
the scopes its views require, the token methods it accepts), so the two cannot
drift. The fronts serve :meth:`ResourceMetadata.response` at
:attr:`ResourceMetadata.path`; every 401 challenge and the 403
``insufficient_scope`` challenge point to :attr:`ResourceMetadata.url`
(``resource_metadata=``, §5.1). No framework here.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["WELL_KNOWN", "ResourceMetadata", "check_resource", "is_loopback", "metadata_url"]

#: RFC 9728 §3: the well-known URI suffix.
WELL_KNOWN = "/.well-known/oauth-protected-resource"
#: A DPoP front fills this in: ``(guard) -> {"dpop_signing_alg_values_supported": [...], ...}``.
#: Until one exists, the configured placeholders are published as given.
DpopMetadata = Callable[["Guard"], Mapping[str, Any]]


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and loopback IP literals (where http is allowed)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_resource(resource: str) -> str:
    """``resource`` if it is a usable resource identifier, else ValueError.

    RFC 9728 §1.2 / RFC 8707 §2: an absolute URL, https (http here only on
    loopback, for development), no fragment.
    """
    parts = urlsplit(resource)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("resource must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("resource must be https (http only on a loopback host)")
    if parts.fragment or "#" in resource:
        raise ValueError("resource must not have a fragment (RFC 9728 §1.2)")
    return resource


def metadata_url(resource: str) -> str:
    """The document's URL for ``resource`` (RFC 9728 §3.1): the well-known
    suffix inserted between the host and the path, the query kept::

        https://api.example.com/v1/mcp -> https://api.example.com/.well-known/oauth-protected-resource/v1/mcp
    """
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN}{path}{query}"


class ResourceMetadata:
    """What a protector publishes about itself (RFC 9728 §2), beyond what it derives.

    :param resource: the resource identifier (``check_resource``).
    :param authorization_servers: overrides the derived list (the JWT
        validators' issuers, the introspection validators' ``issuer``).
    :param scopes_supported: added to the scopes the views require.
    :param max_age: ``Cache-Control: max-age`` of the served document.
    :param signing_key: a private key (PEM bytes or a ``cryptography`` key)
        to publish ``signed_metadata`` (§2.2), with ``signing_alg``.
    :param extra: more members (``resource_name``, ``resource_documentation``,
        ``resource_policy_uri``, ``resource_tos_uri``,
        ``tls_client_certificate_bound_access_tokens``, ``dpop_*`` ...).
    """

    def __init__(
        self,
        resource: str,
        *,
        authorization_servers: Iterable[str] | None = None,
        scopes_supported: Iterable[str] = (),
        max_age: int = 3600,
        signing_key: Any = None,
        signing_alg: str = "ES256",
        signing_kid: str | None = None,
        clock: Callable[[], float] = time.time,
        **extra: Any,
    ) -> None:
        self.resource = check_resource(resource)
        #: The document's absolute URL, which every challenge names.
        self.url = metadata_url(resource)
        #: The path the fronts serve it at.
        self.path = urlsplit(self.url).path
        self.authorization_servers = (
            None if authorization_servers is None else list(authorization_servers)
        )
        self.scopes_supported = list(scopes_supported)
        self.max_age = int(max_age)
        self.signing_key, self.signing_alg, self.signing_kid = signing_key, signing_alg, signing_kid
        self.clock = clock
        for name in ("resource", "signed_metadata"):
            if name in extra:
                raise ValueError(f"{name} is not configurable here")
        _check_extra(extra)
        self.extra = dict(extra)
        #: The hook a DPoP implementation sets (see :data:`DpopMetadata`).
        self.dpop_metadata: DpopMetadata | None = None
        #: Scopes the decorated views require, added as they are decorated.
        self.required_scopes: dict[str, None] = {}

    def add_scopes(self, scopes: Iterable[str] | None) -> None:
        """Record scopes a view requires (called at decoration, never per request)."""
        for text in scopes or ():
            self.required_scopes.update(dict.fromkeys(text.split()))

    def document(self, guard: Guard) -> dict[str, Any]:
        """The metadata document (RFC 9728 §2), derived from ``guard``."""
        doc: dict[str, Any] = {"resource": self.resource}
        servers = self.authorization_servers
        if servers is None:
            servers = _issuers(guard)
        if servers:
            doc["authorization_servers"] = servers
        scopes = list(dict.fromkeys([*self.required_scopes, *self.scopes_supported]))
        if scopes:
            doc["scopes_supported"] = scopes
        methods = ["header"]
        if guard.allow_form_token:
            methods.append("body")
        if guard.allow_query_token:
            methods.append("query")
        doc["bearer_methods_supported"] = methods
        doc.update(_dpop_members(guard))
        if getattr(guard, "client_certificate", None) is not None:
            # RFC 9728 §2 / RFC 8705 §3: this API checks certificate-bound tokens.
            doc["tls_client_certificate_bound_access_tokens"] = True
        doc.update(self.extra)
        if self.dpop_metadata is not None:
            doc.update(self.dpop_metadata(guard))
        if self.signing_key is not None:
            doc["signed_metadata"] = self._sign(doc)
        return doc

    def _sign(self, doc: Mapping[str, Any]) -> str:
        """§2.2: the members as JWT claims, ``iss`` the resource (the signer)."""
        import jwt  # PyJWT, a dependency; imported only when signing is configured

        claims = {k: v for k, v in doc.items() if k != "signed_metadata"}
        claims["iss"] = self.resource
        claims["iat"] = int(self.clock())
        headers = {"kid": self.signing_kid} if self.signing_kid else None
        return jwt.encode(claims, self.signing_key, algorithm=self.signing_alg, headers=headers)

    def response(self, guard: Guard, method: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """``(status, headers, body)`` for a request to :attr:`path`: the JSON
        on GET/HEAD, the CORS preflight answer on OPTIONS, else 405."""
        cors = [("Access-Control-Allow-Origin", "*")]
        if method == "OPTIONS":
            allow = [
                ("Access-Control-Allow-Methods", "GET, OPTIONS"),
                ("Allow", "GET, HEAD, OPTIONS"),
            ]
            return 204, [*cors, *allow, ("Access-Control-Max-Age", "86400")], b""
        if method not in ("GET", "HEAD"):
            return 405, [("Allow", "GET, HEAD, OPTIONS")], b""
        body = json.dumps(self.document(guard)).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Cache-Control", f"public, max-age={self.max_age}"),
            *cors,
        ]
        return 200, headers, body


def _check_extra(extra: Mapping[str, Any]) -> None:
    """ValueError for a member RFC 9728 §2 forbids: a ``jwks_uri`` that is not
    https, ``none`` among ``resource_signing_alg_values_supported``."""
    jwks_uri = extra.get("jwks_uri")
    if jwks_uri is not None:
        parts = urlsplit(str(jwks_uri))
        if parts.scheme != "https" and not (parts.scheme == "http" and is_loopback(parts.hostname)):
            raise ValueError("jwks_uri must use https (RFC 9728 §2)")
    if "none" in extra.get("resource_signing_alg_values_supported", ()):
        raise ValueError("resource_signing_alg_values_supported must not list none (§2)")


def _issuers(guard: Guard) -> list[str]:
    """The registered validators' issuers (JWT, introspection), in order, once each."""
    found: dict[str, None] = {}
    for validator in guard.validators:
        issuer = getattr(validator, "issuer", None)
        if isinstance(issuer, str) and issuer:
            found[issuer] = None
    return list(found)


def _dpop_members(guard: Guard) -> dict[str, Any]:
    """The DPoP members (RFC 9728 §2), from the guard's DPoP configuration."""
    sender = getattr(guard, "sender", None)
    if sender is None or sender.mode == "disabled":
        return {}
    members: dict[str, Any] = {"dpop_signing_alg_values_supported": list(sender.proofs.algorithms)}
    if sender.mode == "required":
        members["dpop_bound_access_tokens_required"] = True
    return members
