"""A JWKS endpoint that hangs, drips, floods or speaks no TLS, measured in wall time.

``test_jwks.py`` covers what a misbehaving endpoint *answers* (HTML, 404,
redirect loops, unusable keys) on a fake clock. These tests cover what it
does to *threads*, on real sockets and the real clock:

* no request blocks longer than the fetch timeout, however the endpoint
  stalls: silent after accepting, a response that never ends, headers or a
  body dripped a byte at a time (each byte well inside the socket timeout), a
  TLS handshake that never comes;
* while one request is stuck in a fetch, the others are not: cached tokens,
  and new tokens signed by a known key, are answered at once;
* a 10 MB key set is cut off at ``max_jwks_bytes`` without being buffered,
  and the last good keys keep serving;
* where https is required, an endpoint that answers plain HTTP (or TLS with a
  certificate nobody trusts) gives no keys.

The validators' key-set clock is a ``FakeClock`` so that "the set is due for a
refresh" is set exactly; the durations asserted are wall time, measured with
``time.monotonic`` around real socket I/O.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bearerguard import ResourceProtector
from bearerguard.errors import SigningKeysUnavailableError
from bearerguard.transport import HTTPClient
from bearerguard.validators.jwt import JWTBearerTokenValidator

from .conftest import FakeClock
from .jwtkit import (
    AUDIENCE,
    ISSUER,
    JWKS_PATH,
    IssuerStub,
    Keypair,
    cached_keypair,
    call,
    fetches,
    jwks,
    loopback_client,
    make_token,
    protected_app,
)
from .servers import LoopbackServer, Reply, Seen

KEY = cached_keypair("ES256", "faults-ec")
#: Fetch timeout of the tests that measure blocking, and the slack allowed on
#: top of it for thread scheduling on a busy two-core CI machine.
TIMEOUT, SLACK = 0.5, 0.7
#: How long a dripping or silent endpoint keeps a connection: long enough that
#: a client without a whole-exchange deadline is caught, short enough to fail fast.
STALL = 4.0


# -- endpoints that misbehave at the socket level ------------------------------------------


Behaviour = Callable[[socket.socket, threading.Event], None]


class RawServer:
    """A TCP server on 127.0.0.1 whose bytes (and pauses) a behaviour writes.

    ``LoopbackServer`` answers whole replies; a drip, a silence or an endless
    body needs the socket itself. ``close()`` ends every behaviour at once.
    """

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn, self.stop)
        except OSError:
            pass  # the client gave up: what these tests want
        finally:
            conn.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{JWKS_PATH}"

    def close(self) -> None:
        self.stop.set()
        self._listener.close()


def read_request(conn: socket.socket) -> None:
    """Read one request, body included: closing a socket with unread bytes
    sends a reset, which could beat the reply to the client."""
    conn.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    missing = int(length.group(1)) - len(body) if length else 0
    while missing > 0:
        chunk = conn.recv(min(missing, 65536))
        if not chunk:
            return
        missing -= len(chunk)


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accepts, reads nothing, says nothing (also: a TLS handshake that never comes)."""
    stop.wait(STALL)


def hanging(conn: socket.socket, stop: threading.Event) -> None:
    """Reads the request, then thinks for ever."""
    read_request(conn)
    stop.wait(STALL)


def _drip(conn: socket.socket, stop: threading.Event, head: bytes, byte: bytes) -> None:
    read_request(conn)
    conn.sendall(head)
    deadline = time.monotonic() + STALL
    while time.monotonic() < deadline and not stop.wait(0.05):
        conn.sendall(byte)  # each byte well inside any socket timeout


def drip_headers(conn: socket.socket, stop: threading.Event) -> None:
    _drip(conn, stop, b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a")


def drip_body(conn: socket.socket, stop: threading.Event) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    _drip(conn, stop, head, b" ")


TEN_MB = 10 * 1024 * 1024
_CHUNK = b" " * 65536  # made once: the server must not show up in tracemalloc


def flood(declared: bool) -> Behaviour:
    """10 MB of whitespace, with or without a Content-Length saying so."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        read_request(conn)
        length = f"Content-Length: {TEN_MB}\r\n" if declared else "Connection: close\r\n"
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}\r\n".encode())
        for _ in range(TEN_MB // len(_CHUNK)):
            if stop.is_set():
                return
            conn.sendall(_CHUNK)

    return behaviour


def good_jwks(conn: socket.socket, stop: threading.Event, missing: int = 0) -> None:
    """Good keys; with ``missing``, a Content-Length that many bytes longer than sent."""
    read_request(conn)
    body = json.dumps(jwks(KEY)).encode()
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body) + missing}\r\n\r\n".encode()
        + body
    )


@pytest.fixture
def raw() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def validator(uri: str, clock: FakeClock, **options: Any) -> JWTBearerTokenValidator:
    options.setdefault("fetch_timeout", TIMEOUT)
    options.setdefault("http", loopback_client())
    return JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks_uri=uri, clock=clock, **options)


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds taken, result or the exception raised)."""
    started = time.monotonic()
    try:
        result: Any = function()
    except Exception as exc:
        result = exc
    return time.monotonic() - started, result


# -- no thread blocks longer than the timeout -------------------------------------------------

STALLS: dict[str, tuple[Behaviour, str]] = {
    "silent": (silent, "http"),
    "hanging": (hanging, "http"),
    "drip-headers": (drip_headers, "http"),
    "drip-body": (drip_body, "http"),
    "tls-handshake-never-answered": (silent, "https"),
}


@pytest.mark.parametrize(("behaviour", "scheme"), list(STALLS.values()), ids=list(STALLS.keys()))
def test_no_thread_blocks_longer_than_the_fetch_timeout(
    raw: Callable[[Behaviour], RawServer], clock: FakeClock, behaviour: Behaviour, scheme: str
) -> None:
    server = raw(behaviour)
    v = validator(server.url(scheme), clock)
    tokens = [make_token(KEY, now=clock()) for _ in range(8)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda t: timed(lambda: v.validate(t)), tokens))

    for seconds, outcome in results:
        assert isinstance(outcome, SigningKeysUnavailableError), outcome
        assert seconds < TIMEOUT + SLACK, f"a request was held {seconds:.2f}s"
    assert server.connections == 1, "one fetch for all threads, none per request"


