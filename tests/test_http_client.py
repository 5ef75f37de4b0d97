"""The HTTP client itself, on real loopback sockets: fork safety, framing.

The validators' tests cover what each answer means; these cover what the
client does with its connections.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bearerguard import transport
from bearerguard.transport import FetchError, HTTPClient

from .conftest import fork_while_held, run_in_child
from .servers import LoopbackServer, Reply, Seen
from .test_faults_jwks import Behaviour, RawServer


def echo(seen: Seen) -> Reply:
    return Reply(200, seen.path)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    server = LoopbackServer(echo)
    yield server
    server.close()


@pytest.fixture
def client() -> Iterator[HTTPClient]:
    client = HTTPClient()
    yield client
    client.close()


def accepted(server: LoopbackServer) -> Callable[[], int]:
    """Count the TCP connections ``server`` accepts from now on."""
    count = 0
    original = server._server.get_request

    def counting() -> Any:
        nonlocal count
        count += 1
        return original()

    server._server.get_request = counting  # type: ignore[method-assign]
    return lambda: count


def _fork_without_our_hook(client: HTTPClient) -> Callable[[], int]:
    """A fork in which bearerguard's at-fork hook skips ``client``, as when a
    server forks with fork(2) itself (uWSGI without ``py-call-osafterfork``):
    the child then still holds the parent's pool, and the pid check on first
    use must drop it. (A real fork(2) from this multi-threaded test process
    would leave CPython's own thread state broken in the child, with or
    without bearerguard: a thread started there may never run.)"""

    def fork() -> int:
        transport._clients.discard(client)
        try:
            return os.fork()
        finally:
            transport._clients.add(client)

    return fork


def in_child(child: Callable[[], bool], fork: Callable[[], int]) -> bool:
    """Run ``child()`` in a forked process; its answer (False if it hangs 5 s)."""
    return run_in_child(child, fork) is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("hooked", [True, False], ids=["os.fork", "fork-without-our-hook"])
def test_a_forked_child_never_uses_a_connection_its_parent_opened(
    server: LoopbackServer, client: HTTPClient, hooked: bool
) -> None:
    fork = os.fork if hooked else _fork_without_our_hook(client)
    connections = accepted(server)
    assert client.request("GET", server.url + "/parent").body == b"/parent"
    assert connections() == 1  # kept alive in the parent's pool

    def child() -> bool:
        return client.request("GET", server.url + "/child").body == b"/child"

    assert in_child(child, fork)
    assert connections() == 2, "the child opened its own connection"
    assert client.request("GET", server.url + "/parent-again").body == b"/parent-again"
    assert connections() == 2, "the parent still uses its own"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_the_pool_is_locked_does_not_deadlock(
    server: LoopbackServer, client: HTTPClient
) -> None:
    client.request("GET", server.url + "/parent")

    def child() -> bool:
        return client.request("GET", server.url + "/child").body == b"/child"

    assert fork_while_held(client._lock, child)


# -- interim (1xx) responses and stray bytes ------------------------------------------


def next_request(conn: socket.socket, buffered: bytearray) -> str | None:
    """The path of the next request on ``conn`` (body read too); None at its end."""
    while b"\r\n\r\n" not in buffered:
        chunk = conn.recv(4096)
        if not chunk:
            return None
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    need = int(length.group(1)) if length else 0
    while len(rest) < need:
        rest += conn.recv(65536)
    buffered[:] = rest[need:]
    return head.split(b" ")[1].decode()


def final(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def interim_then_final(*interims: bytes) -> Behaviour:
    """Each request on a kept-alive connection: ``interims``, then 200 with its path.

    Each in its own segment, a moment apart, as a server sends hints while it
    prepares the answer (in one segment, the client's read-ahead would take
    the answer with the interim and lose it, which hides the bug)."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        buffered = bytearray()
        while (path := next_request(conn, buffered)) is not None:
            for interim in interims:
                conn.sendall(interim)
                time.sleep(0.002)
            conn.sendall(final(path.encode()))

    return behaviour


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
INTERIMS = {
    "103": (EARLY_HINTS,),
    "102": (PROCESSING,),
    "102-103-103": (PROCESSING, EARLY_HINTS, EARLY_HINTS),
    "100-then-103": (CONTINUE, EARLY_HINTS),
}


@pytest.fixture
def raw() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("interims", INTERIMS.values(), ids=INTERIMS.keys())
def test_interim_responses_are_skipped_and_the_connection_stays_in_step(
    raw: Callable[[Behaviour], RawServer], client: HTTPClient, interims: tuple[bytes, ...]
) -> None:
    server = raw(interim_then_final(*interims))
    base = f"http://127.0.0.1:{server.port}"
    for path in ("/first", "/second", "/third"):
        response = client.request("GET", base + path)
        assert (response.status, response.body) == (200, path.encode())
    assert server.connections == 1, "one kept-alive connection, read in step"


@pytest.mark.parametrize(
    "interims",
    [(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",), (EARLY_HINTS,) * 11],
    ids=["101-never-asked-for", "endless-103"],
)
def test_an_unasked_101_or_endless_interim_responses_fail(
    raw: Callable[[Behaviour], RawServer], client: HTTPClient, interims: tuple[bytes, ...]
) -> None:
    server = raw(interim_then_final(*interims))
    with pytest.raises(FetchError):
        client.request("GET", f"http://127.0.0.1:{server.port}/x")


def test_bytes_arriving_on_an_idle_connection_retire_it(
    raw: Callable[[Behaviour], RawServer], client: HTTPClient
) -> None:
    """A server that answers twice: the stray answer must not be read as the
    answer to the next request."""
    strayed = threading.Event()

    def twice(conn: socket.socket, stop: threading.Event) -> None:
        buffered = bytearray()
        while (path := next_request(conn, buffered)) is not None:
            conn.sendall(final(path.encode()))
            if not strayed.is_set():
                time.sleep(0.05)  # after the answer was read: no longer in its buffer
                conn.sendall(final(b"stray"))
                strayed.set()

    server = raw(twice)
    base = f"http://127.0.0.1:{server.port}"
    assert client.request("GET", base + "/first").body == b"/first"
    assert strayed.wait(5)
    time.sleep(0.05)  # delivered over loopback

    assert client.request("GET", base + "/second").body == b"/second"
    assert server.connections == 2


# -- the name lookup is inside the timeout too ---------------------------------------


def test_a_name_lookup_that_never_answers_ends_within_the_timeout(
    client: HTTPClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that does not answer (a fault no loopback server can make:
    ``getaddrinfo`` is stubbed for one name) costs the call its timeout, not
    the resolver's retries, and nothing is sent anywhere."""
    real = socket.getaddrinfo
    release = threading.Event()

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "as.hangs.invalid":
            release.wait(10)  # as a resolver waiting on a dead name server
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    started = time.monotonic()
    try:
        with pytest.raises(FetchError):
            client.request("GET", "https://as.hangs.invalid/jwks.json", timeout=0.4)
    finally:
        release.set()
    assert time.monotonic() - started < 1.5


def test_a_host_name_is_looked_up_and_each_address_tried(
    server: LoopbackServer, client: HTTPClient
) -> None:
    """``localhost`` goes through the lookup; where it names ::1 first, the
    refused IPv6 connect is followed by 127.0.0.1, where the server listens."""
    port = server.url.rsplit(":", 1)[1]
    answer = client.request("GET", f"http://localhost:{port}/via-name", timeout=5)
    assert (answer.status, answer.body) == (200, b"/via-name")
