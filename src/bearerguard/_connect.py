"""Opening a TCP connection within a time limit, the name lookup included.

``socket.create_connection`` bounds the connect, not ``getaddrinfo`` before
it: a resolver that does not answer holds the caller for as long as its own
retries take (5 s a try, several tries, per ``resolv.conf``), whatever the
timeout of the JWKS or introspection call, and the transport's watchdog
cannot cut a socket that does not exist yet. So a host name is looked up in
a thread of its own, waited for only as long as the call has left; the
thread finishes (or not) on its own. An address literal needs no lookup.

A thread per lookup rather than a pool: it happens only for a new connection
(kept-alive ones are reused), and a pool's threads would not survive a fork.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

__all__ = ["create_connection"]

AddrInfo = list[tuple[Any, ...]]


def _resolve(host: str, port: int, timeout: float) -> AddrInfo:
    """``getaddrinfo(host, port)`` for TCP, or ``TimeoutError`` after ``timeout`` s."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:  # a literal: nothing to look up, and nothing that can hang
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    answer: list[AddrInfo | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            answer.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller, raised there
            answer.append(exc)
        done.set()

    threading.Thread(target=lookup, name="bearerguard-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise TimeoutError(f"no address for {host} within {timeout:.3g} s")
    found = answer[0]
    if isinstance(found, BaseException):
        raise found
    return found


def create_connection(
    address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """``socket.create_connection``'s contract, the lookup inside ``timeout`` too:
    the addresses in order, each with the time left; the last error if none answers."""
    if timeout is None:
        return socket.create_connection(address, None, source_address)
    host, port = address
    deadline = time.monotonic() + timeout
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in _resolve(host, port, timeout):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            if source_address is not None:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sock.settimeout(timeout)
        return sock
    raise error if error is not None else TimeoutError(f"no connection to {host} in time")
