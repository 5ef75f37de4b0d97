"""Certificate-bound tokens (RFC 8705 §3) and trusted proxies: the thumbprint,
each certificate reader, forwarded headers for DPoP's htu, and the binding on
both fronts over every validator kind that carries a ``cnf``."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes
from flask import Flask, jsonify

from bearerguard import InvalidRequestError, ResourceProtector, TokenCache
from bearerguard.core.certificates import (
    ClientCertificate,
    EnvoyClientCertificate,
    NginxClientCertificate,
    tls_client_certificate,
    x5t_s256,
)
from bearerguard.core.connection import ProxyHeaders
from bearerguard.core.credentials import Credentials
from bearerguard.core.metadata import ResourceMetadata
from bearerguard.core.proxies import TrustedProxies
from bearerguard.validators import BearerTokenValidator, JWTBearerTokenValidator

from .certkit import pki
from .conftest import FakeClock
from .dpopkit import jkt, make_proof
from .fronts import Setup, front, introspection_server, kind, make  # noqa: F401
from .jwtkit import AUDIENCE, ISSUER, b64url, cached_keypair, jwks, make_token

A, B = pki().client_a, pki().client_b
NONE_PRESENTED = "token is bound to a client certificate, and none was presented"
MISMATCH = "client certificate does not match the token's binding"


def creds(peer: str | None = "127.0.0.1", **headers: str) -> Credentials:
    return Credentials(None, peer=peer, proxy_headers=headers)


# -- the thumbprint -----------------------------------------------------------------------


def test_thumbprint_is_base64url_sha256_of_the_der() -> None:
    fingerprint = A.cert.fingerprint(hashes.SHA256())  # cryptography's own, independently
    assert x5t_s256(A.der) == b64url(fingerprint)
    assert x5t_s256(A.der) == b64url(hashlib.sha256(A.der).digest())
    assert "=" not in x5t_s256(A.der) and len(x5t_s256(A.der)) == 43
    assert ClientCertificate.from_pem(A.pem) == ClientCertificate.from_der(A.der)
    assert x5t_s256(A.der) != x5t_s256(B.der)


@pytest.mark.parametrize(
    "pem",
    ["", "not a pem", A.pem.replace("CERTIFICATE", "PRIVATE KEY"), A.pem + A.pem, A.pem[:-40]],
    ids=["empty", "text", "other-block", "two-certs", "truncated"],
)
def test_what_is_no_single_pem_certificate_is_refused(pem: str) -> None:
    with pytest.raises(ValueError):
        ClientCertificate.from_pem(pem)


# -- the readers --------------------------------------------------------------------------


def test_nginx_reader_takes_the_url_escaped_pem() -> None:
    reader = NginxClientCertificate("X-SSL-Client-Cert")
    found = reader(creds(**{"x-ssl-client-cert": A.nginx_escaped}))
    assert found == ClientCertificate(A.thumbprint)
    assert reader(creds()) is None  # nginx sends no header when the client sent no certificate
    assert reader(creds(**{"x-ssl-client-cert": ""})) is None


@pytest.mark.parametrize(
    "value",
    ["garbage", quote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "%ff%fe"],
    ids=["not-pem", "not-der", "not-utf8"],
)
def test_nginx_reader_refuses_a_malformed_header_with_400(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="malformed client certificate header"):
        NginxClientCertificate()(creds(**{"x-ssl-client-cert": value}))


def _xfcc(**pairs: str) -> str:
    return ";".join(f"{k}={v}" for k, v in pairs.items())


def test_envoy_reader_takes_hash_cert_or_both() -> None:
    reader = EnvoyClientCertificate()
    digest = A.cert.fingerprint(hashes.SHA256()).hex()
    cert = quote(A.pem, safe="")
    expected = ClientCertificate(A.thumbprint)
    for value in (
        _xfcc(By="spiffe://proxy", Hash=digest),
        _xfcc(Hash=digest.upper(), Cert=f'"{cert}"'),
        _xfcc(By="spiffe://proxy", Cert=cert, Subject='"CN=client A,O=x;y"'),
    ):
        assert reader(creds(**{"x-forwarded-client-cert": value})) == expected, value
    assert reader(creds(**{"x-forwarded-client-cert": _xfcc(By="spiffe://proxy")})) is None


def test_envoy_reader_uses_the_last_element_the_nearest_proxy_added() -> None:
    reader = EnvoyClientCertificate()
    forged = _xfcc(Hash=B.cert.fingerprint(hashes.SHA256()).hex(), Subject='"CN=a, b"')
    real = _xfcc(Hash=A.cert.fingerprint(hashes.SHA256()).hex())
    found = reader(creds(**{"x-forwarded-client-cert": f"{forged},{real}"}))
    assert found == ClientCertificate(A.thumbprint)


@pytest.mark.parametrize(
    "value",
    [
        _xfcc(Hash="abc"),
        _xfcc(Hash="z" * 64),
        _xfcc(Hash=B.cert.fingerprint(hashes.SHA256()).hex(), Cert=quote(A.pem, safe="")),
        _xfcc(Cert="not-a-cert"),
        'Subject="unterminated',
        "Hash",
    ],
    ids=["short-hash", "not-hex", "hash-and-cert-disagree", "bad-cert", "open-quote", "no-equals"],
)
def test_envoy_reader_refuses_a_malformed_header_with_400(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="malformed x-forwarded-client-cert"):
        EnvoyClientCertificate()(creds(**{"x-forwarded-client-cert": value}))


def test_tls_reader_takes_the_servers_certificate_pem_or_der() -> None:
    assert tls_client_certificate(Credentials(None, client_certificate=A.pem)) == (
        ClientCertificate(A.thumbprint)
    )
    assert tls_client_certificate(Credentials(None, client_certificate=A.der)) == (
        ClientCertificate(A.thumbprint)
    )
    assert tls_client_certificate(Credentials(None)) is None
    with pytest.raises(InvalidRequestError, match="malformed client certificate from the server"):
        tls_client_certificate(Credentials(None, client_certificate="junk"))


# -- trusted proxies ----------------------------------------------------------------------


def test_trusted_proxies_by_address_and_network() -> None:
    proxies = TrustedProxies(["127.0.0.2", "10.0.0.0/8", "fd00::/8"])
    for peer in ("127.0.0.2", "10.1.2.3", "fd00::1", "::ffff:10.0.0.1", "fd00::1%eth0"):
        assert proxies.trusts(peer), peer
    for peer in ("127.0.0.1", "11.0.0.1", "::1", "", None, "testclient", "10.0.0.1:80"):
        assert not proxies.trusts(peer), peer
    with pytest.raises(ValueError):
        TrustedProxies([])
    with pytest.raises(ValueError):
        TrustedProxies(["not-an-address"])


def test_headers_from_an_untrusted_peer_are_ignored() -> None:
    reader = NginxClientCertificate()
    headers = ProxyHeaders(TrustedProxies(["127.0.0.2"]), reader)
    environ = {"HTTP_X_SSL_CLIENT_CERT": A.nginx_escaped, "HTTP_X_FORWARDED_HOST": "evil"}
    assert headers.from_environ({**environ, "REMOTE_ADDR": "127.0.0.1"}) == {}
    trusted = headers.from_environ({**environ, "REMOTE_ADDR": "127.0.0.2"})
    assert trusted == {"x-ssl-client-cert": A.nginx_escaped, "x-forwarded-host": "evil"}
    raw = [(b"x-ssl-client-cert", A.nginx_escaped.encode()), (b"x-other", b"1")]
    assert headers.from_scope({"headers": raw, "client": ("127.0.0.1", 1)}) == {}
    assert headers.from_scope({"headers": raw, "client": ("127.0.0.2", 1)}) == {
        "x-ssl-client-cert": A.nginx_escaped
    }
    assert headers.from_scope({"headers": raw, "client": None}) == {}
    with pytest.raises(ValueError, match="trusted_proxies"):
        ProxyHeaders(None, reader)


URL = "http://127.0.0.1:8000/r?x=1"


@pytest.mark.parametrize(
    ("family", "headers", "expected"),
    [
        ("x-forwarded", {}, URL),
        ("x-forwarded", {"x-forwarded-proto": "https"}, "https://127.0.0.1:8000/r?x=1"),
        (
            "x-forwarded",
            {"x-forwarded-proto": "HTTPS", "x-forwarded-host": "api.example.com"},
            "https://api.example.com/r?x=1",
        ),
        ("x-forwarded", {"x-forwarded-proto": "http, https"}, "https://127.0.0.1:8000/r?x=1"),
        ("x-forwarded", {"forwarded": "proto=https;host=evil"}, URL),
        (
            "forwarded",
            {"forwarded": 'for=1.2.3.4;proto=http, for="[::1]";proto=https;host="api.example.com"'},
            "https://api.example.com/r?x=1",
        ),
        ("forwarded", {"x-forwarded-proto": "https"}, URL),
        ("forwarded", {"forwarded": "for=1.2.3.4"}, URL),
    ],
    ids=[
        "none",
        "proto",
        "proto-host",
        "last-value",
        "other-family",
        "rfc7239",
        "x-ignored",
        "for",
    ],
)
def test_forwarded_scheme_and_host(family: Any, headers: dict[str, str], expected: str) -> None:
    assert TrustedProxies(["127.0.0.1"], forwarded=family).public_url(URL, headers) == expected


@pytest.mark.parametrize(
    ("family", "headers"),
    [
        ("x-forwarded", {"x-forwarded-proto": "ftp"}),
        ("x-forwarded", {"x-forwarded-host": "a/b"}),
        ("x-forwarded", {"x-forwarded-host": "user@host"}),
        ("forwarded", {"forwarded": 'proto="https'}),
        ("forwarded", {"forwarded": "proto"}),
    ],
    ids=["scheme", "host-path", "host-userinfo", "open-quote", "no-value"],
)
def test_malformed_forwarded_values_are_400(family: Any, headers: dict[str, str]) -> None:
    with pytest.raises(InvalidRequestError, match="malformed"):
        TrustedProxies(["127.0.0.1"], forwarded=family).public_url(URL, headers)


# -- the binding, on both fronts and every kind with a cnf --------------------------------


def mtls(setup: Setup, peer: str = "127.0.0.1") -> Setup:
    """Requests from ``peer`` (the ASGI test client's is no address by default)."""
    if setup.front != "flask":
        from starlette.testclient import TestClient

        setup.client.client = TestClient(setup.client.app, client=(peer, 50000))  # type: ignore[attr-defined]
    return setup


def cert_header(issued: Any) -> dict[str, str]:
    return {"X-SSL-Client-Cert": issued.nginx_escaped}


@pytest.mark.parametrize("kind", ["opaque", "jwt", "introspection"])
def test_certificate_bound_token_needs_its_certificate_on_every_request(
    make: Any,  # noqa: F811
    front: str,  # noqa: F811
    kind: str,  # noqa: F811
) -> None:
    setup = mtls(make(client_certificate=NginxClientCertificate(), trusted_proxies=["127.0.0.1"]))
    token = setup.backend.mint(cnf={"x5t#S256": A.thumbprint})
    bearer = setup.bearer(token)
    for _ in range(2):
        ok = setup.client.get("/r", headers={**bearer, **cert_header(A)})
        assert ok.status == 200, ok.json
    # After hits with A, a request with B (or none) is refused: no hit skips the check.
    other = setup.client.get("/r", headers={**bearer, **cert_header(B)})
    assert (other.status, other.json["error"]) == (401, "invalid_token")
    assert other.json["error_description"] == MISMATCH
    assert f'error_description="{MISMATCH}"' in other.challenge
    missing = setup.client.get("/r", headers=bearer)
    assert (missing.status, missing.json["error_description"]) == (401, NONE_PRESENTED)
    assert setup.client.get("/r", headers={**bearer, **cert_header(A)}).status == 200
    assert setup.backend.calls == 1  # one validation; the certificate checked on each request
    plain = setup.backend.mint()
    assert setup.client.get("/r", headers=setup.bearer(plain)).status == 200


@pytest.mark.parametrize("kind", ["jwt"])
def test_certificate_header_from_an_untrusted_peer_is_no_certificate(
    make: Any,  # noqa: F811
    front: str,  # noqa: F811
    kind: str,  # noqa: F811
) -> None:
    setup = mtls(make(client_certificate=NginxClientCertificate(), trusted_proxies=["127.0.0.2"]))
    token = setup.backend.mint(cnf={"x5t#S256": A.thumbprint})
    answer = setup.client.get("/r", headers={**setup.bearer(token), **cert_header(A)})
    assert (answer.status, answer.json["error_description"]) == (401, NONE_PRESENTED)


@pytest.mark.parametrize("kind", ["jwt"])
def test_malformed_certificate_header_from_a_trusted_proxy_is_400(
    make: Any,  # noqa: F811
    front: str,  # noqa: F811
    kind: str,  # noqa: F811
) -> None:
    setup = mtls(make(client_certificate=EnvoyClientCertificate(), trusted_proxies=["127.0.0.1"]))
    token = setup.backend.mint(cnf={"x5t#S256": A.thumbprint})
    headers = {**setup.bearer(token), "X-Forwarded-Client-Cert": "Hash=nothex"}
    answer = setup.client.get("/r", headers=headers)
    assert (answer.status, answer.json["error"]) == (400, "invalid_request")
    assert answer.json["error_description"] == (
        "malformed x-forwarded-client-cert header from the proxy"
    )


@pytest.mark.parametrize("kind", ["jwt"])
def test_tls_connection_certificate_on_both_fronts(
    make: Any,  # noqa: F811
    front: str,  # noqa: F811
    kind: str,  # noqa: F811
) -> None:
    """Werkzeug's server puts the peer's certificate in ``SSL_CLIENT_CERT``;
    an ASGI server in ``scope["extensions"]["tls"]`` (given here by a wrapper)."""
    setup = make(client_certificate=tls_client_certificate)
    token = setup.backend.mint(cnf={"x5t#S256": A.thumbprint})
    if front == "flask":

        def get(issued: Any) -> Any:
            extra = {"SSL_CLIENT_CERT": issued.pem} if issued else {}
            return setup.client.get("/r", headers=setup.bearer(token), environ_overrides=extra)
    else:
        from starlette.testclient import TestClient

        app = setup.client.app  # type: ignore[attr-defined]

        def get(issued: Any) -> Any:
            async def with_tls(scope: Any, receive: Any, send: Any) -> None:
                if issued:
                    chain = [issued.pem, pki().ca.pem]
                    scope["extensions"] = {
                        **scope.get("extensions", {}),
                        "tls": {"client_cert_chain": chain},
                    }
                await app(scope, receive, send)

            response = TestClient(with_tls).get("/r", headers=setup.bearer(token))
            return type("R", (), {"status": response.status_code, "json": response.json()})

    assert get(A).status == 200
    assert get(B).json["error_description"] == MISMATCH
    assert get(None).json["error_description"] == NONE_PRESENTED


@pytest.mark.parametrize("kind", ["jwt"])
def test_a_failing_certificate_reader_is_503(make: Any, front: str, kind: str) -> None:  # noqa: F811
    def broken(credentials: Credentials) -> Any:
        raise ConnectionError("certificate store down")

    for reader in (broken, lambda credentials: "a string is no certificate"):
        setup = mtls(make(client_certificate=reader))
        token = setup.backend.mint(cnf={"x5t#S256": A.thumbprint})
        answer = setup.client.get("/r", headers=setup.bearer(token))
        assert answer.status == 503, answer.json


def test_certificate_bound_token_without_a_reader_is_refused(clock: FakeClock) -> None:
    protector = jwt_protector(clock)  # no client_certificate=: nothing is ever presented
    answer = flask_app(protector).get("/r", headers=bearer(cert_bound(clock)))
    assert (answer.status_code, answer.get_json()["error_description"]) == (401, NONE_PRESENTED)


# -- DPoP and a certificate together; database rows; metadata ---------------------------


def flask_app(protector: ResourceProtector) -> Any:
    app = Flask(__name__)

    @app.route("/r")
    @protector("profile")
    def resource() -> Any:
        return jsonify(ok=True)

    return app.test_client()


ISSUER_KEY = cached_keypair("RS256", "issuer")
PROOF_KEY = cached_keypair("ES256", "proof")


def jwt_protector(clock: FakeClock, **options: Any) -> ResourceProtector:
    protector = ResourceProtector(clock=clock, cache=TokenCache(clock=clock), **options)
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(ISSUER_KEY))
    )
    return protector


