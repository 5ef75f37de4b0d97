"""The cache as a user sees it: a Flask app behind a real threaded HTTP server.

N concurrent requests with one uncached token make exactly one
``authenticate_token`` call, and every request gets its answer (200, 401 or
503); the counters are readable from ``protector.stats()``. A cache serves
one protector only.
"""

from __future__ import annotations

import gc
import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask, jsonify
from werkzeug.serving import make_server

from bearerguard import ResourceProtector, TokenCache, current_token
from bearerguard.validators import BearerTokenValidator

N = 16


@dataclass
class Token:
    access_token: str
    scope: str
    user_id: int
    expires_at: float

    def get_scope(self) -> str:
        return self.scope

    def get_expires_at(self) -> float:
        return self.expires_at


class CountingValidator(BearerTokenValidator):
    """Answers from a dict; ``gate`` can hold the call until N-1 requests wait."""

    def __init__(self, tokens: dict[str, Token]) -> None:
        super().__init__()
        self.tokens = tokens
        self.calls = 0
        self.gate: Callable[[], None] | None = None
        self.fail = False

    def authenticate_token(self, token_string: str) -> Any:
        self.calls += 1
        if self.gate is not None:
            self.gate()
        if self.fail:
            raise ConnectionError("database down; query was for " + token_string)
        return self.tokens.get(token_string)


@dataclass
class App:
    url_port: int
    protector: ResourceProtector
    validator: CountingValidator

    def get(self, token: str | None, path: str = "/user") -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.url_port, timeout=10)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            conn.close()


@pytest.fixture
def app() -> Iterator[App]:
    tokens = {
        "good": Token("good", "profile", 7, time.time() + 3600),
        "other": Token("other", "profile", 8, time.time() + 3600),
    }
    validator = CountingValidator(tokens)
    protector = ResourceProtector(cache=TokenCache(ttl=60))
    protector.register_token_validator(validator)
    flask_app = Flask(__name__)

    @flask_app.get("/user")
    @protector("profile")
    def user() -> Any:
        return jsonify(user_id=current_token.user_id)

    server = make_server("127.0.0.1", 0, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield App(server.server_port, protector, validator)
    server.shutdown()
    server.server_close()


def _hold_until_all_wait(app: App) -> Callable[[], None]:
    cache = app.protector.cache
    assert cache is not None

    def gate() -> None:
        deadline = time.monotonic() + 10
        while cache.waits.value < N - 1:
            assert time.monotonic() < deadline, "the other requests never waited"
            time.sleep(0.001)

    return gate


def _concurrently(app: App, token: str) -> list[tuple[int, dict[str, Any]]]:
    results: list[Any] = [None] * N
    start = threading.Barrier(N)

    def one(i: int) -> None:
        start.wait()
        results[i] = app.get(token)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return results


def test_concurrent_requests_make_one_lookup_and_all_succeed(app: App) -> None:
    app.validator.gate = _hold_until_all_wait(app)
    results = _concurrently(app, "good")
    assert app.validator.calls == 1
    assert results == [(200, {"user_id": 7})] * N
    stats = app.protector.stats()["cache"]
    assert stats["misses"] == 1 and stats["single_flight_waits"] == N - 1


def test_concurrent_requests_share_one_refusal(app: App) -> None:
    app.validator.gate = _hold_until_all_wait(app)
    results = _concurrently(app, "junk")
    assert app.validator.calls == 1
    assert {status for status, _ in results} == {401}
    assert {body["error"] for _, body in results} == {"invalid_token"}
    app.validator.gate = None
    assert app.get("junk")[0] == 401
    assert app.validator.calls == 1, "the refusal is cached for negative_ttl"
    assert app.protector.stats()["cache"]["negative_hits"] == 1


def test_concurrent_requests_share_one_outage_and_recover_at_once(app: App) -> None:
    app.validator.gate = _hold_until_all_wait(app)
    app.validator.fail = True
    results = _concurrently(app, "good")
    assert app.validator.calls == 1
    assert {status for status, _ in results} == {503}
    assert all("good" not in json.dumps(body) for _, body in results)
    app.validator.gate = None
    app.validator.fail = False
    assert app.get("good") == (200, {"user_id": 7})
    assert app.validator.calls == 2


def test_protector_stats_count_every_request(app: App) -> None:
    for token in ["good", "good", "other", "junk", "junk", "good"]:
        app.get(token)
    stats = app.protector.stats()
    cache = stats["cache"]
    assert (cache["hits"], cache["misses"], cache["negative_hits"]) == (2, 3, 1)
    assert cache["size"] == 2
    assert stats["validations"]["refused"] == {"invalid_token": 2}


def test_an_evicted_token_is_looked_up_again(app: App) -> None:
    assert app.get("good")[0] == 200
    app.validator.tokens.pop("good")
    assert app.get("good")[0] == 200, "still cached"
    app.protector.evict("good")
    assert app.get("good")[0] == 401
    assert app.validator.calls == 2


# -- a cache holds one protector's validations ------------------------------------------


class Accepts(BearerTokenValidator):
    """Accepts exactly the tokens it is given."""

    def __init__(self, *tokens: str) -> None:
        super().__init__()
        self.tokens = set(tokens)

    def authenticate_token(self, token_string: str) -> Any:
        if token_string in self.tokens:
            return Token(token_string, "profile", 1, time.time() + 3600)
        return None


def _flask(protector: ResourceProtector) -> Flask:
    flask_app = Flask(__name__)
    flask_app.add_url_rule("/r", "r", protector("profile")(lambda: "ok"))
    return flask_app


def _status(flask_app: Flask, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return flask_app.test_client().get("/r", headers=headers).status_code


def test_a_second_protector_cannot_share_a_cache() -> None:
    """Protector A's entry says "A's validators accepted this token"; shared,
    protector B served it although none of B's validators would."""
    cache = TokenCache(ttl=60)
    a = ResourceProtector(cache=cache)
    a.register_token_validator(Accepts("only-a"))
    assert _status(_flask(a), "only-a") == 200
    with pytest.raises(ValueError, match="another ResourceProtector"):
        ResourceProtector(cache=cache)
    assert ResourceProtector(cache=None).cache is None


def test_a_cache_whose_protector_is_gone_serves_the_next_one_afresh() -> None:
    cache = TokenCache(ttl=60)
    a = ResourceProtector(cache=cache)
    a.register_token_validator(Accepts("only-a"))
    flask_a = _flask(a)
    assert _status(flask_a, "only-a") == 200
    assert len(cache) == 1
    del a, flask_a
    gc.collect()
    b = ResourceProtector(cache=cache)
    b.register_token_validator(Accepts())
    assert _status(_flask(b), "only-a") == 401
