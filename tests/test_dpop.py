"""DPoP (RFC 9449): every §4.3 proof check, the cnf.jkt binding, the modes,
the challenges, replay (in process and through Redis), on both fronts."""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
from typing import Any

import pytest
from flask import Flask, jsonify

from bearerguard import InvalidDPoPProofError, ResourceProtector, TokenCache
from bearerguard.core.dpop import ProofChecker, normalized_uri
from bearerguard.errors import ValidatorUnavailableError
from bearerguard.redis_replay import RedisReplayStore
from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator

from .conftest import FakeClock
from .dpopkit import PROOF_ALGS, jkt, make_proof
from .fronts import Setup, front, introspection_server, kind, make  # noqa: F401
from .jwtkit import AUDIENCE, ISSUER, b64url, cached_keypair, forge, jwks, make_token

ALGS = "ES256 ES384 PS256 RS256 EdDSA"
URL = "https://api.example.com/r"
NOW = 1_800_000_000.0

# -- RFC 9449's own examples ------------------------------------------------------------

#: RFC 9449 §7.1: a proof for a GET of a protected resource, with ath.
RFC_PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0"
    "VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10"
    "NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoi"
    "R0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6"
    "MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9"
    "RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
)
RFC_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"  # §6.1


def test_rfc9449_example_proof_is_accepted_with_its_thumbprint() -> None:
    checker = ProofChecker()
    uri = "https://resource.example.org/protectedresource"
    assert checker.check([RFC_PROOF], "GET", uri, RFC_TOKEN, 1562262618) == RFC_JKT
    with pytest.raises(InvalidDPoPProofError, match="replayed"):
        checker.check([RFC_PROOF], "GET", uri, RFC_TOKEN, 1562262618)
    with pytest.raises(InvalidDPoPProofError, match="iat outside"):
        ProofChecker().check([RFC_PROOF], "GET", uri, RFC_TOKEN, 1562262618 + 301)


def test_uri_normalisation_rfc3986() -> None:
    assert normalized_uri("HTTPS://API.Example.COM:443/a/./b/../%7ex%2f?q=1#f") == (
        "https://api.example.com/a/~x%2F"
    )
    assert normalized_uri("http://h:8080") == "http://h:8080/"


# -- each §4.3 check, with its own description ------------------------------------------

KEY = cached_keypair("ES256", "proof")
OTHER = cached_keypair("ES256", "other")
TOKEN = "access-token-1"


def proof(**kw: Any) -> str:
    kw.setdefault("url", URL)
    kw.setdefault("token", TOKEN)
    return make_proof(kw.pop("key", KEY), now=NOW, **kw)


def _private() -> str:
    return proof(header={"jwk": KEY.jwk(private=True)})


def _hs256() -> str:
    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"k")}}
    return forge(header, {"jti": "j", "htm": "GET", "htu": URL, "iat": int(NOW)}, b"x" * 32)


def _resigned() -> str:
    head, body, _ = proof().split(".")
    return f"{head}.{body}.{proof(key=OTHER).split('.')[2]}"