# -- other requests are not stalled while one thread fetches ------------------------------------


class Gate:
    """A JWKS endpoint that can be told to hang (until released)."""

    def __init__(self) -> None:
        self.stub = IssuerStub(KEY)
        self.closed = threading.Event()
        self.release = threading.Event()

    def __call__(self, seen: Seen) -> Reply:
        if self.closed.is_set():
            self.release.wait(STALL)
        return self.stub(seen)


@pytest.fixture
def gate(serve: Callable[[Any], LoopbackServer]) -> Iterator[tuple[Gate, LoopbackServer]]:
    made = Gate()
    yield made, serve(made)
    made.release.set()  # let the server's handler threads end


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.005)


@pytest.mark.parametrize("trigger", ["refresh-due", "unknown-kid"])
def test_a_hanging_fetch_stalls_no_other_request(
    gate: tuple[Gate, LoopbackServer], clock: FakeClock, trigger: str
) -> None:
    endpoint, server = gate
    fetch_timeout = 1.5
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(
        validator(server.url + JWKS_PATH, clock, fetch_timeout=fetch_timeout, jwks_lifespan=100)
    )
    app = protected_app(protector)
    cached = make_token(KEY, now=clock())
    assert call(app, cached).status == 200  # keys loaded, token cached
    endpoint.closed.set()
    if trigger == "refresh-due":
        clock.advance(95)  # past 90 % of the lifespan: the next verification refreshes
        stuck_token = make_token(KEY, now=clock())
    else:
        forger = Keypair("ES256", "rotated-or-forged", KEY.private_key)
        stuck_token = make_token(forger, now=clock())

    stuck: list[tuple[float, Any]] = []
    fetcher = threading.Thread(target=lambda: stuck.append(timed(lambda: call(app, stuck_token))))
    fetcher.start()
    _wait_for(lambda: fetches(server) == 2)  # the stuck request is inside the fetch

    others = [cached] * 8 + [make_token(KEY, now=clock()) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(lambda t: timed(lambda: call(app, t)), others))

    assert fetcher.is_alive(), "the others were answered while the fetch still hung"
    for seconds, outcome in answered:
        assert outcome.status == 200, outcome
        assert seconds < fetch_timeout / 2, f"a request waited {seconds:.2f}s for the fetch"
    fetcher.join(fetch_timeout + SLACK + 1)
    assert not fetcher.is_alive()
    [(seconds, outcome)] = stuck
    assert seconds < fetch_timeout + SLACK, f"the fetching request was held {seconds:.2f}s"
    # Stale keys serve a due refresh; an unknown kid stays unknown.
    assert outcome.status == (200 if trigger == "refresh-due" else 401), outcome
    assert fetches(server) == 2


# -- a 10 MB key set ------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_a_10mb_key_set_is_cut_off_unbuffered_and_stale_keys_serve(
    raw: Callable[[Behaviour], RawServer], clock: FakeClock, declared: bool
) -> None:
    server = raw(good_jwks)
    v = validator(server.url(), clock, fetch_timeout=2.0, jwks_lifespan=100)
    assert v.validate(make_token(KEY, now=clock())).subject == "user-1"
    server.behaviour = flood(declared)
    clock.advance(150)  # the set has lapsed: the next verification refetches

    tracemalloc.start()
    try:
        seconds, info = timed(lambda: v.validate(make_token(KEY, now=clock())))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert not isinstance(info, Exception), info
    assert info.subject == "user-1", "the last good keys keep serving"
    assert v.fetcher is not None and (v.fetcher.attempts, v.fetcher.successes) == (2, 1)
    assert peak < 2 * 1024 * 1024, f"{peak} bytes traced: the body was buffered"
    assert seconds < 2.0


