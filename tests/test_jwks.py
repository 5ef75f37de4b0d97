"""Keys from a real JWKS endpoint on 127.0.0.1: lifespan, rotation, outages, discovery."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bearerguard import ResourceProtector
from bearerguard.errors import BearerGuardError, SigningKeysUnavailableError
from bearerguard.jose.keys import ASYMMETRIC_ALGORITHMS, KeySet
from bearerguard.validators.jwt import JWTBearerTokenValidator

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    SharedServer,
    assert_refused,
    assert_unavailable,
    cached_keypair,
    call,
    fetches,
    loopback_client,
    make_token,
    protected_app,
)
from .servers import LoopbackServer, Reply

Serve = Callable[[Any], LoopbackServer]
KEY = cached_keypair("RS256", "rsa-1")
NEW_KEY = cached_keypair("ES256", "ec-new")


@pytest.fixture
def stub() -> IssuerStub:
    return IssuerStub(KEY)


@pytest.fixture(scope="module")
def shared() -> Iterator[SharedServer]:
    shared = SharedServer()
    yield shared
    shared.close()


@pytest.fixture
def server(shared: SharedServer, stub: IssuerStub) -> LoopbackServer:
    return shared.use(stub)


def remote(server: LoopbackServer, clock: FakeClock, **options: Any) -> JWTBearerTokenValidator:
    """A validator for ``server``'s JWKS; the issuer is a name, not fetched."""
    options.setdefault("jwks_uri", server.url + JWKS_PATH)
    options.setdefault("http", loopback_client())
    return JWTBearerTokenValidator(
        options.pop("issuer", "https://as.example.com"), AUDIENCE, clock=clock, **options
    )


def token(key: Keypair, clock: FakeClock, **overrides: Any) -> str:
    return make_token(key, now=clock(), **overrides)


def refusal(v: JWTBearerTokenValidator, token_: str) -> BearerGuardError:
    """What ``v`` raises for ``token_``: a refusal, or an outage (503)."""
    with pytest.raises(BearerGuardError) as caught:
        v.validate(token_)
    return caught.value


# -- lifespan ------------------------------------------------------------------------


def test_keys_are_fetched_lazily_once_and_reused(server: LoopbackServer, clock: FakeClock) -> None:
    v = remote(server, clock)
    assert fetches(server) == 0

    for _ in range(5):
        assert v.validate(token(KEY, clock)).subject == "user-1"

    assert fetches(server) == 1
    assert server.requests[0].method == "GET"
    assert server.requests[0].headers["Accept"] == "application/json"


