"""An introspection endpoint misbehaving at the socket level.

``test_introspection.py`` covers the answers (500, invalid JSON, ``active``
missing, a slow reply, a refused connection) and recovery. Here: an endpoint
that accepts and never answers, or drips its reply a byte at a time, must
cost a request no more than the timeout (then 503), and a request stuck on it
must not hold up tokens that are already cached; one that sends interim (1xx)
responses before its answers must not shift answers from token to token.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask

from bearerguard import ResourceProtector, current_token
from bearerguard.errors import ValidatorUnavailableError
from bearerguard.transport import HTTPClient
from bearerguard.validators import IntrospectionTokenValidator

from .jwtkit import loopback_client
from .test_faults_jwks import (
    SLACK,
    TIMEOUT,
    Behaviour,
    RawServer,
    drip_body,
    drip_headers,
    hanging,
    read_request,
)
from .test_http_client import EARLY_HINTS, final, next_request

AUDIENCE = "https://api.example"
ACTIVE = b'{"active": true, "scope": "profile", "sub": "alice", "aud": "https://api.example"}'


def answer_then(stall: Behaviour) -> Behaviour:
    """Answer the first request properly, then stall like ``stall``."""
    answered = threading.Event()

    def behaviour(conn: Any, stop: threading.Event) -> None:
        if answered.is_set():
            return stall(conn, stop)
        answered.set()
        read_request(conn)
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + f"Content-Length: {len(ACTIVE)}\r\n\r\n".encode()
            + ACTIVE
        )

    return behaviour


@pytest.fixture
def raw() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def app_for(server: RawServer, http: HTTPClient | None = None) -> Flask:
    protector = ResourceProtector()
    protector.register_token_validator(
        IntrospectionTokenValidator(
            f"http://127.0.0.1:{server.port}/introspect",
            "rs",
            "secret",
            audience=AUDIENCE,
            timeout=TIMEOUT,
            http=http or loopback_client(),
        )
    )
    app = Flask(__name__)
    app.add_url_rule("/r", "r", protector("profile")(lambda: current_token["sub"]))
    return app


def get(app: Flask, token: str) -> tuple[float, int]:
    started = time.monotonic()
    status = app.test_client().get("/r", headers={"Authorization": f"Bearer {token}"}).status_code
    return time.monotonic() - started, status


STALLS = {"hanging": hanging, "drip-headers": drip_headers, "drip-body": drip_body}


@pytest.mark.parametrize("stall", list(STALLS.values()), ids=list(STALLS.keys()))
def test_a_stalled_endpoint_costs_at_most_the_timeout_then_503(
    raw: Callable[[Behaviour], RawServer], stall: Behaviour
) -> None:
    app = app_for(raw(stall))

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: get(app, f"token-{i}"), range(4)))

    for seconds, status in results:
        assert status == 503
        assert seconds < TIMEOUT + SLACK, f"a request was held {seconds:.2f}s"


def test_cached_tokens_are_answered_while_an_introspection_call_hangs(
    raw: Callable[[Behaviour], RawServer],
) -> None:
    server = raw(answer_then(hanging))
    app = app_for(server)
    assert get(app, "cached")[1] == 200
    stuck: list[tuple[float, int]] = []
    caller = threading.Thread(target=lambda: stuck.append(get(app, "new-token")))
    caller.start()
    deadline = time.monotonic() + 5
    while server.connections < 2:  # the new token's introspection is in flight
        assert time.monotonic() < deadline
        time.sleep(0.005)

    answered = [get(app, "cached") for _ in range(20)]

    assert caller.is_alive(), "the cached token was answered while the call hung"
    assert all(status == 200 for _, status in answered)
    assert max(seconds for seconds, _ in answered) < TIMEOUT / 2
    caller.join(TIMEOUT + SLACK + 1)
    assert stuck and stuck[0][1] == 503


def test_interim_responses_never_shift_an_answer_to_the_next_token(
    raw: Callable[[Behaviour], RawServer],
) -> None:
    """The review's case: with 1xx taken as final, the victim's answer stayed
    on the pooled connection, and the junk token sent next was accepted as her."""
    answers: list[bytes] = []

    def introspection(conn: Any, stop: threading.Event) -> None:
        buffered = bytearray()
        while next_request(conn, buffered) is not None:
            conn.sendall(EARLY_HINTS)
            time.sleep(0.01)  # hints first, the answer when it is ready, as servers do
            conn.sendall(final(answers.pop(0)))

    answers += [ACTIVE, json.dumps({"active": False}).encode()]
    http = HTTPClient()
    try:
        app = app_for(raw(introspection), http)
        client = app.test_client()
        victim = client.get("/r", headers={"Authorization": "Bearer victim"})
        junk = client.get("/r", headers={"Authorization": "Bearer junk"})
    finally:
        http.close()
    outcome = (victim.status_code, victim.get_data(), junk.status_code, junk.get_data())
    assert outcome[:3] == (200, b"alice", 401), outcome


def test_a_retry_gets_only_the_time_left(raw: Callable[[Behaviour], RawServer]) -> None:
    """A kept-alive connection that the server closes after a long silence is
    retried on a fresh one, which hangs: the call still ends at its timeout,
    not at the silence plus a second timeout."""
    timeout = 1.5

    def behaviour(conn: Any, stop: threading.Event) -> None:
        if server.connections > 1:
            return hanging(conn, stop)
        read_request(conn)
        conn.sendall(final(ACTIVE))  # kept alive
        read_request(conn)
        stop.wait(timeout * 0.9)  # then says nothing, and closes: a retry is due

    server = raw(behaviour)
    http = HTTPClient()
    validator = IntrospectionTokenValidator(
        f"http://127.0.0.1:{server.port}/introspect",
        "rs",
        "secret",
        audience=AUDIENCE,
        timeout=timeout,
        http=http,
    )
    try:
        assert validator.validate("first").subject == "alice"
        started = time.monotonic()
        with pytest.raises(ValidatorUnavailableError):
            validator.validate("second")
        seconds = time.monotonic() - started
    finally:
        http.close()
    assert server.connections == 2, "the retry was made"
    assert seconds < timeout + SLACK, f"the call took {seconds:.2f}s"
