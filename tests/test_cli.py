"""The ``bearerguard`` console script, run as a subprocess as a user runs it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

SCRIPT = Path(sys.executable).parent / "bearerguard"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment["BEARERGUARD_DEMO_KEY"] = str(tmp_path / "demo-key.pem")
    environment["BEARERGUARD_DEMO_DB"] = f"sqlite:///{tmp_path / 'demo.db'}"
    environment.pop("NO_COLOR", None)
    return environment


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mint_then_inspect(env: dict[str, str]) -> None:
    minted = run(env, "mint", "--scope", "read write", "--expires", "10m")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "read write"
    assert 590 <= claims["exp"] - time.time() <= 600

    shown = run(env, "inspect", token)
    assert shown.returncode == 0
    assert '"alg": "RS256"' in shown.stdout
    assert "expires" in shown.stdout and "in 10 min" in shown.stdout
    assert "read write" in shown.stdout
    assert "\033[" not in shown.stdout  # not a terminal: no colour


def test_inspect_reads_stdin_and_strips_bearer(env: dict[str, str]) -> None:
    token = run(env, "mint").stdout.strip()
    shown = run(env, "inspect", "-", stdin=f"Bearer {token}\n")
    assert shown.returncode == 0
    assert '"sub": "alice"' in shown.stdout


def test_inspect_expired_says_ago(env: dict[str, str]) -> None:
    token = jwt.encode({"exp": int(time.time()) - 7200, "scope": "a"}, "k" * 32, algorithm="HS256")
    shown = run(env, "inspect", token)
    assert "2 h ago" in shown.stdout


def test_inspect_colour_on_request(env: dict[str, str]) -> None:
    token = jwt.encode({"exp": int(time.time()) - 60}, "k" * 32, algorithm="HS256")
    shown = run(env, "inspect", "--colour", token)
    assert "\033[1;31m" in shown.stdout  # the expiry is shown in red


def test_inspect_opaque(env: dict[str, str]) -> None:
    shown = run(env, "inspect", "demo-good")
    assert shown.returncode == 0
    assert "opaque token" in shown.stdout


def test_inspect_json(env: dict[str, str]) -> None:
    token = run(env, "mint", "--scope", "x").stdout.strip()
    data: dict[str, Any] = json.loads(run(env, "inspect", "--json", token).stdout)
    assert data["format"] == "jws"
    assert data["scopes"] == ["x"]
    assert data["claims"]["iss"] == "http://127.0.0.1:5000"
    assert data["times"]["exp"]["relative"].startswith("in ")
    opaque = json.loads(run(env, "inspect", "--json", "opaque").stdout)
    assert opaque == {"format": "opaque", "length": 6}


def test_usage_error_exits_2(env: dict[str, str]) -> None:
    assert run(env, "inspect").returncode == 2
    assert run(env, "mint", "--expires", "soon").returncode == 2
    assert run(env, "frobnicate").returncode == 2


def test_python_dash_m(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bearerguard", "inspect", "opaque-token"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "opaque token" in result.stdout


@pytest.fixture
def jwks_file(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from bearerguard import _demo_issuer as demo

    monkeypatch.setenv("BEARERGUARD_DEMO_KEY", env["BEARERGUARD_DEMO_KEY"])
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(demo.demo_jwks()))
    return path


VERIFY = ("--issuer", "http://127.0.0.1:5000", "--audience", "bearerguard-demo")


def test_verify_valid(env: dict[str, str], jwks_file: Path) -> None:
    token = run(env, "mint", "--scope", "profile").stdout.strip()
    result = run(env, "verify", token, *VERIFY, "--jwks", str(jwks_file), "--scope", "profile")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("VALID")
    for check in (
        "signature",
        "kid found",
        "alg allowed",
        "iss",
        "aud",
        "exp",
        "nbf",
        "typ",
        "scope",
    ):
        assert check in result.stdout


@pytest.mark.parametrize(
    ("extra", "reason", "failing"),
    [
        (("--audience", "someone-else"), "audience mismatch", "aud"),
        (("--issuer", "https://other.example"), "issuer mismatch", "iss"),
        (("--scope", "admin"), "insufficient scope", "scope"),
    ],
    ids=["audience", "issuer", "scope"],
)
def test_verify_invalid_names_first_failure(
    env: dict[str, str], jwks_file: Path, extra: tuple[str, ...], reason: str, failing: str
) -> None:
    token = run(env, "mint", "--scope", "profile").stdout.strip()
    args = [*VERIFY, "--jwks", str(jwks_file), *extra]
    result = run(env, "verify", token, *args)
    assert result.returncode == 1
    assert f"INVALID: {reason}" in result.stdout
    first = next(line for line in result.stdout.splitlines() if "first failure" in line)
    assert failing in first


def test_verify_expired_json(env: dict[str, str], jwks_file: Path) -> None:
    from bearerguard import _demo_issuer as demo

    os.environ["BEARERGUARD_DEMO_KEY"] = env["BEARERGUARD_DEMO_KEY"]
    token = demo.mint(expires_in=-120)
    result = run(env, "verify", token, *VERIFY, "--jwks", str(jwks_file), "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False and data["reason"] == "token expired"
    assert {c["name"]: c["ok"] for c in data["checks"]}["exp"] is False


def test_verify_tampered_signature(env: dict[str, str], jwks_file: Path) -> None:
    token = run(env, "mint").stdout.strip()
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["scope"] = "admin"
    forged_body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    result = run(env, "verify", f"{head}.{forged_body}.{sig}", *VERIFY, "--jwks", str(jwks_file))
    assert result.returncode == 1
    assert "invalid signature" in result.stdout


def test_verify_with_jwks_uri_on_loopback(env: dict[str, str], jwks_file: Path, serve: Any) -> None:
    from .servers import Reply

    document = json.loads(jwks_file.read_text())
    server = serve(lambda seen: Reply(body=document))
    token = run(env, "mint").stdout.strip()
    result = run(env, "verify", token, *VERIFY, "--jwks-uri", server.url + "/jwks")
    assert result.returncode == 0, result.stdout
    assert [r.path for r in server.requests] == ["/jwks"]


def test_verify_network_error_exits_2(env: dict[str, str]) -> None:
    token = run(env, "mint").stdout.strip()
    result = run(env, "verify", token, *VERIFY, "--jwks-uri", "http://127.0.0.1:9/jwks")
    assert result.returncode == 2
    assert result.stdout.startswith("error:")


def test_verify_opaque_token(env: dict[str, str]) -> None:
    result = run(env, "verify", "demo-good", *VERIFY, "--jwks-uri", "http://127.0.0.1:9/j")
    assert result.returncode == 1
    assert "not a JWT" in result.stdout


def _demo_signed(env: dict[str, str], claims: dict[str, Any], headers: dict[str, Any]) -> str:
    from bearerguard import _demo_issuer as demo

    os.environ["BEARERGUARD_DEMO_KEY"] = env["BEARERGUARD_DEMO_KEY"]
    now = int(time.time())
    base = {"iss": demo.ISSUER, "aud": demo.AUDIENCE, "sub": "s", "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, demo.demo_key(), algorithm="RS256", headers=headers)


def test_mint_subject(env: dict[str, str]) -> None:
    token = run(env, "mint", "--subject", "bob").stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["sub"] == "bob"


def test_verify_require_typ(env: dict[str, str], jwks_file: Path) -> None:
    untyped = _demo_signed(env, {}, {"kid": "demo-1"})
    args = [*VERIFY, "--jwks", str(jwks_file)]
    assert run(env, "verify", untyped, *args).returncode == 0
    result = run(env, "verify", untyped, *args, "--require-typ")
    assert result.returncode == 1
    assert "INVALID: wrong token type" in result.stdout


def test_verify_leeway(env: dict[str, str], jwks_file: Path) -> None:
    early = _demo_signed(env, {"nbf": int(time.time()) + 30}, {"kid": "demo-1"})
    args = [*VERIFY, "--jwks", str(jwks_file)]
    assert run(env, "verify", early, *args, "--leeway", "60").returncode == 0
    late = run(env, "verify", early, *args, "--leeway", "0")
    assert late.returncode == 1
    assert "token not yet valid" in late.stdout


def test_verify_names_a_key_bound_token(env: dict[str, str], jwks_file: Path) -> None:
    bound = _demo_signed(env, {"cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}, {})
    result = run(env, "verify", bound, *VERIFY, "--jwks", str(jwks_file))
    assert result.returncode == 1
    assert "INVALID: sender-constrained token presented as a bearer token" in result.stdout
    first = next(line for line in result.stdout.splitlines() if "first failure" in line)
    assert "cnf" in first


def test_no_colour_wins_on_request(env: dict[str, str], jwks_file: Path) -> None:
    token = _demo_signed(env, {"exp": int(time.time()) - 10}, {"kid": "demo-1"})
    result = run(env, "verify", token, *VERIFY, "--jwks", str(jwks_file), "--no-colour")
    assert result.returncode == 1
    assert "\033[" not in result.stdout
    coloured = run(env, "verify", token, *VERIFY, "--jwks", str(jwks_file), "--colour")
    assert "\033[1;31m" in coloured.stdout


# -- token-derived text reaches the terminal escaped ------------------------------------

#: Clear the screen, home the cursor, draw a green VALID; a C1 CSI; a bidi override.
INJECTED = "\x1b[2J\x1b[H\x1b[32mVALID\x1b[0m \x9b2J \u202e"
UNPRINTABLE = ("\x1b", "\x9b", "\u202e")


def _in_process(*argv: str) -> str:
    import io

    from bearerguard import cli

    out = io.StringIO()
    cli.main(list(argv), out=out)
    return out.getvalue()


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[list[str], Path]:
    """Tokens whose scope and alg carry terminal escapes, and the JWKS file that checks them."""
    from .jwtkit import AUDIENCE, ISSUER, cached_keypair, forge, jwks, make_token

    key = cached_keypair("ES256", "cli-escape")
    path = tmp_path / "hostile-jwks.json"
    path.write_text(json.dumps(jwks(key)))
    scoped = make_token(key, scope=f"profile {INJECTED}")
    bad_alg = forge(
        {"alg": f"RS256{INJECTED}", "kid": f"k{INJECTED}"},
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60, "scope": INJECTED},
        b"sig",
    )
    return [scoped, bad_alg], path


@pytest.mark.parametrize("colour", ["--no-colour", "--colour"])
def test_verify_and_inspect_escape_what_the_token_says(
    hostile: tuple[list[str], Path], colour: str
) -> None:
    from .jwtkit import AUDIENCE, ISSUER

    tokens, jwks_path = hostile
    for token in tokens:
        verified = _in_process(
            "verify", token, "--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(jwks_path),
            "--scope", "admin", colour,
        )  # fmt: skip
        inspected = _in_process("inspect", token, colour)
        for output in (verified, inspected):
            assert "\x1b[2J" not in output and "\x1b[32mVALID" not in output
            assert not any(c in output for c in UNPRINTABLE[1:])
            if colour == "--no-colour":
                assert "\x1b" not in output
        assert "INVALID" in verified and "\nVALID" not in verified
    assert "\\x1b[2J" in _in_process("inspect", tokens[0], "--no-colour"), "shown, escaped"
    assert "\\x1b[32mVALID" in _in_process(
        "verify", tokens[1], "--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(jwks_path)
    )


def test_json_output_escapes_what_the_token_says(hostile: tuple[list[str], Path]) -> None:
    from .jwtkit import AUDIENCE, ISSUER

    tokens, jwks_path = hostile
    for token in tokens:
        for output in (
            _in_process(
                "verify", token, "--issuer", ISSUER, "--audience", AUDIENCE,
                "--jwks", str(jwks_path), "--json",
            ),
            _in_process("inspect", token, "--json"),
        ):  # fmt: skip
            assert output.isascii() and "\x1b" not in output and "\x7f" not in output
            json.loads(output)  # and still JSON, holding the text unchanged
    claims = json.loads(_in_process("inspect", tokens[1], "--json"))["claims"]
    assert claims["scope"] == INJECTED