def test_keys_are_refreshed_before_their_lifespan_ends(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    v = remote(server, clock, jwks_lifespan=100)
    v.validate(token(KEY, clock))
    stub.publish(KEY, NEW_KEY)

    clock.advance(89)
    assert v.validate(token(KEY, clock)).subject == "user-1"
    assert fetches(server) == 1

    clock.advance(1)  # 90 % of the lifespan: refresh ahead, though the key is known
    assert v.validate(token(KEY, clock)).subject == "user-1"
    assert fetches(server) == 2
    assert v.validate(token(NEW_KEY, clock)).subject == "user-1"
    assert fetches(server) == 2  # the refreshed set had it


# -- rotation and the forged-kid storm ---------------------------------------------------


def test_a_key_rotated_in_right_after_start_up_is_found_at_once(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    v = remote(server, clock)
    v.validate(token(KEY, clock))  # the initial load

    stub.publish(KEY, NEW_KEY)

    assert v.validate(token(NEW_KEY, clock)).subject == "user-1"
    assert fetches(server) == 2


def test_unknown_kids_refetch_at_most_once_per_interval(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    v = remote(server, clock, jwks_min_refetch=30)
    v.validate(token(KEY, clock))
    forged = Keypair.generate("ES256", kid="forged-1")

    assert refusal(v, token(forged, clock)).description == "unknown signing key"
    assert fetches(server) == 2
    stub.publish(KEY, NEW_KEY)
    clock.advance(29)
    assert refusal(v, token(NEW_KEY, clock)).description == "unknown signing key"
    assert fetches(server) == 2  # rate limited, even for a real new key

    clock.advance(1)
    assert v.validate(token(NEW_KEY, clock)).subject == "user-1"
    assert fetches(server) == 3


def test_a_storm_of_forged_kids_costs_one_fetch(
    serve: Serve, stub: IssuerStub, clock: FakeClock
) -> None:
    gate = threading.Event()

    def slow_after_first(seen: Any) -> Reply:
        if len(server.requests) > 1:
            gate.wait(5)  # hold the refetch until every thread is waiting for it
        return stub(seen)

    server = serve(slow_after_first)
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(remote(server, clock))
    app = protected_app(protector)
    assert call(app, token(KEY, clock)).status == 200
    attacker = Keypair.generate("ES256")
    forged = [
        token(Keypair("ES256", f"forged-{i}", attacker.private_key), clock) for i in range(100)
    ]
    started = threading.Barrier(20)

    def attack(chunk: list[str]) -> list[Any]:
        started.wait()
        return [call(app, t) for t in chunk]

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(attack, forged[i::20]) for i in range(20)]
        threading.Timer(0.3, gate.set).start()
        outcomes = [o for f in futures for o in f.result()]

    assert len(outcomes) == 100
    for outcome in outcomes:
        assert_refused(outcome, "unknown signing key")
    assert fetches(server) == 2  # the initial load and one refetch
    assert call(app, token(KEY, clock)).status == 200


def test_a_rotated_key_under_concurrent_load_costs_one_fetch(
    serve: Serve, stub: IssuerStub, clock: FakeClock
) -> None:
    gate = threading.Event()

    def slow_after_first(seen: Any) -> Reply:
        if len(server.requests) > 1:
            gate.wait(5)
        return stub(seen)

    server = serve(slow_after_first)
    v = remote(server, clock)
    v.validate(token(KEY, clock))
    stub.publish(KEY, NEW_KEY)
    tokens = [token(NEW_KEY, clock) for _ in range(40)]

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(v.validate, t) for t in tokens]
        threading.Timer(0.3, gate.set).start()
        subjects = [f.result().subject for f in futures]

    assert subjects == ["user-1"] * 40  # threads that waited share the new set
    assert fetches(server) == 2


# -- outages -------------------------------------------------------------------------------


FAULTS = {
    "503": Reply(503, "unavailable"),
    "404": Reply(404, "gone"),
    "html": Reply(200, "<html><body>Login</body></html>", {"Content-Type": "text/html"}),
    "bad-json": Reply(200, '{"keys": [', {"Content-Type": "application/json"}),
    "json-array": Reply(200, [1, 2]),
    "keys-not-a-list": Reply(200, {"keys": "none"}),
    "no-usable-key": Reply(200, {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
    "redirect-loop": Reply(302, "", {"Location": JWKS_PATH}),
    "too-large": Reply(200, {"keys": [], "pad": "x" * 5000}),
    "timeout": Reply(200, {"keys": []}, delay=0.5),
}
FAULT_CASES = [pytest.param(reply, id=name) for name, reply in FAULTS.items()]


@pytest.mark.parametrize("fault", FAULT_CASES)
def test_stale_keys_serve_while_the_endpoint_fails(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock, fault: Reply
) -> None:
    v = remote(server, clock, jwks_lifespan=100, max_jwks_bytes=4096, fetch_timeout=0.2)
    v.validate(token(KEY, clock))
    stub.fault = fault

    clock.advance(150)  # past the lifespan
    assert v.validate(token(KEY, clock)).subject == "user-1"
    assert fetches(server) == 2  # the failed refresh

    assert v.validate(token(KEY, clock)).subject == "user-1"
    assert fetches(server) == 2  # no retry within the interval


@pytest.mark.parametrize("fault", FAULT_CASES)
def test_without_any_keys_tokens_get_503_until_the_endpoint_recovers(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock, fault: Reply
) -> None:
    v = remote(server, clock, max_jwks_bytes=4096, fetch_timeout=0.2, jwks_min_refetch=30)
    stub.fault = fault

    assert isinstance(refusal(v, token(KEY, clock)), SigningKeysUnavailableError)
    assert isinstance(refusal(v, token(KEY, clock)), SigningKeysUnavailableError)
    assert fetches(server) == 1  # the second refusal did not wait on the network

    stub.fault = None
    clock.advance(30)
    assert v.validate(token(KEY, clock)).subject == "user-1"


def test_the_endpoint_going_down_after_the_first_fetch(
    serve: Serve, stub: IssuerStub, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(stub)
    v = remote(server, clock, jwks_lifespan=100, jwks_max_stale=1000, jwks_min_refetch=30)
    protector = ResourceProtector(clock=clock, cache=None)
    protector.register_token_validator(v)
    app = protected_app(protector)
    assert call(app, token(KEY, clock)).status == 200
    server.close()  # connection refused from now on
    caplog.set_level(logging.WARNING, "bearerguard")

    clock.advance(100)  # the set has lapsed: the refresh fails, stale keys serve
    assert call(app, token(KEY, clock)).status == 200
    for _ in range(10):
        clock.advance(30)  # one retry per interval, however many requests
        for _ in range(3):
            assert call(app, token(KEY, clock)).status == 200

    failures = [r for r in caplog.records if "JWKS" in r.getMessage()]
    assert len(failures) == 1  # logged once per interval, not per request
    assert "serving keys fetched" in failures[0].getMessage()
    assert v.fetcher is not None and v.fetcher.attempts == 1 + 1 + 10

    clock.advance(1000)  # beyond the max stale age
    assert_unavailable(call(app, token(KEY, clock)))


def test_no_keys_is_a_503_with_retry_after_that_is_not_cached(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    """An outage, not a verdict: a 401 would make many clients drop a good token."""
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(remote(server, clock, jwks_min_refetch=30))
    app = protected_app(protector)
    stub.fault = Reply(503)
    t = token(KEY, clock)

    response = app.test_client().get("/profile", headers={"Authorization": f"Bearer {t}"})
    assert_unavailable(call(app, t))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.headers["Cache-Control"] == "no-store"

    stub.fault = None
    clock.advance(30)
    assert call(app, t).status == 200


def test_an_unknown_kid_with_a_healthy_key_set_stays_401(
    server: LoopbackServer, clock: FakeClock
) -> None:
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(remote(server, clock))
    app = protected_app(protector)
    assert call(app, token(KEY, clock)).status == 200
    forged = Keypair.generate("ES256", kid="not-in-the-set")

    assert_refused(call(app, token(forged, clock)), "unknown signing key")


def test_unusable_keys_in_a_fetched_set_are_skipped(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    stub.publish({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}, {"kty": "EC", "kid": "bad"}, KEY)
    caplog.set_level(logging.WARNING, "bearerguard")

    assert remote(server, clock).validate(token(KEY, clock)).subject == "user-1"

    messages = [r.getMessage() for r in caplog.records]
    assert any("kid='hmac'" in m for m in messages) and any("kid='bad'" in m for m in messages)


def test_a_fetched_key_without_alg_verifies_one_algorithm(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    stub.publish(KEY.jwk(alg=None))
    pss = Keypair("PS256", KEY.kid, KEY.private_key)  # the same RSA key, another algorithm
    v = remote(server, clock)

    assert v.validate(token(KEY, clock)).subject == "user-1"
    assert refusal(v, token(pss, clock)).description == "algorithm not allowed"
    configured = remote(server, clock, algorithms=["PS256"])
    assert configured.validate(token(pss, clock)).subject == "user-1"


def test_keys_are_parsed_once_per_fetch(server: LoopbackServer, clock: FakeClock) -> None:
    v = remote(server, clock)
    v.validate(token(KEY, clock))
    keys = v.key_set()

    for _ in range(3):
        v.validate(token(KEY, clock))

    assert v.key_set() is keys  # the same parsed set, no re-import
    assert [key.kid for key in keys.keys] == ["rsa-1"]


@pytest.mark.parametrize(
    "uri",
    ["http://jwks.example.com/keys", "ftp://127.0.0.1/keys", "file:///etc/jwks.json"],
    ids=["plain-http-remote", "ftp", "file"],
)
def test_https_is_required_except_for_loopback(uri: str, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="https"):
        JWTBearerTokenValidator("https://as.example.com", AUDIENCE, jwks_uri=uri, clock=clock)
    for allowed in ("https://as.example.com/jwks", "http://127.0.0.1:1/jwks", "http://[::1]/j"):
        JWTBearerTokenValidator("https://as.example.com", AUDIENCE, jwks_uri=allowed)


# -- discovery -----------------------------------------------------------------------------


def discovering(server: LoopbackServer, clock: FakeClock, issuer: str | None = None):
    issuer = issuer or server.url
    v = JWTBearerTokenValidator(issuer, AUDIENCE, clock=clock, http=loopback_client())
    return v, issuer


@pytest.mark.parametrize(
    "path",
    ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"],
    ids=["openid-configuration", "oauth-authorization-server"],
)
def test_discovery_finds_the_jwks_uri(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock, path: str
) -> None:
    stub.documents[path] = {"issuer": server.url, "jwks_uri": server.url + JWKS_PATH}
    v, issuer = discovering(server, clock)

    assert v.validate(token(KEY, clock, iss=issuer)).subject == "user-1"
    assert v.validate(token(KEY, clock, iss=issuer)).subject == "user-1"

    tried = [seen.path for seen in server.requests]
    assert tried[-1] == JWKS_PATH and tried.count(JWKS_PATH) == 1
    assert tried[0] == "/.well-known/openid-configuration"
    assert tried[:-1][-1] == path


def test_discovery_of_an_issuer_with_a_path_uses_rfc_8414_insertion(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    issuer = server.url + "/tenant-1"
    stub.documents["/.well-known/oauth-authorization-server/tenant-1"] = {
        "issuer": issuer,
        "jwks_uri": server.url + JWKS_PATH,
    }
    v, _ = discovering(server, clock, issuer)

    assert v.validate(token(KEY, clock, iss=issuer)).subject == "user-1"
    assert [seen.path for seen in server.requests] == [
        "/tenant-1/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server/tenant-1",
        JWKS_PATH,
    ]


@pytest.mark.parametrize(
    "metadata",
    [
        {"issuer": "https://evil.example.com", "jwks_uri": "JWKS"},
        {"issuer": "ISSUER/", "jwks_uri": "JWKS"},
        {"jwks_uri": "JWKS"},
        {"issuer": "ISSUER"},
        {"issuer": "ISSUER", "jwks_uri": "http://jwks.example.com/keys"},
        {"issuer": "ISSUER", "jwks_uri": ["JWKS"]},
    ],
    ids=[
        "other-issuer",
        "issuer-trailing-slash",
        "no-issuer",
        "no-jwks-uri",
        "plain-http-jwks-uri",
        "jwks-uri-not-a-string",
    ],
)
def test_discovery_refuses_bad_metadata(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock, metadata: dict[str, Any]
) -> None:
    def fill(value: Any) -> Any:
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value.replace("ISSUER", server.url).replace("JWKS", server.url + JWKS_PATH)

    stub.documents["/.well-known/openid-configuration"] = {k: fill(v) for k, v in metadata.items()}
    v, issuer = discovering(server, clock)

    assert isinstance(refusal(v, token(KEY, clock, iss=issuer)), SigningKeysUnavailableError)
    assert fetches(server) == 0  # the keys were never fetched


def test_discovery_failing_everywhere_is_retried_after_the_interval(
    server: LoopbackServer, stub: IssuerStub, clock: FakeClock
) -> None:
    v, issuer = discovering(server, clock)
    t = token(KEY, clock, iss=issuer)
    assert isinstance(refusal(v, t), SigningKeysUnavailableError)
    assert len(server.requests) == 2  # both well-known paths were tried

    stub.documents["/.well-known/oauth-authorization-server"] = {
        "issuer": issuer,
        "jwks_uri": server.url + JWKS_PATH,
    }
    assert isinstance(refusal(v, t), SigningKeysUnavailableError)
    assert len(server.requests) == 2
    clock.advance(30)
    assert v.validate(t).subject == "user-1"


jwk_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
jwk_like = st.fixed_dictionaries(
    {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct"]) | jwk_values},
    optional={
        "alg": st.sampled_from(["RS256", "ES256", "EdDSA", "HS256"]) | jwk_values,
        "crv": st.sampled_from(["P-256", "Ed25519"]) | jwk_values,
        "kid": jwk_values,
        "use": st.sampled_from(["sig", "enc"]) | jwk_values,
        "key_ops": jwk_values,
        "n": jwk_values,
        "e": st.just("AQAB") | jwk_values,
        "x": jwk_values,
        "y": jwk_values,
    },
)


@settings(max_examples=150, deadline=None)
@given(st.lists(jwk_like | jwk_values, max_size=4))
def test_any_jwks_document_parses_without_crashing(keys: list[Any]) -> None:
    parsed = KeySet.parse({"keys": [*keys, KEY.jwk()]}, ASYMMETRIC_ALGORITHMS, "fuzz")

    assert parsed.find("rsa-1", "RS256") is not None  # the good key survives its neighbours