def test_a_10mb_key_set_with_no_keys_yet_is_a_clean_503(
    raw: Callable[[Behaviour], RawServer], clock: FakeClock
) -> None:
    server = raw(flood(declared=False))
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(validator(server.url(), clock, fetch_timeout=2.0))

    outcome = call(protected_app(protector), make_token(KEY, now=clock()))

    assert (outcome.status, outcome.description) == (503, "signing keys unavailable")


def test_a_key_set_cut_short_of_its_content_length_is_not_used(
    raw: Callable[[Behaviour], RawServer], clock: FakeClock
) -> None:
    """RFC 9112 §8: a message closed before Content-Length bytes came is
    incomplete. Here what did come parses (JSON whitespace could follow), but
    an incomplete key set is a failed fetch, not a key set."""
    server = raw(lambda conn, stop: good_jwks(conn, stop, missing=100))

    with pytest.raises(SigningKeysUnavailableError):
        validator(server.url(), clock).validate(make_token(KEY, now=clock()))


# -- TLS where https is required ----------------------------------------------------------------


def test_plain_http_where_https_is_configured_gives_no_keys(
    serve: Callable[[Any], LoopbackServer], clock: FakeClock
) -> None:
    server = serve(IssuerStub(KEY))  # answers plain HTTP, with good keys
    https_uri = server.url.replace("http://", "https://") + JWKS_PATH
    protector = ResourceProtector(clock=clock)
    protector.register_token_validator(validator(https_uri, clock, http=HTTPClient()))

    outcome = call(protected_app(protector), make_token(KEY, now=clock()))

    assert (outcome.status, outcome.description) == (503, "signing keys unavailable")
    assert server.requests == [], "no HTTP request was sent in the clear"


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_jwks(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https JWKS endpoint on 127.0.0.1 with a self-signed certificate."""
    cert, key = _self_signed(tmp_path)
    body = json.dumps(jwks(KEY)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client refusing our certificate is the expected case

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}{JWKS_PATH}", cert
    httpd.shutdown()
    httpd.server_close()
    thread.join(2)


def test_tls_with_an_untrusted_certificate_gives_no_keys(
    tls_jwks: tuple[str, Path], clock: FakeClock
) -> None:
    uri, cert = tls_jwks
    token = make_token(KEY, now=clock())
    default = validator(uri, clock, http=HTTPClient(pool_size=0))

    with pytest.raises(SigningKeysUnavailableError):
        default.validate(token)

    trusting = ssl.create_default_context(cafile=str(cert))
    pinned = validator(uri, clock, http=HTTPClient(pool_size=0, ssl_context=trusting))
    assert pinned.validate(token).subject == "user-1", "the endpoint itself works"


# -- one deadline per fetch ------------------------------------------------------------------


def test_discovery_over_several_metadata_urls_ends_within_one_timeout(
    raw: Callable[[Behaviour], RawServer], clock: FakeClock
) -> None:
    """An issuer with a path has three metadata URLs (OpenID Connect, RFC 8414
    inserted and appended); each hangs. The fetch has one timeout, not three."""
    server = raw(hanging)
    issuer = f"http://127.0.0.1:{server.port}/tenant"
    timeout = 0.8
    v = JWTBearerTokenValidator(
        issuer, AUDIENCE, clock=clock, fetch_timeout=timeout, http=loopback_client()
    )

    seconds, outcome = timed(lambda: v.validate(make_token(KEY, now=clock(), iss=issuer)))

    assert isinstance(outcome, SigningKeysUnavailableError), outcome
    assert seconds < timeout + SLACK, f"the fetch took {seconds:.2f}s"


def test_an_unknown_kid_waiting_for_a_hung_refresh_ends_within_its_timeout(
    gate: tuple[Gate, LoopbackServer], clock: FakeClock
) -> None:
    """A refresh hangs; a token with a new kid waits for it, and then would
    refetch: its wait and its own fetch share one timeout."""
    endpoint, server = gate
    fetch_timeout = 1.0
    v = validator(server.url + JWKS_PATH, clock, fetch_timeout=fetch_timeout, jwks_lifespan=100)
    v.validate(make_token(KEY, now=clock()))
    endpoint.closed.set()
    clock.advance(95)  # due for a refresh, which hangs
    refresher = threading.Thread(
        target=lambda: timed(lambda: v.validate(make_token(KEY, now=clock())))
    )
    refresher.start()
    _wait_for(lambda: fetches(server) == 2)

    rotated = Keypair("ES256", "rotated-in", KEY.private_key)
    seconds, outcome = timed(lambda: v.validate(make_token(rotated, now=clock())))

    refresher.join(fetch_timeout + SLACK + 1)
    assert getattr(outcome, "status_code", None) in (401, 503), outcome
    assert seconds < fetch_timeout + SLACK, f"the unknown kid was held {seconds:.2f}s"
