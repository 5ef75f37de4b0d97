"""Opaque tokens checked by asking the authorization server (RFC 7662).

A cache miss POSTs the token to the introspection endpoint, authenticated as
this resource server; the answer is cached by the protector until
``min(ttl, exp)``, and a refusal for the cache's ``negative_ttl``. An endpoint
that cannot answer is an outage, not a verdict: 503, never cached, so the
first request after it recovers is introspected afresh.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal, NoReturn
from urllib.parse import quote, urlencode

from .._forksafe import renew_after_fork
from .._log import throttled
from ..core.binding import is_certificate_only
from ..core.credentials import digest
from ..core.frozen import ReadOnlyClaims
from ..core.tokeninfo import replaced
from ..core.values import strict_json
from ..errors import (
    InvalidTokenError,
    TokenExpiredError,
    UnknownTokenError,
    ValidatorUnavailableError,
)

# One meaning of "audience" for both validators.
from ..jose.claims import AnyAudience as _AnyAudience
from ..jose.claims import audiences_of as _audiences
from ..transport import FetchError, HTTPClient, check_url, default_client
from ._shared_answers import AnswerCache, SharedAnswers, check_secret
from .base import TokenInfo, TokenValidator, describe_token, number_or_none

__all__ = ["AnswerCache", "IntrospectionToken", "IntrospectionTokenValidator"]

AuthMethod = Literal["client_secret_basic", "client_secret_post"]


class IntrospectionToken(ReadOnlyClaims):
    """``current_token`` for an introspected token: the server's answer.

    A mapping (``current_token["sub"]``, ``current_token.get("username")``)
    with Authlib's ``get_scope()``. It is shared by every request presenting
    the token while it is cached, so it refuses changes, and so do the lists
    and objects in it; ``dict(token)`` is a private, mutable copy of the top level.
    """

    __slots__ = ()

    def get_scope(self) -> str:
        """The granted scopes, space-separated (RFC 7662 ``scope``)."""
        scope = self.get("scope")
        return scope if isinstance(scope, str) else ""


class IntrospectionTokenValidator(TokenValidator):
    """Validate opaque tokens with the authorization server's introspection.

    Example::

        require_oauth.register_token_validator(
            IntrospectionTokenValidator(
                "https://as.example.com/introspect",
                client_id="resource-server",
                client_secret=os.environ["INTROSPECTION_SECRET"],
                audience="https://api.example.com",
            )
        )

    ``active: false``, or a 400 whose RFC 6749 §5.2 error refuses the token,
    is a 401 ``invalid_token``, negative-cached (a later opaque validator may
    try the token); an outage is a 503, never cached.
    ``active: true`` gives ``current_token``, the response as an
    :class:`IntrospectionToken`; its ``exp`` is enforced.
    Refused: ``token_use: refresh_token``, a ``token_type`` other than
    ``Bearer`` (or ``DPoP`` with a proof), and a ``cnf`` (sender-constrained)
    token presented without its DPoP proof (RFC 9449 §6.2, §7.2); a ``cnf``
    naming a client certificate alone (``x5t#S256``, RFC 8705) is kept in
    ``confirmation`` for the guard to check against the request's certificate. Without
    ``exp``, a revocation at the server is seen when the cache entry ends:
    keep ``ttl`` short. A ``shared_cache`` answer is trusted everywhere for
    at most ``shared_ttl`` from its fetch, the revocation lag then.

    :param endpoint: the introspection URL; https, or http to a loopback host.
    :param client_id: this resource server's client id at the server.
    :param client_secret: its secret, sent with ``auth_method``.
    :param auth_method: ``client_secret_basic`` (RFC 6749 §2.3.1) or
        ``client_secret_post``.
    :param issuer: if set, the answer's ``iss`` must be exactly this.
    :param audience: this resource server's identifier(s), one of which the
        answer's ``aud`` must contain (RFC 9700 §2.3); not given: the
        protector's ``resource=`` (RFC 8707), and with neither, registering
        raises. :data:`~bearerguard.validators.jwt.ANY_AUDIENCE` skips it.
    :param timeout: seconds for the whole exchange.
    :param leeway: seconds of clock skew allowed for ``nbf`` (none for ``exp``).
    :param http: the :class:`~bearerguard.transport.HTTPClient` (connection reuse).
    :param shared_cache: an :class:`AnswerCache` such as
        ``bearerguard.redis.RedisIntrospectionCache``: N workers make one call
        per token. Entries are MAC'd with a key from ``client_secret`` (16
        bytes at least), expiry included: Redis write access alone can neither
        forge an answer nor keep one alive (``PERSIST``).
    :param shared_ttl: the longest any process trusts an answer, from when it
        was fetched (at most until its ``exp``): the revocation lag with a
        shared cache. Inactive answers: ``shared_negative_ttl``.
    :param clock: wall-clock seconds.
    """

    kind = "opaque"

    def __init__(
        self,
        endpoint: str,
        client_id: str,
        client_secret: str,
        *,
        auth_method: AuthMethod = "client_secret_basic",
        issuer: str | None = None,
        audience: str | Collection[str] | _AnyAudience | None = None,
        timeout: float = 5.0,
        leeway: float = 60.0,
        max_bytes: int = 256 * 1024,
        http: HTTPClient | None = None,
        shared_cache: AnswerCache | None = None,
        shared_ttl: float = 300.0,
        shared_negative_ttl: float = 5.0,
        clock: Callable[[], float] = time.time,
        realm: str | None = None,
        **extra_attributes: Any,
    ) -> None:
        super().__init__(realm, **extra_attributes)
        self.endpoint = check_url(endpoint)
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError(f"unsupported auth_method {auth_method!r}")
        check_secret(client_secret, shared=shared_cache is not None)
        self.client_id = client_id
        self.auth_method = auth_method
        self._secret = client_secret
        self.issuer = issuer
        #: No audience given: the protector's ``resource`` (RFC 8707), set at
        #: registration; until then no answer's ``aud`` matches (fail closed).
        self.audience_from_resource = audience is None
        self.audiences = frozenset() if audience is None else _audiences(audience)
        self.timeout = timeout
        self.leeway = leeway
        self.max_bytes = max_bytes
        self.http = http
        self.clock = clock
        self.shared_cache = shared_cache
        self.shared_ttl = shared_ttl
        self.shared_negative_ttl = shared_negative_ttl
        self._shared = (
            SharedAnswers(shared_cache, client_secret, endpoint, client_id, clock)
            if shared_cache is not None
            else None
        )
        counters = ("calls", "active", "inactive", "failures")
        self._counts = dict.fromkeys(counters + (("shared_hits",) if shared_cache else ()), 0)
        self._counts_lock = threading.Lock()
        renew_after_fork(self, "_counts_lock")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} endpoint={self.endpoint!r}>"

    def bind(self, guard: Any) -> None:
        """Take the protector's ``resource`` as the audience when none was given."""
        if self.audience_from_resource:
            resource = getattr(guard, "resource", None)
            if not resource:
                raise ValueError(
                    "audience is required (RFC 9700 §2.3): pass audience= or give the"
                    " protector resource=; ANY_AUDIENCE accepts every audience"
                )
            self.audiences = frozenset((resource,))

    # -- the cache-miss path ------------------------------------------------------

    def validate(self, token_string: str) -> TokenInfo:
        """Introspect ``token_string``; refuse it unless it is active and ours."""
        return self._validated(token_string, bound=False)

    def validate_bound(self, token_string: str) -> TokenInfo:
        """:meth:`validate` for a token sent with a DPoP proof: an answer's
        ``cnf`` (RFC 9449 §6.2) becomes ``confirmation``, for the guard to check."""
        return self._validated(token_string, bound=True)

    def _validated(self, token_string: str, *, bound: bool) -> TokenInfo:
        key = digest(token_string).hex()
        shared = self._shared.get(key) if self._shared is not None else None
        if shared is not None:
            self._count("shared_hits")
        if shared is None:
            answer = self.introspect(token_string)
            active = answer.get("active")
            if active is not True and active is not False:
                self._unavailable("the answer has no boolean 'active'")
            self._count("active" if active else "inactive")
            until = None
            if self._shared is not None:
                ttl = self.shared_ttl if answer["active"] else self.shared_negative_ttl
                until = self._shared.put(key, answer, ttl)
        else:
            answer, until = shared
        if not answer["active"]:
            raise UnknownTokenError("token is not active")
        self._check(answer, bound)
        info = describe_token(IntrospectionToken(answer))
        if answer.get("cnf") is not None:
            info = replaced(info, confirmation=answer["cnf"])
        # No process trusts a shared answer longer than it is shared for.
        return info if until is None else replaced(info, cache_until=until)

    def introspect(self, token_string: str) -> dict[str, Any]:
        """POST the token (RFC 7662 §2.1); the answer as a JSON object, or 503.

        A 400 with an RFC 6749 §5.2 error about the request or the token
        (``invalid_request``, ``unsupported_token_type``, ...) is the server
        refusing this token: it reads as ``{"active": false}``. A 400 of any
        other shape, 5xx, and 401/403 (our own credentials refused) are 503.
        """
        form = {"token": token_string, "token_type_hint": "access_token"}
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = self._basic()
        else:
            form.update(client_id=self.client_id, client_secret=self._secret)
        self._count("calls")
        try:
            response = (self.http or default_client()).request(
                "POST",
                self.endpoint,
                body=urlencode(form).encode(),
                headers=headers,
                timeout=self.timeout,
                max_bytes=self.max_bytes,
            )
        except FetchError as exc:
            self._unavailable(f"no answer: {type(exc.__cause__ or exc).__name__}")
        if response.status == 400 and _refuses_the_token(response.body):
            # RFC 7662 §2.2 wants "active": false for a token the server will
            # not describe; some answer an RFC 6749 §5.2 error instead. Either
            # way a verdict on the token, cached as one; not an outage.
            throttled(
                f"introspection-400:{self.endpoint}",
                "introspection at %s refused a token with HTTP 400; taken as inactive",
                self.endpoint,
                level=logging.INFO,
            )
            return {"active": False}
        if response.status in (401, 403):
            self._unavailable(f"HTTP {response.status}: check client_id and client_secret")
        if response.status != 200:
            self._unavailable(f"HTTP {response.status}")
        try:
            # NaN and Infinity are not JSON (RFC 8259 §6); too-long integers
            # raise ValueError too.
            answer = strict_json(response.body)
        except ValueError:
            self._unavailable("the answer is not JSON")
        if not isinstance(answer, dict):
            self._unavailable("the answer is not a JSON object")
        return answer

    def _basic(self) -> str:
        # RFC 6749 §2.3.1: each part form-urlencoded before the base64.
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def _check(self, answer: Mapping[str, Any], bound: bool = False) -> None:
        for claim in ("exp", "nbf", "iat"):
            if answer.get(claim) is not None and number_or_none(answer[claim]) is None:
                _refuse(f"malformed {claim}")
        now = self.clock()
        exp = number_or_none(answer.get("exp"))
        if exp is not None and now >= exp:
            raise TokenExpiredError()
        nbf = number_or_none(answer.get("nbf"))
        if nbf is not None and nbf > now + self.leeway:
            _refuse("token not yet valid")
        token_type = answer.get("token_type")
        if token_type is not None and str(token_type).lower() not in _TOKEN_TYPES[bound]:
            _refuse("not a bearer token")
        if answer.get("token_use") == "refresh_token":
            _refuse("not an access token")
        cnf = answer.get("cnf")
        # A certificate binding alone comes with Bearer (RFC 8705 §3): kept for the guard.
        if cnf is not None and not (isinstance(cnf, dict) and (bound or is_certificate_only(cnf))):
            _refuse("sender-constrained token")
        if self.issuer is not None and answer.get("iss") != self.issuer:
            _refuse("issuer mismatch")
        if self.audiences is not None:
            aud = answer.get("aud")
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if self.audiences.isdisjoint(v for v in values if isinstance(v, str)):
                _refuse("audience mismatch")

    def _unavailable(self, reason: str) -> NoReturn:
        self._count("failures")
        # Our own words only: a server's error text may quote the token.
        throttled(
            f"introspection:{self.endpoint}",
            "introspection at %s failed (%s); answering 503",
            self.endpoint,
            reason,
        )
        raise ValidatorUnavailableError()

    def _count(self, name: str) -> None:
        with self._counts_lock:
            self._counts[name] += 1

    def stats(self) -> dict[str, int]:
        """Introspection calls, and their outcomes: active, inactive, failures."""
        with self._counts_lock:
            return dict(self._counts)


#: RFC 6749 §5.2 (and RFC 7009 §2.2.1) error codes that refuse the request or
#: its token. ``invalid_client`` and ``unauthorized_client`` are about our
#: credentials, so a 503 like 401 and 403; an unknown code is too.
_TOKEN_ERRORS = frozenset(
    {"invalid_request", "invalid_token", "invalid_grant", "unsupported_token_type"}
)


#: The ``token_type`` an answer may state, as a bearer token or with a proof.
_TOKEN_TYPES = {False: frozenset({"bearer"}), True: frozenset({"bearer", "dpop"})}


def _refuses_the_token(body: bytes) -> bool:
    """True for an RFC 6749 §5.2 error body whose ``error`` is about the token."""
    try:
        error = strict_json(body)
    except ValueError:
        return False
    code = error.get("error") if isinstance(error, dict) else None
    return isinstance(code, str) and code in _TOKEN_ERRORS


def _refuse(description: str) -> NoReturn:
    raise InvalidTokenError(description)