def cert_bound(clock: FakeClock, **cnf: str) -> str:
    return make_token(ISSUER_KEY, now=clock(), cnf={"x5t#S256": A.thumbprint, **cnf})


def bearer(token: str, issued: Any = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **(cert_header(issued) if issued else {})}


def dpop(
    token: str, clock: FakeClock, issued: Any = None, url: str = "http://localhost/r"
) -> dict[str, str]:
    proof = make_proof(PROOF_KEY, url=url, token=token, now=clock())
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    return {**headers, **(cert_header(issued) if issued else {})}


def test_token_bound_to_a_dpop_key_and_a_certificate_must_match_both(clock: FakeClock) -> None:
    protector = jwt_protector(
        clock, client_certificate=NginxClientCertificate(), trusted_proxies=["127.0.0.1"]
    )
    client = flask_app(protector)
    token = cert_bound(clock, jkt=jkt(PROOF_KEY))
    assert client.get("/r", headers=dpop(token, clock, A)).status_code == 200
    assert client.get("/r", headers=dpop(token, clock, A)).status_code == 200  # cached
    wrong = client.get("/r", headers=dpop(token, clock, B))
    assert (wrong.status_code, wrong.get_json()["error_description"]) == (401, MISMATCH)
    none = client.get("/r", headers=dpop(token, clock))
    assert none.get_json()["error_description"] == NONE_PRESENTED
    # Bound to a DPoP key too: never a Bearer token, even with its certificate (RFC 9449 §7.2).
    as_bearer = client.get("/r", headers=bearer(token, A))
    assert as_bearer.get_json()["error_description"] == (
        "sender-constrained token presented as a bearer token"
    )