REFUSED: dict[str, tuple[Any, str]] = {
    "no-proof": (lambda: [], "missing DPoP proof"),
    "two-proofs": (lambda: [proof(), proof()], "more than one DPoP proof"),
    "not-a-jws": (lambda: ["abc.def"], "malformed DPoP proof"),
    "not-json": (lambda: ["YWJj.YWJj.YWJj"], "malformed DPoP proof"),
    "signature-not-canonical": (lambda: [proof()[:-1] + "_"], "malformed DPoP proof"),
    "typ-jwt": (lambda: [proof(header={"typ": "JWT"})], "typ is not dpop+jwt"),
    "typ-missing": (lambda: [proof(header={"typ": None})], "typ is not dpop+jwt"),
    "alg-none": (
        lambda: [forge({"typ": "dpop+jwt", "alg": "none", "jwk": {}}, {"jti": "1"}, b"s")],
        "algorithm not allowed",
    ),
    "alg-hs256": (lambda: [_hs256()], "algorithm not allowed"),
    "alg-not-listed": (
        lambda: [proof(key=cached_keypair("ES512", "p"))],
        "algorithm not allowed",
    ),
    "jwk-missing": (lambda: [proof(header={"jwk": None})], "has no jwk"),
    "jwk-private": (lambda: [_private()], "holds a private key"),
    "jwk-wrong-type": (
        lambda: [proof(header={"jwk": cached_keypair("RS256", "p").jwk()})],
        "does not suit its algorithm",
    ),
    "jwk-kty-list": (
        lambda: [proof(header={"jwk": {"kty": ["EC"], "crv": "P-256", "x": "a", "y": "b"}})],
        "unsupported DPoP proof key",
    ),
    "signature-other-key": (lambda: [_resigned()], "signature invalid"),
    "jti-missing": (lambda: [proof(jti=None)], "jti missing"),
    "htm-other": (lambda: [proof(method="POST")], "htm does not match"),
    "htu-other-path": (lambda: [proof(url="https://api.example.com/s")], "htu does not match"),
    "htu-other-host": (lambda: [proof(url="https://evil.example/r")], "htu does not match"),
    "htu-not-uri": (lambda: [proof(url="r")], "htu does not match"),
    "iat-too-old": (lambda: [proof(iat=int(NOW) - 301)], "iat outside"),
    "iat-too-new": (lambda: [proof(iat=int(NOW) + 31)], "iat outside"),
    "iat-string": (lambda: [proof(iat=str(int(NOW)))], "iat missing or invalid"),
    "ath-missing": (lambda: [proof(token=None)], "ath does not match"),
    "ath-other-token": (lambda: [proof(token="another")], "ath does not match"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_each_proof_check_refuses_with_its_description(case: str) -> None:
    build, description = REFUSED[case]
    with pytest.raises(InvalidDPoPProofError, match=re.escape(description)) as caught:
        ProofChecker().check(build(), "GET", URL, TOKEN, NOW)
    assert caught.value.status_code == 401 and caught.value.error == "invalid_dpop_proof"


@pytest.mark.parametrize(
    "url", ["https://API.example.com:443/r", "https://api.example.com/r?x=1#y", URL]
)
def test_htu_compared_after_normalisation_without_query(url: str) -> None:
    assert ProofChecker().check([proof(url=url)], "GET", URL + "?page=2", TOKEN, NOW) == jkt(KEY)


def test_iat_window_is_configurable() -> None:
    checker = ProofChecker(max_age=10, max_skew=0)
    with pytest.raises(InvalidDPoPProofError, match="iat outside"):
        checker.check([proof(iat=int(NOW) - 11)], "GET", URL, TOKEN, NOW)
    with pytest.raises(InvalidDPoPProofError, match="iat outside"):
        checker.check([proof(iat=int(NOW) + 1)], "GET", URL, TOKEN, NOW)
    assert checker.check([proof(iat=int(NOW) - 9)], "GET", URL, TOKEN, NOW) == jkt(KEY)


def test_replay_is_scoped_to_the_key() -> None:
    checker = ProofChecker()
    first = proof(jti="same")
    checker.check([first], "GET", URL, TOKEN, NOW)
    with pytest.raises(InvalidDPoPProofError, match="replayed"):
        checker.check([first], "GET", URL, TOKEN, NOW)
    assert checker.check([proof(key=OTHER, jti="same")], "GET", URL, TOKEN, NOW) == jkt(OTHER)


def test_no_hs_or_none_algorithm_can_be_configured() -> None:
    for algs in (["HS256"], ["none"], []):
        with pytest.raises(ValueError):
            ProofChecker(algs)


# -- through a protector: every algorithm, binding, modes, answers -----------------------


def flask_app(protector: ResourceProtector) -> Any:
    app = Flask(__name__)

    @app.route("/r", methods=["GET", "POST"])
    @protector("profile")
    def resource() -> Any:
        return jsonify(ok=True)

    @app.route("/only")
    @protector("profile", dpop="required")
    def only() -> Any:
        return jsonify(ok=True)

    @app.route("/never")
    @protector("profile", dpop="disabled")
    def never() -> Any:
        return jsonify(ok=True)

    return app.test_client()


def jwt_protector(clock: FakeClock, **options: Any) -> ResourceProtector:
    protector = ResourceProtector(clock=clock, cache=TokenCache(clock=clock), **options)
    issuer_key = cached_keypair("RS256", "issuer")
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(issuer_key))
    )
    return protector


