"""JSON Web Key Sets (RFC 7517): parsed once, looked up by ``kid``, fetched with care.

:class:`KeySet` turns a JWKS document into ready public-key objects, indexed so
a lookup is one dict access whatever the number of keys: a token's signature
check never re-imports a key (Authlib's validator re-imports the whole JWKS per
request). :class:`JWKSFetcher` keeps a :class:`KeySet` for an issuer, fetched
from its ``jwks_uri`` or discovered from its metadata (OpenID Connect
Discovery, RFC 8414); it refreshes before the set lapses, refetches for an
unknown ``kid`` at most once per interval for all threads, and keeps serving
the last good set while the endpoint fails (stale-if-error).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import Algorithm, HMACAlgorithm, get_default_algorithms

from ._http import FetchError, HTTPClient, check_url, default_client
from ._log import logger, throttled
from .core.values import json_object
from .errors import InvalidTokenError, SigningKeysUnavailableError, ValidatorUnavailableError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "JWKSFetcher",
    "KeySet",
    "VerifyKey",
    "json_object",
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
_VERIFIERS: dict[str, Algorithm] = {
    name: algorithm
    for name, algorithm in get_default_algorithms().items()
    if name in ASYMMETRIC_ALGORITHMS
}
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
