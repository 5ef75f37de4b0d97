"""A small HTTP client for JWKS, discovery and introspection.

What it guarantees: idle keep-alive connections per origin, never shared
with a forked child; a bounded response size; every exchange bounded as a
whole in time, retry included; no redirects followed; plain http only to
loopback hosts; interim (1xx) responses skipped (RFC 9110 §15.2), and a
connection pooled only when nothing is left unread on it.

Why hand-written, on ``http.client``: ``urllib.request`` opens a connection
per call (introspection would pay a TCP handshake every time) and follows
redirects. httpx (on h11) parses 1xx responses, and urllib3 and httpx pool
connections well, but their timeouts bound each socket operation, not the
exchange, and neither resets its pool in a forked child (urllib3 #850: the
maintainers leave that to the caller). Those two properties, the ones a
resource server under gunicorn needs most, would stay ours on top of either,
and either would be a new core dependency for what remains: the 1xx
framing, which ``http.client`` gets wrong (it skips only ``100 Continue``)
and :class:`_Response` fixes.

Socket timeouts bound each read, not the exchange: a server that drips a byte
every second never trips a 5 s timeout. So one watchdog thread per process
shuts down the socket of any exchange still running at its deadline; before
there is a socket, the name lookup is bounded by :mod:`bearerguard._connect`.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import ipaddress
import itertools
import os
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ._connect import create_connection

__all__ = ["FetchError", "HTTPClient", "HTTPResponse", "check_url", "default_client"]

MAX_BYTES = 1 << 20
#: Interim (1xx) responses skipped before a final one; more is an error.
MAX_INTERIM = 10


class FetchError(Exception):
    """The request failed: refused, timed out, too large, redirected, or not allowed."""


@dataclass(frozen=True)
class HTTPResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> str:
    """Return ``url`` if it is https, or http to a loopback host; else raise ValueError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return url
    raise ValueError(f"https is required (plain http only to loopback hosts): {url!r}")


Origin = tuple[str, str, int]


