"""A bounded concurrency soak: 16 threads, real time, revocations and a key rotation.

Sixteen threads send a mix of valid, expired, revoked, forged and junk tokens
(JWTs verified against a real JWKS server on 127.0.0.1, and opaque tokens)
while one thread revokes tokens, ``jti``\\ s and subjects, and another rotates
the signing key. Tokens live one to three real seconds, so cached entries
expire under load. Every response is recorded and checked afterwards:

* no 500, no 503, and a refusal's status matches its RFC 6750 code;
* a forged, junk or expired token is never accepted: a 200 means the token's
  ``exp`` was after the moment the request was sent;
* a token is never accepted by a request sent after ``revoke()`` returned;
* no deadlock: every thread ends within a bound;
* the counters add up: each request that carried a token is exactly one of
  a cache hit, a miss (the leader of a validation), a negative hit or a
  single-flight wait, and the protector's outcome counters match the statuses;
* forged ``kid``\\ s cost at most one JWKS fetch per ``jwks_min_refetch``.

A second test streams distinct tokens through the protector under
``tracemalloc`` and checks that memory stops growing once the caches are full.
Two deterministic tests pin down the races the soak found, so a regression
fails every run, not one in a few.

Runs ``BEARERGUARD_SOAK_SECONDS`` seconds (default 5; ``make test`` uses the
default). Set it to 300 for a real soak.
"""

from __future__ import annotations

import gc
import os
import random
import secrets
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask

from bearerguard import ResourceProtector, TokenCache, TokenExpiredError
from bearerguard.validators import (
    BearerTokenValidator,
    JWTBearerTokenValidator,
    TokenInfo,
    TokenValidator,
)

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    cached_keypair,
    fetches,
    forge,
    loopback_client,
    make_token,
)
from .servers import LoopbackServer

pytestmark = pytest.mark.soak

SOAK_SECONDS = float(os.environ.get("BEARERGUARD_SOAK_SECONDS", "5"))
THREADS = 16
OLD_KEY = cached_keypair("ES256", "soak-1")
NEW_KEY = cached_keypair("ES256", "soak-2")
ATTACKER = Keypair.generate("ES256")
MIN_REFETCH = 0.5
LIFESPAN = 2.0


@dataclass(frozen=True)
class Record:
    kind: str
    token: str
    exp: float | None
    sent_wall: float
    sent_mono: float
    status: int
    error: str | None
    description: str | None
    signer: str | None = None


@dataclass
class Issued:
    """A token the test issued: what revocation needs to know of it."""

    token: str
    exp: float
    jti: str | None = None
    subject: str | None = None
    signer: str | None = None