def bound_token(clock: FakeClock, key: Any = KEY, **claims: Any) -> str:
    issuer_key = cached_keypair("RS256", "issuer")
    return make_token(issuer_key, now=clock(), cnf={"jkt": jkt(key)}, **claims)


def dpop_headers(token: str, clock: FakeClock, path: str = "/r", **kw: Any) -> dict[str, str]:
    url = "http://localhost" + path
    proof_value = make_proof(kw.pop("key", KEY), url=url, token=token, now=clock(), **kw)
    return {"Authorization": f"DPoP {token}", "DPoP": proof_value}


@pytest.mark.parametrize("alg", PROOF_ALGS)
def test_every_allowed_algorithm_signs_an_accepted_proof(alg: str, clock: FakeClock) -> None:
    key = cached_keypair(alg, "client")
    client = flask_app(jwt_protector(clock))
    token = bound_token(clock, key)
    answer = client.get("/r", headers=dpop_headers(token, clock, key=key))
    assert answer.status_code == 200, answer.get_json()


def test_bound_jwt_refused_as_bearer_and_with_another_key(clock: FakeClock) -> None:
    client = flask_app(jwt_protector(clock))
    token = bound_token(clock)
    answer = client.get("/r", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "invalid_token"
    answer = client.get("/r", headers=dpop_headers(token, clock, key=OTHER))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="api", DPoP realm="api", error="invalid_token", '
        'error_description="DPoP proof key does not match the token\'s binding", '
        f'algs="{ALGS}"'
    )