def _split(url: str) -> tuple[Origin, str]:
    """``(scheme, host, port)`` and the request target of ``url``."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname or "", port), target


class _Watchdog:
    """Cuts the sockets of exchanges past their deadline (one thread per process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[list[Any]] = []
        self._seq = itertools.count()
        self._pid = 0

    def arm(self, deadline: float, conn: http.client.HTTPConnection) -> list[Any]:
        entry = [deadline, next(self._seq), conn]
        if self._pid != os.getpid():
            self._start()
        with self._cond:
            heapq.heappush(self._heap, entry)
            self._cond.notify()
        return entry

    def _start(self) -> None:
        # First use in this process, or a child forked without the at-fork hook
        # (uWSGI calls none by default): the parent's thread is not here, and
        # its condition may have been held at the fork.
        with _fork_lock:
            if self._pid == os.getpid():
                return
            self._cond = threading.Condition()
            self._heap = []
            thread = threading.Thread(target=self._run, name="bearerguard-http-watchdog")
            thread.daemon = True
            thread.start()
            self._pid = os.getpid()

    @staticmethod
    def disarm(entry: list[Any]) -> None:
        entry[2] = None  # dropped lazily when its deadline comes up

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                deadline, _, conn = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            sock = getattr(conn, "sock", None) if conn is not None else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


_fork_lock = threading.Lock()
_watchdog = _Watchdog()


class _Response(http.client.HTTPResponse):
    """``http.client``'s response, with every interim (1xx) response skipped.

    ``http.client`` skips only ``100 Continue``: a ``102 Processing`` or a
    ``103 Early Hints`` is taken as the final answer, and the real one is left
    on the connection for the next exchange to read as its own. RFC 9110
    §15.2: a client parses any number of 1xx responses before the final one.
    A ``101`` answers an Upgrade, which is never sent here: an error.
    """

    def _read_status(self) -> tuple[str, int, str]:
        # Called by begin() for each status line; CPython has had it since
        # 3.0, and typeshed does not declare it (a private method).
        for _ in range(MAX_INTERIM + 1):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if not 100 <= status < 200:
                return version, status, reason
            if status == 101:
                raise http.client.HTTPException("101 Switching Protocols, never asked for")
            http.client.parse_headers(self.fp)  # the interim's fields: bounded, and dropped
        raise http.client.HTTPException(f"more than {MAX_INTERIM} interim responses")


class _Connection(http.client.HTTPConnection):
    response_class = _Response

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = create_connection  # the name lookup bounded too


class _TLSConnection(http.client.HTTPSConnection):
    response_class = _Response

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = create_connection


def _readable(sock: socket.socket) -> bool:
    """True if ``sock`` has bytes, or end of stream, waiting: now, without blocking."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):  # select() refuses descriptors past FD_SETSIZE
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _close(conn: http.client.HTTPConnection, response: http.client.HTTPResponse | None) -> None:
    # With Connection: close (or no length), http.client hands the socket to
    # the response and forgets it: conn.close() alone leaves it open.
    if response is not None:
        response.close()
    conn.close()


class HTTPClient:
    """Thread-safe; keeps up to ``pool_size`` idle connections per origin.

    Fork-safe: a child process never uses a connection its parent opened. A
    socket inherited through ``fork()`` is the parent's connection too, so two
    processes writing requests on it would read each other's answers (under
    gunicorn ``--preload``, a warm-up request in the master leaves one that
    every worker inherits). The pool is dropped in the child by an at-fork
    hook, and again on first use wherever the process id changed without it.
    """

    def __init__(
        self,
        *,
        pool_size: int = 8,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool_size = pool_size
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.clock = clock
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _clients.add(self)

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
        max_bytes: int = MAX_BYTES,
    ) -> HTTPResponse:
        """Send one request; the whole call, retry included, ends within ``timeout`` seconds."""
        origin, target = _split(check_url(url))
        host = origin[1]
        deadline = self.clock() + timeout
        sent_headers = {"Accept": "application/json", "User-Agent": "bearerguard"}
        sent_headers.update(headers or {})
        for attempt in (0, 1):
            # One deadline for the call: a retry gets only the time left.
            left = deadline - self.clock()
            if left <= 0:
                raise FetchError(f"no complete answer from {host} in {timeout} s")
            conn, reused = self._checkout(origin, left)
            guard = _watchdog.arm(time.monotonic() + left, conn)  # its own clock, not self.clock
            response: http.client.HTTPResponse | None = None
            try:
                conn.request(method, target, body=body, headers=sent_headers)
                response = conn.getresponse()
                data = self._read(response, max_bytes, deadline)
            except FetchError:
                _close(conn, response)  # too large or too slow: the rest of the body is unread
                raise
            except (OSError, http.client.HTTPException) as exc:
                _close(conn, response)
                if self.clock() >= deadline:
                    raise FetchError(f"no complete answer from {host} in {timeout} s") from exc
                # A kept-alive connection the server closed fails on first use; retry once fresh.
                if reused and attempt == 0 and not isinstance(exc, socket.timeout | TimeoutError):
                    continue
                raise FetchError(f"{type(exc).__name__} from {host}") from exc
            finally:
                _watchdog.disarm(guard)
            if response.will_close or not response.isclosed():
                conn.close()  # pooled only once its answer was read to the end
            else:
                self._checkin(origin, conn)
            if 300 <= response.status < 400:
                raise FetchError(f"redirect ({response.status}) not followed")
            return HTTPResponse(response.status, dict(response.getheaders()), data)
        raise FetchError("unreachable")  # pragma: no cover

    def _read(self, response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise FetchError("response too large")
        chunks: list[bytes] = []
        size = 0
        while True:
            if self.clock() > deadline:
                raise FetchError("response too slow")
            # read1: what has arrived (up to the limit), so the deadline is
            # checked between chunks rather than after 64 KiB of a drip.
            chunk = response.read1(min(65536, max_bytes + 1 - size))
            if not chunk:
                if response.length:  # closed before Content-Length bytes came (RFC 9112 §8)
                    raise FetchError("response cut short")
                response.read()  # marks the exchange done, so the connection is reusable
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise FetchError("response too large")

    def _checkout(self, origin: Origin, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        if self._pid != os.getpid():
            self._forget_parent()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None:
                break
            sock = conn.sock
            if sock is None or _readable(sock):
                # Bytes nobody asked for yet (a stray answer would be read as
                # the next one's), or the server closed it: never reused.
                conn.close()
                continue
            sock.settimeout(timeout)
            conn.timeout = timeout
            return conn, True
        scheme, host, port = origin
        if scheme == "https":
            return _TLSConnection(host, port, timeout=timeout, context=self.ssl_context), False
        return _Connection(host, port, timeout=timeout), False

    def _checkin(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.pool_size:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for idle in pools.values():
            for conn in idle:
                conn.close()

    def _forget_parent(self) -> None:
        """In a forked child: drop the connections the parent opened (and its lock)."""
        with _fork_lock:
            if self._pid == os.getpid():
                return  # another thread of this child did it
            pools, self._idle = self._idle, {}
            self._lock = threading.Lock()
            self._pid = os.getpid()
        for idle in pools.values():
            for conn in idle:
                # Closes this process's descriptor only; the parent's stays
                # open. Never shutdown(), which would cut the parent's too
                # (nor SSL unwrap(), which would send it a close_notify).
                conn.close()


# Every live client, so a forked child can drop what its parent opened.
_clients: weakref.WeakSet[HTTPClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    global _fork_lock, _default_lock
    _fork_lock = threading.Lock()
    _default_lock = threading.Lock()
    _watchdog._pid = 0  # its thread stayed in the parent: start another on first use
    for client in list(_clients):
        client._forget_parent()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


_default: HTTPClient | None = None
_default_lock = threading.Lock()


def default_client() -> HTTPClient:
    """The process-wide client, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = HTTPClient()
        return _default
