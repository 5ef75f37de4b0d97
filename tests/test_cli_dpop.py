"""``bearerguard dpop-proof`` and ``bearerguard verify --dpop-proof`` (RFC 9449).

A proof the command prints is sent to a real protector, which must accept it
once; ``verify`` shows a token's ``cnf`` and catches a proof made for another
URL, method or key with the protector's own checks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask import Flask, jsonify

from bearerguard import ResourceProtector
from bearerguard.validators import JWTBearerTokenValidator

from .dpopkit import ath, jkt
from .jwtkit import AUDIENCE, ISSUER, Keypair, cached_keypair, jwks, make_token, segments
from .test_cli import SCRIPT, run

ISSUER_KEY = cached_keypair("RS256", "cli-dpop-issuer")
URL = "http://localhost/r"


def _pem(key: Keypair) -> bytes:
    return bytes(
        key.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


#: How a client keeps its key: PEM (EC, RSA) or a private JWK (EC, Ed25519).
KEY_FILES = {
    "es256-pem": ("ES256", lambda k: _pem(k)),
    "rs256-pem": ("RS256", lambda k: _pem(k)),
    "es384-jwk": ("ES384", lambda k: json.dumps(k.jwk(private=True)).encode()),
    "eddsa-jwk": ("EdDSA", lambda k: json.dumps(k.jwk(private=True)).encode()),
}


def key_file(tmp_path: Path, case: str = "es256-pem") -> tuple[Keypair, Path]:
    alg, write = KEY_FILES[case]
    key = cached_keypair(alg, "cli-dpop-client")
    path = tmp_path / f"client-{case}"
    path.write_bytes(write(key))
    path.chmod(0o600)
    return key, path


def bound_token(key: Keypair, **claims: Any) -> str:
    return make_token(ISSUER_KEY, cnf={"jkt": jkt(key)}, **claims)


def proof_of(path: Path, *extra: str, url: str = URL, method: str = "GET") -> str:
    code, output = run("dpop-proof", "--key", str(path), "--method", method, "--url", url, *extra)
    assert code == 0, output
    return output.strip()


def protected() -> Any:
    protector = ResourceProtector()
    protector.register_token_validator(
        JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(ISSUER_KEY))
    )
    app = Flask(__name__)

    @app.route("/r", methods=["GET", "POST"])
    @protector("profile")
    def resource() -> Any:
        return jsonify(ok=True)

    return app.test_client()


@pytest.mark.parametrize("case", list(KEY_FILES))
def test_printed_proof_is_accepted_once_by_a_protector(tmp_path: Path, case: str) -> None:
    key, path = key_file(tmp_path, case)
    token = bound_token(key)
    client = protected()
    proof = proof_of(path, "--token", token, method="post", url=URL + "?q=1#f")
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert client.post("/r?q=1", headers=headers).status_code == 200
    replayed = client.post("/r?q=1", headers=headers)
    assert replayed.status_code == 401
    assert replayed.get_json()["error_description"] == "DPoP proof replayed"
    # A fresh one each run: a new jti, so a new request goes through.
    headers["DPoP"] = proof_of(path, "--token", token, method="POST")
    assert client.post("/r", headers=headers).status_code == 200


def test_proof_carries_public_members_only_and_what_was_asked(tmp_path: Path) -> None:
    _, path = key_file(tmp_path, "es384-jwk")
    header, claims, _ = segments(proof_of(path, "--token", "tok-1", "--nonce", "n-1"))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES384"
    assert sorted(header["jwk"]) == ["crv", "kty", "x", "y"]  # no "d", no key_ops
    assert claims["htm"] == "GET" and claims["htu"] == URL
    assert claims["ath"] == ath("tok-1") and claims["nonce"] == "n-1"
    without = segments(proof_of(path))[1]
    assert "ath" not in without and "nonce" not in without
    assert without["jti"] != claims["jti"]


@pytest.mark.parametrize(
    "content", [b"not a key", b"{}", b"PUBLIC"], ids=["garbage", "jwk-public", "pem-public"]
)
def test_a_key_that_will_not_do_exits_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k"
    if content == b"{}":
        content = json.dumps(cached_keypair("ES256", "x").jwk()).encode()
    elif content == b"PUBLIC":
        content = cached_keypair("ES256", "x").public_pem()
    path.write_bytes(content)
    code, output = run("dpop-proof", "--key", str(path), "--url", URL)
    assert code == 2 and output.startswith("error: ")


@pytest.mark.parametrize(
    ("case", "extra"),
    [
        ("es256-pem", ("--url", "ftp://h/r")),
        ("es256-pem", ("--url", URL, "--alg", "RS256")),
        ("es256-pem", ("--url", URL, "--alg", "HS256")),
        ("rs256-pem", ("--url", URL, "--alg", "ES256")),
        ("es256-pem", ("--url", URL, "--token", "t\u00f6k")),
    ],
    ids=["ftp-url", "rsa-alg-for-ec", "hmac-alg", "ec-alg-for-rsa", "non-ascii-token"],
)
def test_what_no_server_accepts_exits_2(tmp_path: Path, case: str, extra: tuple[str, ...]) -> None:
    _, path = key_file(tmp_path, case)
    code, output = run("dpop-proof", "--key", str(path), *extra)
    assert (code, output.startswith("error: ")) == (2, True), output


def test_an_rsa_key_signs_ps256_on_request(tmp_path: Path) -> None:
    key, path = key_file(tmp_path, "rs256-pem")
    token = bound_token(key)
    proof = proof_of(path, "--token", token, "--alg", "PS256")
    assert segments(proof)[0]["alg"] == "PS256"
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert protected().get("/r", headers=headers).status_code == 200


def test_console_script_prints_a_proof_for_curl(tmp_path: Path) -> None:
    _, path = key_file(tmp_path)
    result = subprocess.run(
        [str(SCRIPT), "dpop-proof", "--key", str(path), "--url", URL],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert segments(result.stdout.strip())[0]["typ"] == "dpop+jwt"


# -- verify: the binding, and the proof against the token ---------------------------------


@pytest.fixture
def verify(tmp_path: Path) -> Any:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(ISSUER_KEY)))

    def verify_(token: str, *extra: str) -> tuple[int, str]:
        return run(
            "verify", token, "--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(path), *extra
        )

    return verify_


def test_verify_shows_the_binding_and_accepts_its_proof(tmp_path: Path, verify: Any) -> None:
    key, path = key_file(tmp_path)
    token = bound_token(key)
    code, output = verify(token)
    assert code == 1  # presented as a bearer token: refused, as the protector does
    assert f"jkt {jkt(key)!r}" in output
    proof = proof_of(path, "--token", token)
    code, output = verify(token, "--dpop-proof", proof, "--method", "GET", "--url", URL)
    assert code == 0, output
    assert output.strip().endswith("VALID")
    lines = {line.split()[1]: line for line in output.splitlines() if line[:2] in ("ok", "NO")}
    assert f"jkt {jkt(key)!r}" in lines["cnf"] and lines["cnf"].startswith("ok")
    assert lines["dpop"].startswith("ok") and lines["binding"].startswith("ok")


def test_verify_catches_a_proof_for_another_url_method_key_or_token(
    tmp_path: Path, verify: Any
) -> None:
    key, path = key_file(tmp_path)
    _, other_path = key_file(tmp_path, "eddsa-jwk")
    token = bound_token(key)
    cases = {
        "htu does not match": (proof_of(path, "--token", token, url="http://localhost/s"), URL),
        "htm does not match": (proof_of(path, "--token", token, method="POST"), URL),
        "ath does not match": (proof_of(path, "--token", "another"), URL),
        "does not match the token's binding": (proof_of(other_path, "--token", token), URL),
        "malformed DPoP proof": ("not.a.proof!", URL),
    }
    for expected, (proof, url) in cases.items():
        code, output = verify(token, "--dpop-proof", proof, "--method", "GET", "--url", url)
        assert code == 1, (expected, output)
        assert expected in output.splitlines()[-1], (expected, output)


def test_verify_takes_htm_and_htu_from_the_proof_and_says_so(tmp_path: Path, verify: Any) -> None:
    key, path = key_file(tmp_path)
    token = bound_token(key)
    code, output = verify(token, "--dpop-proof", proof_of(path, "--token", token), "--json")
    assert code == 0, output
    result = json.loads(output)
    step = next(c for c in result["checks"] if c["name"] == "dpop proof")
    assert step["ok"] and "htm and htu from the proof" in step["detail"]


def test_verify_refuses_an_unbound_token_with_a_proof(tmp_path: Path, verify: Any) -> None:
    _, path = key_file(tmp_path)
    token = make_token(ISSUER_KEY)
    code, output = verify(token, "--dpop-proof", proof_of(path, "--token", token))
    assert code == 1
    assert "INVALID: token is not bound to a DPoP key" in output


def test_verify_shows_a_certificate_binding_escaped(verify: Any) -> None:
    token = make_token(ISSUER_KEY, cnf={"x5t#S256": "abc\x1b[2J", "jkt": "j\u202e"})
    code, output = verify(token)
    assert code == 1
    assert "x5t#S256 'abc\\x1b[2J'" in output and "jkt 'j\\u202e'" in output
    assert "\x1b" not in output and "\u202e" not in output