class OpaqueStore(BearerTokenValidator):
    """Opaque tokens in a dict; CPython's dict reads are safe against one writer."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, dict[str, Any]] = {}

    def authenticate_token(self, token_string: str) -> Any:
        return self.tokens.get(token_string)


@dataclass
class Soak:
    protector: ResourceProtector
    app: Flask
    server: LoopbackServer
    stub: IssuerStub
    opaque: OpaqueStore
    signer: list[Keypair] = field(default_factory=lambda: [OLD_KEY])
    lock: threading.Lock = field(default_factory=threading.Lock)
    jwts: list[Issued] = field(default_factory=list)
    opaques: list[Issued] = field(default_factory=list)
    #: token -> time.monotonic() when revoke()/revoke_jti()/revoke_subject() returned.
    revoked_at: dict[str, float] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    stop_at: float = 0.0

    # -- tokens ---------------------------------------------------------------------

    def mint_jwt(self, rng: random.Random, lifetime: int) -> Issued:
        now = time.time()
        key = self.signer[0]
        jti, subject = secrets.token_hex(6), f"user-{rng.randrange(10**9)}"
        token = make_token(key, now=now, exp=int(now) + lifetime, jti=jti, sub=subject)
        return Issued(token, int(now) + lifetime, jti, subject, key.kid)

    def mint_opaque(self, rng: random.Random, lifetime: int) -> Issued:
        token, exp = f"op-{secrets.token_urlsafe(12)}", int(time.time()) + lifetime
        self.opaque.tokens[token] = {"scope": "profile", "exp": exp, "sub": f"o-{token}"}
        return Issued(token, exp)

    def live(self, rng: random.Random, pool: list[Issued], mint: Callable[..., Issued]) -> Issued:
        """Usually a recent token (cache hits, and misses of many threads at
        once on the newest), sometimes a fresh one."""
        if rng.random() < 0.25 or not pool:
            issued = mint(rng, rng.randint(1, 3))
            with self.lock:
                pool.append(issued)
                del pool[:-64]
            return issued
        with self.lock:
            return pool[-1] if rng.random() < 0.3 else rng.choice(pool[-32:])

    def next_request(self, rng: random.Random) -> tuple[str, str | None, Issued | None]:
        """(kind, Authorization header, the token's facts if it was issued)."""
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "valid-jwt":
            issued = self.live(rng, self.jwts, self.mint_jwt)
        elif kind == "valid-opaque":
            issued = self.live(rng, self.opaques, self.mint_opaque)
        elif kind == "expired-jwt":
            now = time.time() - rng.randint(1, 600)
            key = self.signer[0]
            issued = Issued(make_token(key, now=now - 300, exp=int(now)), int(now))
        elif kind == "expired-opaque":
            issued = self.mint_opaque(rng, -rng.randint(0, 600))
        elif kind == "revoked":
            with self.lock:
                gone = [t for t in self.jwts + self.opaques if t.token in self.revoked_at]
            issued = rng.choice(gone) if gone else self.mint_opaque(rng, -1)
        else:
            return kind, hostile(kind, rng, self.signer[0]), None
        return kind, f"Bearer {issued.token}", issued

    # -- the threads -------------------------------------------------------------------

    def send(self, rng: random.Random) -> None:
        client = self.app.test_client()
        while time.monotonic() < self.stop_at:
            kind, header, issued = self.next_request(rng)
            sent_wall, sent_mono = time.time(), time.monotonic()
            environ = {} if header is None else {"HTTP_AUTHORIZATION": header}
            response = client.get("/r", environ_overrides=environ)
            body = response.get_json(silent=True) or {}
            self.records.append(
                Record(
                    kind,
                    header or "",
                    issued.exp if issued is not None else None,
                    sent_wall,
                    sent_mono,
                    response.status_code,
                    body.get("error"),
                    body.get("error_description"),
                    issued.signer if issued is not None else None,
                )
            )

    def revoke(self, rng: random.Random) -> None:
        protector = self.protector
        while time.monotonic() < self.stop_at:
            time.sleep(0.01)
            with self.lock:
                pool = rng.choice([self.jwts, self.opaques])
                if not pool:
                    continue
                issued = rng.choice(pool[-32:])
            how = rng.choice(["token", "token", "jti", "subject"])
            if how == "jti" and issued.jti is not None:
                protector.revoke_jti(issued.jti, issued.exp)
            elif how == "subject" and issued.subject is not None:
                protector.revoke_subject(issued.subject)
            else:
                protector.revoke(issued.token)
            done = time.monotonic()
            with self.lock:
                self.revoked_at.setdefault(issued.token, done)

    def rotate(self, started: float) -> None:
        third = SOAK_SECONDS / 3
        self._sleep_until(started + third)
        self.stub.publish(OLD_KEY, NEW_KEY)  # publish first, sign with it a little later
        self._sleep_until(started + third + 0.3)
        self.signer[0] = NEW_KEY
        self._sleep_until(started + 2 * third)
        self.stub.publish(NEW_KEY)  # the old key is withdrawn

    def _sleep_until(self, moment: float) -> None:
        time.sleep(max(0.0, min(moment, self.stop_at) - time.monotonic()))


KINDS = [
    "valid-jwt",
    "valid-opaque",
    "expired-jwt",
    "expired-opaque",
    "revoked",
    "forged-signature",
    "forged-kid",
    "forged-none",
    "forged-payload",
    "junk-token",
    "junk-header",
]
WEIGHTS = [30, 20, 5, 5, 8, 4, 4, 2, 3, 12, 7]
ACCEPTABLE = {"valid-jwt", "valid-opaque"}


def hostile(kind: str, rng: random.Random, key: Keypair) -> str | None:
    now = time.time()
    if kind == "forged-signature":  # the real kid, another private key
        return "Bearer " + make_token(Keypair("ES256", key.kid, ATTACKER.private_key), now=now)
    if kind == "forged-kid":  # a new kid each time: a refetch storm
        forger = Keypair("ES256", f"forged-{rng.randrange(10**9)}", ATTACKER.private_key)
        return "Bearer " + make_token(forger, now=now)
    if kind == "forged-none":
        return "Bearer " + forge({"alg": "none", "kid": key.kid}, {"iss": ISSUER, "exp": now + 60})
    if kind == "forged-payload":  # a real token's signature under a widened payload
        head, _, signature = make_token(key, now=now, scope="profile").split(".")
        other = make_token(key, now=now, scope="profile admin", sub="root").split(".")[1]
        return f"Bearer {head}.{other}.{signature}"
    if kind == "junk-token":
        return "Bearer " + secrets.token_urlsafe(rng.randint(1, 64))
    return rng.choice(
        [
            None,
            "",
            "Bearer",
            "Bearer  ",
            "Basic dXNlcjpwdw==",
            "Bearer a b",
            "Bearer ä",
            "Bearer\tx",
        ]
    )


@pytest.fixture
def soak(serve: Callable[[Any], LoopbackServer]) -> Iterator[Soak]:
    stub = IssuerStub(OLD_KEY)
    server = serve(stub)
    http = loopback_client()
    protector = ResourceProtector(
        cache=TokenCache(ttl=2.0, maxsize=5000, negative_ttl=0.5, negative_maxsize=5000)
    )
    protector.register_token_validator(
        JWTBearerTokenValidator(
            ISSUER,
            AUDIENCE,
            jwks_uri=server.url + JWKS_PATH,
            jwks_lifespan=LIFESPAN,
            jwks_min_refetch=MIN_REFETCH,
            fetch_timeout=2.0,
            http=http,
        )
    )
    opaque = OpaqueStore()
    protector.register_token_validator(opaque)
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    yield Soak(protector, app, server, stub, opaque)
    http.close()


def run(soak: Soak) -> None:
    started = time.monotonic()
    soak.stop_at = started + SOAK_SECONDS
    threads = [
        threading.Thread(target=soak.send, args=(random.Random(i),), name=f"soak-{i}")
        for i in range(THREADS)
    ]
    threads.append(threading.Thread(target=soak.revoke, args=(random.Random(99),)))
    threads.append(threading.Thread(target=soak.rotate, args=(started,)))
    for thread in threads:
        thread.daemon = True  # a deadlock must fail the test, not hang the run
        thread.start()
    for thread in threads:
        thread.join(max(0.0, soak.stop_at + 10 - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads still running 10 s after the end (deadlock?): {stuck}"


def test_soak_invariants_hold_on_every_response(soak: Soak) -> None:
    run(soak)
    records = soak.records
    revoked_at = soak.revoked_at

    for r in records:
        assert r.status in (200, 400, 401, 403), r
        expected_error = {400: "invalid_request", 403: "insufficient_scope"}.get(r.status)
        if r.status == 401:
            assert r.error in (
                "invalid_token",
                "missing_authorization",
                "unsupported_token_type",
            ), r
        elif expected_error is not None:
            assert r.error == expected_error, r
        if r.status != 200:
            continue
        assert r.kind in ACCEPTABLE, f"accepted a {r.kind} token: {r}"
        assert r.exp is not None and r.sent_wall < r.exp, f"accepted after exp: {r}"
        token = r.token.partition(" ")[2]
        revoked = revoked_at.get(token)
        assert revoked is None or r.sent_mono <= revoked, (
            f"accepted {r.sent_mono - revoked:.4f}s after revoke() returned: {r}"
        )

    # The run did what it claims: enough of everything happened.
    statuses = Counter((r.kind, r.status) for r in records)
    described = Counter(r.description for r in records)
    assert statuses[("valid-jwt", 200)] > 50 and statuses[("valid-opaque", 200)] > 50, statuses
    assert described["token revoked"] > 0 and described["token expired"] > 0, described
    assert any(r.signer == NEW_KEY.kid and r.status == 200 for r in records), "rotation"
    late_expiry = [r for r in records if r.description == "token expired" and r.kind in ACCEPTABLE]
    assert late_expiry, "no live token was seen to expire under load"

    # Counters: each request that carried a token is exactly one of these.
    cache = soak.protector.stats()["cache"]
    uncarried = ("invalid_request", "missing_authorization", "unsupported_token_type")
    carried = sum(1 for r in records if r.error not in uncarried)
    events = cache["hits"] + cache["misses"] + cache["negative_hits"] + cache["single_flight_waits"]
    assert events == carried, (cache, carried)
    validations = soak.protector.stats()["validations"]
    by_error = Counter(r.error or "accepted" for r in records)
    refused = dict(validations["refused"])
    refused["missing_authorization"] = refused.pop("missing_token", 0)
    assert validations["accepted"] == by_error.pop("accepted", 0)
    assert refused == {k: v for k, v in by_error.items() if v}, (refused, by_error)

    # Forged kids: one refetch per interval at most, plus the scheduled refreshes.
    budget = 2 + SOAK_SECONDS / MIN_REFETCH + SOAK_SECONDS / (LIFESPAN * 0.9)
    assert fetches(soak.server) <= budget, (fetches(soak.server), budget)


class Stateless(BearerTokenValidator):
    """Accepts ``ok-<n>`` without storing anything, so only bearerguard holds memory."""

    def authenticate_token(self, token_string: str) -> Any:
        if token_string.startswith("ok-"):
            return {"scope": "profile", "exp": time.time() + 600, "sub": token_string}
        return None


def test_memory_stays_bounded_under_a_stream_of_distinct_tokens() -> None:
    """Distinct valid, unknown and forged tokens from 16 threads: once the caches
    are full, memory stops growing (``tracemalloc``)."""
    protector = ResourceProtector(
        cache=TokenCache(ttl=600, maxsize=200, negative_ttl=600, negative_maxsize=200)
    )
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks={"keys": [OLD_KEY.jwk()]})
    )
    protector.register_token_validator(Stateless())
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    forger = Keypair("ES256", OLD_KEY.kid, ATTACKER.private_key)
    forged = [make_token(forger, now=time.time()) for _ in range(200)]
    counter = iter(range(10**9))

    def stream(requests: int) -> None:
        def one_thread() -> None:
            client = app.test_client()
            for _ in range(requests // THREADS):
                n = next(counter)
                token = (f"ok-{n}", f"unknown-{n}", forged[n % 200][:-2] + f"{n % 97:02d}")[n % 3]
                client.get("/r", headers={"Authorization": f"Bearer {token}"})

        threads = [threading.Thread(target=one_thread, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
            assert not thread.is_alive()

    stream(160)  # warm up: imports, Flask's and the validators' first-use state
    tracemalloc.start()
    try:
        stream(640)  # fills both caches to their bound, with traced entries
        gc.collect()  # refusals leave exception/traceback cycles for the collector
        filled = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        stream(960)  # 320 more distinct tokens of each kind
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    cache = protector.cache
    assert cache is not None and len(cache) <= 200
    assert after - filled < 128 * 1024, f"grew by {after - filled} bytes after the caches filled"
    # Uncollected refusal tracebacks come and go between collections; bounded all the same.
    assert peak - filled < 8 * 1024 * 1024, f"peak {peak - filled} bytes above the filled level"


class TickingClock:
    """A clock that moves ``step`` seconds after every reading, once started."""

    def __init__(self, now: float) -> None:
        self.now, self.step = now, 0.0

    def __call__(self) -> float:
        now = self.now
        self.now += self.step
        return now


@pytest.mark.parametrize(
    "scheme", ["Bearer", "bearer"], ids=["cache-fast-path", "full-path"]
)  # the protector answers the common "Bearer <token>" hit by a shorter path
def test_a_revoked_token_is_refused_up_to_the_instant_it_expires(scheme: str) -> None:
    """What the soak caught: a revoked token's deny-list entry ends at the token's
    ``exp``. A request that saw the token unexpired in the cache but reached the
    deny-list an instant later, past ``exp``, found no entry and was accepted.
    Both checks must agree on one instant."""
    clock = TickingClock(1_800_000_000.0)
    exp = clock.now + 60
    token = make_token(OLD_KEY, now=clock.now, exp=int(exp))
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks={"keys": [OLD_KEY.jwk()]})
    )
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    client = app.test_client()
    headers = {"Authorization": f"{scheme} {token}"}
    assert client.get("/r", headers=headers).status_code == 200  # cached until exp
    protector.revoke(token)  # refused until exp
    assert client.get("/r", headers=headers).status_code == 401

    clock.now, clock.step = exp - 0.001, 0.002  # each reading 2 ms after the last
    response = client.get("/r", headers=headers)

    assert response.status_code == 401, "a revoked token was accepted"


def test_a_request_sent_after_exp_is_refused_even_when_it_shares_a_validation() -> None:
    """The soak's other catch: a request arriving after ``exp`` joined a validation
    that had begun before it, and was handed its answer: accepted, expired."""
    clock = FakeClock()
    exp = clock() + 1
    began, release = threading.Event(), threading.Event()

    class SlowBackend(TokenValidator):
        def validate(self, token_string: str) -> TokenInfo:
            if clock() >= exp:
                raise TokenExpiredError()
            began.set()
            release.wait(5)  # the backend answers slowly; the token expires meanwhile
            return TokenInfo(token={}, scopes=frozenset({"profile"}), expires_at=exp)

    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(SlowBackend())
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    statuses: dict[str, int] = {}

    def send(name: str) -> None:
        response = app.test_client().get("/r", headers={"Authorization": "Bearer slow-token"})
        statuses[name] = response.status_code

    leader = threading.Thread(target=send, args=("leader",))
    leader.start()
    assert began.wait(5)
    clock.advance(2)  # past exp
    waiter = threading.Thread(target=send, args=("waiter",))
    waiter.start()
    cache = protector.cache
    assert cache is not None
    deadline = time.monotonic() + 5
    while cache.waits.value < 1:  # the late request waits on the leader's validation
        assert time.monotonic() < deadline
        time.sleep(0.005)
    release.set()
    leader.join(5)
    waiter.join(5)

    assert statuses["waiter"] == 401, "a request sent after exp was accepted"