def test_dpop_htu_from_trusted_forwarded_headers_only(clock: FakeClock) -> None:
    public = "https://api.example.com/r"
    for family, forwarded in (
        ("x-forwarded", {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com"}),
        ("forwarded", {"Forwarded": 'for=1.2.3.4;proto=https;host="api.example.com"'}),
    ):
        proxies = TrustedProxies(["127.0.0.1"], forwarded=family)
        client = flask_app(jwt_protector(clock, trusted_proxies=proxies))
        token = make_token(ISSUER_KEY, now=clock(), cnf={"jkt": jkt(PROOF_KEY)})
        headers = {**dpop(token, clock, url=public), **forwarded}
        assert client.get("/r", headers=headers).status_code == 200, family
        seen = dpop(token, clock, url=public)  # no forwarded headers: the URL the server saw
        assert client.get("/r", headers=seen).get_json()["error_description"] == (
            "DPoP proof htu does not match the request URI"
        )
        untrusted = flask_app(jwt_protector(clock, trusted_proxies=["127.0.0.2"]))
        headers = {**dpop(token, clock, url=public), **forwarded}
        assert untrusted.get("/r", headers=headers).status_code == 401, family


class Row:
    """A database token with the documented ``x5t_s256`` attribute."""

    def __init__(self, expires: float, x5t_s256: str | None) -> None:
        self.scope, self.expires, self.x5t_s256 = "profile", expires, x5t_s256

    def get_scope(self) -> str:
        return self.scope

    def get_expires_at(self) -> float:
        return self.expires


def test_database_token_binds_through_x5t_s256(clock: FakeClock) -> None:
    rows = {"bound-row": Row(clock() + 600, A.thumbprint), "plain-row": Row(clock() + 600, None)}

    class Lookup(BearerTokenValidator):
        def authenticate_token(self, token_string: str) -> Any:
            return rows.get(token_string)

    protector = ResourceProtector(
        clock=clock, client_certificate=NginxClientCertificate(), trusted_proxies=["127.0.0.1"]
    )
    protector.register_token_validator(Lookup())
    client = flask_app(protector)
    assert client.get("/r", headers=bearer("bound-row", A)).status_code == 200
    assert client.get("/r", headers=bearer("bound-row", B)).get_json()["error_description"] == (
        MISMATCH
    )
    assert client.get("/r", headers=bearer("bound-row")).status_code == 401
    assert client.get("/r", headers=bearer("plain-row")).status_code == 200


def test_metadata_says_certificate_bound_tokens_when_a_reader_is_configured() -> None:
    from bearerguard.core.guard import Guard

    with_reader = Guard(
        resource="https://api.example.com",
        client_certificate=NginxClientCertificate(),
        trusted_proxies=["127.0.0.1"],
    )
    assert with_reader.metadata is not None
    document = with_reader.metadata.document(with_reader)
    assert document["tls_client_certificate_bound_access_tokens"] is True
    without = Guard(resource=ResourceMetadata("https://api.example.com"))
    assert without.metadata is not None
    assert "tls_client_certificate_bound_access_tokens" not in without.metadata.document(without)


def test_any_certificate_or_forwarded_header_is_refused_never_raised(clock: FakeClock) -> None:
    """Whatever a trusted proxy sends in the certificate and forwarded headers
    (with Bearer, and with DPoP whose htu they move): 400 or 401, never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    clients = {
        reader: flask_app(
            jwt_protector(clock, client_certificate=reader(), trusted_proxies=["127.0.0.1"])
        )
        for reader in (NginxClientCertificate, EnvoyClientCertificate)
    }
    token = make_token(
        ISSUER_KEY, now=clock(), cnf={"x5t#S256": A.thumbprint, "jkt": jkt(PROOF_KEY)}
    )
    bound = cert_bound(clock)
    latin1 = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80)
    pieces = st.sampled_from(
        ["Hash=", "Cert=", ";", ",", '"', "\\", "=", "%", "%2", A.nginx_escaped[:40]]
    )
    values = st.one_of(latin1, st.lists(st.one_of(pieces, latin1), max_size=8).map("".join))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(list(clients)), values, values)
    def check(reader: Any, certificate: str, forwarded: str) -> None:
        headers = {
            "X-SSL-Client-Cert": certificate,
            "X-Forwarded-Client-Cert": certificate,
            "X-Forwarded-Proto": forwarded,
            "X-Forwarded-Host": forwarded,
        }
        for sent in (bearer(bound), dpop(token, clock)):
            answer = clients[reader].get("/r", headers={**sent, **headers})
            assert answer.status_code in (400, 401), (answer.status_code, headers)

    check()
