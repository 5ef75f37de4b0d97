"""An issuer's signing keys, fetched from its ``jwks_uri`` or discovered, with care.

:class:`JWKSFetcher` keeps a :class:`~bearerguard.jose.keys.KeySet` for an
issuer, fetched from its ``jwks_uri`` or discovered from its metadata (OpenID
Connect Discovery, RFC 8414); it refreshes before the set lapses, refetches for
an unknown ``kid`` at most once per interval for all threads, and keeps serving
the last good set while the endpoint fails (stale-if-error).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .._forksafe import renew_after_fork
from .._log import logger, throttled
from ..core.values import json_object
from ..errors import SigningKeysUnavailableError, ValidatorUnavailableError
from ..transport import FetchError, HTTPClient, check_url, default_client
from .keys import KeySet

__all__ = ["JWKSFetcher", "metadata_urls"]


class _FetchFailed(Exception):
    """A fetch that gave no usable answer; the message is safe to log."""


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may live, in the order they are tried.

    OpenID Connect Discovery appends ``/.well-known/openid-configuration``;
    RFC 8414 §3.1 inserts ``/.well-known/oauth-authorization-server`` between
    the host and the path, and many servers also answer it appended.
    """
    base = issuer.rstrip("/")
    parts = urlsplit(base)
    inserted = urlunsplit(
        (parts.scheme, parts.netloc, "/.well-known/oauth-authorization-server" + parts.path, "", "")
    )
    urls = [base + "/.well-known/openid-configuration", inserted]
    appended = base + "/.well-known/oauth-authorization-server"
    if appended != inserted:
        urls.append(appended)
    return urls


