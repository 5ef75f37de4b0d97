"""The HTTP client itself, on real loopback sockets: fork safety.

The validators' tests cover what each answer means; these cover what the
client does with its connections.
"""

from __future__ import annotations

import ctypes
import os
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from bearerguard._http import HTTPClient

from .conftest import fork_while_held
from .servers import LoopbackServer, Reply, Seen


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


def _libc_fork() -> int:
    # fork(2) itself, as uWSGI (without py-call-osafterfork) forks its
    # workers: Python's at-fork hooks do not run in the child.
    fork: Callable[[], int] = ctypes.CDLL(None).fork
    return fork()


def in_child(child: Callable[[], bool], fork: Callable[[], int]) -> bool:
    """Run ``child()`` in a forked process; its answer (False if it hangs 5 s)."""
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads
        pid = fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write_fd, b"ok" if child() else b"no")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        deadline = time.monotonic() + 5
        while not os.waitpid(pid, os.WNOHANG)[0]:
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                return False
            time.sleep(0.01)
        return os.read(read_fd, 2) == b"ok"
    finally:
        os.close(read_fd)


FORKS = {"os.fork": os.fork, "libc-fork-without-hooks": _libc_fork}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
def test_a_forked_child_never_uses_a_connection_its_parent_opened(
    server: LoopbackServer, client: HTTPClient, fork: Callable[[], int]
) -> None:
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