def test_unbound_token_refused_with_the_dpop_scheme(clock: FakeClock) -> None:
    client = flask_app(jwt_protector(clock))
    token = make_token(cached_keypair("RS256", "issuer"), now=clock())
    answer = client.get("/r", headers=dpop_headers(token, clock))
    assert answer.status_code == 401
    assert answer.get_json()["error_description"] == "token is not bound to a DPoP key"
    assert client.get("/r", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_bad_proof_gets_both_challenges(clock: FakeClock) -> None:
    client = flask_app(jwt_protector(clock))
    token = bound_token(clock)
    answer = client.get("/r", headers=dpop_headers(token, clock, method="POST"))
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "invalid_dpop_proof"
    assert answer.headers["WWW-Authenticate"] == (
        'Bearer realm="api", DPoP realm="api", error="invalid_dpop_proof", '
        f'error_description="DPoP proof htm does not match the request method", algs="{ALGS}"'
    )


def test_modes_per_view_and_per_protector(clock: FakeClock) -> None:
    client = flask_app(jwt_protector(clock))
    bearer = make_token(cached_keypair("RS256", "issuer"), now=clock())
    bound = bound_token(clock)
    answer = client.get("/only", headers={"Authorization": f"Bearer {bearer}"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == f'DPoP realm="api", algs="{ALGS}"'
    assert client.get("/r", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    # A cached Bearer token does not get past a DPoP-only view.
    answer = client.get("/only", headers={"Authorization": f"Bearer {bearer}"})
    assert answer.status_code == 401
    assert client.get("/only", headers=dpop_headers(bound, clock, "/only")).status_code == 200
    answer = client.get("/never", headers=dpop_headers(bound, clock, "/never"))
    assert answer.status_code == 401
    assert answer.get_json()["error"] == "unsupported_token_type"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="api"'

    required = flask_app(jwt_protector(clock, dpop="required"))
    assert required.get("/r", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
    assert required.get("/r", headers=dpop_headers(bound, clock)).status_code == 200
    # Set on a live protector: a cached Bearer token is refused, then accepted again.
    live = jwt_protector(clock)
    app = flask_app(live)
    assert app.get("/r", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    live.dpop = "required"
    assert app.get("/r", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
    live.dpop = "allowed"
    assert app.get("/r", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
    with pytest.raises(ValueError):
        ResourceProtector(dpop="sometimes")


def test_token_validation_cached_and_proof_checked_per_request(clock: FakeClock) -> None:
    protector = jwt_protector(clock)
    client = flask_app(protector)
    token = bound_token(clock)
    headers = dpop_headers(token, clock)
    assert client.get("/r", headers=headers).status_code == 200
    replayed = client.get("/r", headers=headers)
    assert replayed.status_code == 401
    assert replayed.get_json()["error_description"] == "DPoP proof replayed"
    assert client.get("/r", headers=dpop_headers(token, clock)).status_code == 200
    stats = protector.stats()["cache"]
    assert stats is not None and stats["hits"] >= 1 and stats["misses"] == 1


def test_public_url_behind_a_proxy(clock: FakeClock) -> None:
    client = flask_app(jwt_protector(clock, dpop_public_url="https://api.example.com"))
    token = bound_token(clock)
    seen = dpop_headers(token, clock)  # htu = what the server saw: refused now
    assert client.get("/r", headers=seen).status_code == 401
    proof_value = make_proof(KEY, url="https://api.example.com/r", token=token, now=clock())
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof_value}
    assert client.get("/r", headers=headers).status_code == 200


class Row:
    """A database token with the documented ``dpop_jkt`` attribute."""

    def __init__(self, expires: float, dpop_jkt: str | None) -> None:
        self.scope, self.expires, self.dpop_jkt = "profile", expires, dpop_jkt

    def get_scope(self) -> str:
        return self.scope

    def get_expires_at(self) -> float:
        return self.expires


def test_database_token_binds_through_dpop_jkt(clock: FakeClock) -> None:
    rows = {"bound-row": Row(clock() + 600, jkt(KEY)), "plain-row": Row(clock() + 600, None)}

    class Lookup(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return rows.get(token_string)

    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(Lookup())
    client = flask_app(protector)
    assert client.get("/r", headers=dpop_headers("bound-row", clock)).status_code == 200
    answer = client.get("/r", headers={"Authorization": "Bearer bound-row"})
    assert answer.status_code == 401
    assert answer.get_json()["error_description"] == (
        "sender-constrained token presented as a bearer token"
    )
    assert client.get("/r", headers=dpop_headers("plain-row", clock)).status_code == 401
    assert client.get("/r", headers={"Authorization": "Bearer plain-row"}).status_code == 200
    assert client.get("/r", headers=dpop_headers("bound-row", clock, key=OTHER)).status_code == 401


# -- both fronts, every validator kind that carries a cnf ------------------------------------


@pytest.mark.parametrize("kind", ["opaque", "jwt", "introspection"])
def test_fronts_accept_bound_tokens_with_proofs(make: Any, front: str, kind: str) -> None:  # noqa: F811
    setup: Setup = make()
    host = "http://localhost" if front == "flask" else "http://testserver"
    token = setup.backend.mint(cnf={"jkt": jkt(KEY)})

    def headers(**kw: Any) -> dict[str, str]:
        key = kw.pop("key", KEY)
        value = make_proof(key, url=host + "/r", token=token, now=setup.clock(), **kw)
        return {"Authorization": f"DPoP {token}", "DPoP": value}

    first = setup.client.get("/r", headers=headers())
    assert first.status == 200, first.json
    assert setup.client.get("/r", headers=headers()).status == 200
    assert setup.backend.calls == 1  # the token's validation is cached
    bad = setup.client.get("/r", headers=headers(method="PUT"))
    assert (bad.status, bad.json["error"]) == (401, "invalid_dpop_proof")
    assert 'DPoP realm="api", error="invalid_dpop_proof"' in bad.challenge
    other = setup.client.get("/r", headers=headers(key=OTHER))
    assert (other.status, other.json["error"]) == (401, "invalid_token")
    bearer = setup.client.get("/r", headers=setup.bearer(token))
    assert (bearer.status, bearer.json["error"]) == (401, "invalid_token")


# -- replay across threads through Redis -------------------------------------------------------


def test_sixteen_threads_share_the_redis_replay_store(redis_url: str) -> None:
    store = RedisReplayStore(redis_url, key_prefix=f"test:{threading.get_ident()}:{id(object())}:")
    checker = ProofChecker(replay=store)
    proofs = [proof() for _ in range(40)]
    accepted: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for value in proofs:
            try:
                checker.check([value], "GET", URL, TOKEN, NOW)
            except InvalidDPoPProofError:
                with lock:
                    refused[value] += 1
            else:
                with lock:
                    accepted[value] += 1

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    assert all(accepted[value] == 1 for value in proofs)
    assert all(refused[value] == 15 for value in proofs)


def test_redis_down_fails_closed_unless_iat_window_only() -> None:
    down = RedisReplayStore("redis://127.0.0.1:1/0", socket_timeout=0.2)
    with pytest.raises(ValidatorUnavailableError):
        ProofChecker(replay=down).check([proof()], "GET", URL, TOKEN, NOW)
    lenient = RedisReplayStore("redis://127.0.0.1:1/0", socket_timeout=0.2, iat_window_only=True)
    assert ProofChecker(replay=lenient).check([proof()], "GET", URL, TOKEN, NOW) == jkt(KEY)


# -- never a 500: any mutation of a valid proof or header is refused ----------------------------

PROPERTY_CLOCK = FakeClock(NOW)
PROPERTY_CLIENT = flask_app(jwt_protector(PROPERTY_CLOCK))
PROPERTY_TOKEN = bound_token(PROPERTY_CLOCK)


def _mutations() -> Any:
    from hypothesis import strategies as st

    text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=12)
    return st.tuples(
        st.sampled_from(["proof", "authorization"]),
        st.sampled_from(["replace", "insert", "delete", "truncate"]),
        st.integers(min_value=0, max_value=2000),
        text,
    )


def _mutate(value: str, how: str, at: int, text: str) -> str:
    at %= len(value) + 1
    if how == "replace":
        return value[:at] + text + value[at + len(text) :]
    if how == "insert":
        return value[:at] + text + value[at:]
    if how == "delete":
        return value[:at] + value[at + max(1, len(text)) :]
    return value[:at]


def test_any_mutation_of_a_valid_proof_or_header_is_refused() -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutations())
    def check(mutation: tuple[str, str, int, str]) -> None:
        where, how, at, text = mutation
        headers = dpop_headers(PROPERTY_TOKEN, PROPERTY_CLOCK)
        field = "DPoP" if where == "proof" else "Authorization"
        changed = _mutate(headers[field], how, at, text)
        same_scheme = where == "authorization" and changed[:5].lower() == "dpop "
        if changed == headers[field] or (same_scheme and changed[5:].lstrip() == PROPERTY_TOKEN):
            return  # the same request: the scheme is case-insensitive, 1*SP before the token
        headers[field] = changed
        answer = PROPERTY_CLIENT.get("/r", headers=headers)
        assert answer.status_code in (400, 401), (answer.status_code, changed)

    check()


# -- server nonces (RFC 9449 §8, §9) ------------------------------------------------------------


def test_nonce_demanded_issued_and_rotated(clock: FakeClock) -> None:
    from bearerguard.core.dpop import NonceIssuer

    secret = b"s" * 32
    protector = jwt_protector(clock, dpop_proofs=ProofChecker(nonces=NonceIssuer(secret)))
    client = flask_app(protector)
    token = bound_token(clock)
    first = client.get("/r", headers=dpop_headers(token, clock))
    assert first.status_code == 401
    assert first.get_json()["error"] == "use_dpop_nonce"
    assert first.headers["WWW-Authenticate"].startswith(
        'Bearer realm="api", DPoP realm="api", error="use_dpop_nonce"'
    )
    nonce = first.headers["DPoP-Nonce"]
    assert client.get("/r", headers=dpop_headers(token, clock, nonce=nonce)).status_code == 200
    # Another worker with the same secret accepts it, without shared state.
    other = flask_app(jwt_protector(clock, dpop_proofs=ProofChecker(nonces=NonceIssuer(secret))))
    assert other.get("/r", headers=dpop_headers(token, clock, nonce=nonce)).status_code == 200
    clock.advance(600)  # two steps on: the nonce is stale, a new one is issued
    token = bound_token(clock)
    stale = client.get("/r", headers=dpop_headers(token, clock, nonce=nonce))
    assert stale.get_json()["error"] == "use_dpop_nonce"
    assert stale.headers["DPoP-Nonce"] != nonce
    forged = nonce[:-2] + ("AA" if nonce[-2:] != "AA" else "BA")
    assert client.get("/r", headers=dpop_headers(token, clock, nonce=forged)).status_code == 401


def test_asgi_views_and_middleware_take_a_dpop_mode(clock: FakeClock) -> None:
    from fastapi import FastAPI, Security
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bearerguard.starlette import BearerMiddleware
    from bearerguard.starlette import ResourceProtector as ASGIProtector

    protector = ASGIProtector(clock=clock, cache=TokenCache(clock=clock))
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(cached_keypair("RS256", "issuer")))
    )

    @protector.route("profile", dpop="required")
    async def only(request: Request) -> Response:
        return JSONResponse({"ok": True})

    api = FastAPI()
    protector.init_app(api)
    dependency = Security(protector("profile", dpop="required"))

    @api.get("/only")
    async def fast_only(token: Any = dependency) -> dict[str, Any]:
        return {"ok": True}

    async def plain(request: Request) -> Response:
        return JSONResponse({"ok": True})

    wrapped = BearerMiddleware(
        Starlette(routes=[Route("/only", plain)]), protector, "profile", dpop="required"
    )
    bearer = make_token(cached_keypair("RS256", "issuer"), now=clock())
    bound = bound_token(clock)
    for app in (Starlette(routes=[Route("/only", only)]), api, wrapped):
        client = TestClient(app)
        answer = client.get("/only", headers={"Authorization": f"Bearer {bearer}"})
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == f'DPoP realm="api", algs="{ALGS}"'
        proof_value = make_proof(KEY, url="http://testserver/only", token=bound, now=clock())
        headers = {"Authorization": f"DPoP {bound}", "DPoP": proof_value}
        assert client.get("/only", headers=headers).status_code == 200
        twice = [*headers.items(), ("DPoP", proof_value)]  # the DPoP field sent twice
        sent = client.get("/only", headers=twice)
        assert sent.status_code == 401
        assert sent.json()["error_description"] == "more than one DPoP proof"


def test_flask_two_dpop_header_fields_are_refused(clock: FakeClock) -> None:
    from werkzeug.datastructures import Headers

    client = flask_app(jwt_protector(clock))
    token = bound_token(clock)
    good = dpop_headers(token, clock)
    headers = Headers([("Authorization", good["Authorization"]), ("DPoP", good["DPoP"])])
    headers.add("DPoP", good["DPoP"])
    answer = client.get("/r", headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["error_description"] == "more than one DPoP proof"


def test_any_json_in_any_signed_member_is_refused_or_accepted_never_raised() -> None:
    """Re-signed proofs whose header or claims members hold any JSON: the checks
    refuse them with invalid_dpop_proof (or accept an equivalent), nothing else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    )
    # Not alg: the proof is signed with the algorithm its header names.
    header_members = st.sampled_from(["typ", "jwk", "crit", "kty", "crv", "x", "y"])
    claim_members = st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"])

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.one_of(
            st.tuples(st.just("header"), header_members, json_values),
            st.tuples(st.just("claims"), claim_members, json_values),
        )
    )
    def check(change: tuple[str, str, Any]) -> None:
        where, member, value = change
        header: dict[str, Any] = {}
        claims: dict[str, Any] = {}
        if where == "claims":
            claims[member] = value
        elif member in ("kty", "crv", "x", "y"):
            header["jwk"] = {**make_proof_jwk(), member: value}
        else:
            header[member] = value
        value_proof = proof(header=header, **claims) if where == "header" else proof(**claims)
        with contextlib.suppress(InvalidDPoPProofError):
            ProofChecker().check([value_proof], "GET", URL, TOKEN, NOW)

    check()


def make_proof_jwk() -> dict[str, Any]:
    from .dpopkit import public_jwk

    return public_jwk(KEY)