class JWKSFetcher:
    """An issuer's signing keys from its ``jwks_uri``, or discovered from its metadata.

    Nothing is fetched until the first token needs a key. The set is served
    for ``lifespan`` seconds and refreshed during the last tenth of it by one
    request while the others keep using it. An unknown ``kid`` refetches at
    most once per ``min_refetch`` seconds, shared by all threads; a failed
    fetch is retried no sooner either. When the endpoint fails, the last good
    set keeps serving up to ``max_stale`` seconds past its lifespan; with no
    set at all, tokens are answered 503 (:class:`SigningKeysUnavailableError`).

    With ``loader``, the keys come from that callable instead of the network:
    a JWKS document configured in this process (``get_jwks()`` of
    ``bearerguard.rfc9068``), so its ``oct`` keys count. It is called under the
    same rules as a fetch; when it raises and no set is left to serve, tokens
    are answered 503 too, as for any failing user hook.
    """

    def __init__(
        self,
        issuer: str,
        jwks_uri: str | None = None,
        *,
        algorithms: frozenset[str] | None = None,
        lifespan: float = 600.0,
        min_refetch: float = 30.0,
        max_stale: float = 86400.0,
        timeout: float = 5.0,
        max_bytes: int = 256 * 1024,
        clock: Callable[[], float],
        http: HTTPClient | None = None,
        loader: Callable[[], Any] | None = None,
    ) -> None:
        if lifespan <= 0 or min_refetch < 0 or max_stale < 0 or timeout <= 0 or max_bytes <= 0:
            raise ValueError("JWKS lifespan, timeout and size must be positive")
        if loader is None:
            check_url(jwks_uri if jwks_uri is not None else issuer)
        elif jwks_uri is not None:
            raise ValueError("pass a loader or a jwks_uri, not both")
        self._loader = loader
        self.issuer = issuer
        self.configured_uri = jwks_uri
        self.algorithms = algorithms
        self.lifespan = lifespan
        self.min_refetch = min_refetch
        self.max_stale = max_stale
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self._http = http
        self._uri = jwks_uri
        self._lock = threading.Lock()
        # Held for a whole fetch: a fork during one must not leave it held.
        renew_after_fork(self, "_lock")
        self._keys: KeySet | None = None
        self._fetched_at = -math.inf
        self._refresh_at = -math.inf
        self._retry_at = -math.inf
        #: The initial load is not an unknown-kid refetch: a key rotated in
        #: right after start-up is looked for at once.
        self._kid_refetch_at = -math.inf
        #: Fetch attempts and successes, for stats and tests.
        self.attempts = 0
        self.successes = 0

    def __repr__(self) -> str:
        return f"<JWKSFetcher {self.issuer!r} keys={self._keys!r}>"

    @property
    def jwks_uri(self) -> str | None:
        """The configured or discovered ``jwks_uri`` (None until discovered)."""
        return self._uri

    # -- what validators call ---------------------------------------------------

    def keys(self) -> KeySet:
        """The current key set; fetches it first if there is none yet."""
        keys = self._keys
        if keys is not None and self.clock() < self._refresh_at:
            return keys  # the hot path: no lock, no allocation
        return self._refresh()

    def refetch(self, seen: KeySet) -> KeySet:
        """A newer set than ``seen`` for an unknown ``kid``: at most one fetch per interval.

        Threads that arrive while the fetch is in flight wait for it and share
        its result; later ones within the interval get the current set. No
        caller waits longer than ``timeout``, its own fetch included.
        """
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            return seen  # a fetch in flight outlasted our time: as a failed refetch
        try:
            if self._keys is not None and self._keys is not seen:
                return self._keys
            now = self.clock()
            if now < self._kid_refetch_at:
                return seen
            self._kid_refetch_at = now + self.min_refetch
            self._fetch("unknown kid", deadline)
            return self._keys if self._keys is not None else seen
        finally:
            self._lock.release()

    # -- freshness ----------------------------------------------------------------

    def _usable(self, now: float) -> bool:
        return self._keys is not None and now < self._fetched_at + self.lifespan + self.max_stale

    def _refresh(self) -> KeySet:
        # One deadline for this caller, whether it waits for a fetch in
        # flight, makes one, or both: never longer than the timeout.
        deadline = time.monotonic() + self.timeout
        now = self.clock()
        if self._usable(now):
            # Refresh ahead (or stale): one request fetches, the others keep the set.
            if now >= self._retry_at and self._lock.acquire(blocking=False):
                try:
                    now = self.clock()
                    if now >= self._refresh_at and now >= self._retry_at:
                        self._fetch("refresh", deadline)
                finally:
                    self._lock.release()
            keys = self._keys
            if keys is not None and self._usable(self.clock()):
                return keys
        # No set to serve: wait for the fetch in flight, or make one.
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise SigningKeysUnavailableError()
        try:
            now = self.clock()
            if not self._usable(now) and now >= self._retry_at:
                self._fetch("load", deadline)
            keys = self._keys
            if keys is None or not self._usable(self.clock()):
                if self._loader is not None:
                    raise ValidatorUnavailableError()
                raise SigningKeysUnavailableError()
            return keys
        finally:
            self._lock.release()

    # -- fetching (always under self._lock) ------------------------------------------

    def _fetch(self, reason: str, deadline: float) -> None:
        """Fetch the set, discovery included, by ``deadline`` (``time.monotonic``)."""
        self.attempts += 1
        try:
            keys = self._load(deadline)
        except _FetchFailed as failure:
            now = self.clock()
            self._retry_at = now + self.min_refetch
            if self.configured_uri is None:
                self._uri = None  # rediscover next time: the jwks_uri may have moved
            if self._usable(now):
                state = f"serving keys fetched {now - self._fetched_at:.0f} s ago"
            else:
                state = "no signing keys: answering 503"
            throttled(
                f"jwks-fail:{self.issuer}",
                "JWKS for issuer %s: %s fetch failed (%s); %s",
                self.issuer,
                reason,
                str(failure),  # not the exception: a record must not keep its traceback alive
                state,
            )
            return
        now = self.clock()
        self._keys = keys
        self._fetched_at = now
        self._refresh_at = now + self.lifespan * 0.9
        self._retry_at = -math.inf
        self.successes += 1
        logger.debug("JWKS for issuer %s: %d keys (%s)", self.issuer, len(keys), reason)

    def _load(self, deadline: float) -> KeySet:
        if self._loader is not None:
            return self._load_local()
        uri = self._uri
        if uri is None:
            uri = self._uri = self._discover(deadline)
        try:
            keys = KeySet.parse(self._get_json(uri, deadline), self.algorithms, uri)
        except ValueError as exc:
            raise _FetchFailed(f"{uri}: {exc}") from None
        if not keys:
            raise _FetchFailed("no usable signing key in the set")
        return keys

    def _load_local(self) -> KeySet:
        assert self._loader is not None
        try:
            document = self._loader()
        except Exception as exc:
            # A user's hook: only the type is logged (its text may quote a secret).
            raise _FetchFailed(f"the key loader raised {type(exc).__name__}") from None
        try:
            keys = KeySet.parse(document, self.algorithms, "the key loader", local=True)
        except ValueError as exc:
            raise _FetchFailed(f"the key loader: {exc}") from None
        if not keys:
            raise _FetchFailed("no usable signing key in the set")
        return keys

    def _discover(self, deadline: float) -> str:
        failures = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = self._get_json(url, deadline)
            except _FetchFailed as failure:
                failures.append(f"{url}: {failure}")
                continue
            if metadata.get("issuer") != self.issuer:
                # A document at the issuer's own address naming another issuer
                # is a misconfiguration or an attack (RFC 8414 §3.3).
                raise _FetchFailed(f"metadata at {url} names another issuer")
            uri = metadata.get("jwks_uri")
            if not isinstance(uri, str):
                raise _FetchFailed(f"metadata at {url} has no jwks_uri")
            try:
                return check_url(uri)
            except ValueError as exc:
                raise _FetchFailed(f"metadata at {url}: {exc}") from None
        raise _FetchFailed("discovery failed: " + "; ".join(failures))

    def _get_json(self, url: str, deadline: float) -> dict[str, Any]:
        http = self._http if self._http is not None else default_client()
        left = deadline - time.monotonic()
        if left <= 0:
            raise _FetchFailed(f"no time left for {url} (fetch timeout {self.timeout} s)")
        try:
            response = http.request("GET", url, timeout=left, max_bytes=self.max_bytes)
        except (FetchError, ValueError) as exc:
            raise _FetchFailed(str(exc)) from None
        if response.status != 200:
            raise _FetchFailed(f"HTTP {response.status} from {url}")
        document = json_object(response.body)
        if document is None:
            raise _FetchFailed(f"{url} did not answer a JSON object")
        return document
