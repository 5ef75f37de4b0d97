"""The ``bearerguard`` command, run in-process (``cli.main(argv, out)``).

One subprocess smoke test per command checks the console script and
``python -m bearerguard`` as a user runs them; everything else calls
:func:`bearerguard.cli.main` with its own output stream.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from bearerguard import cli
from bearerguard.errors import InvalidTokenError
from bearerguard.validators import JWTBearerTokenValidator

from .jwtkit import (
    AUDIENCE,
    ISSUER,
    b64url,
    cached_keypair,
    forge,
    jwks,
    make_token,
    sign_raw,
)
from .jwtkit import claims as claim_set

SCRIPT = Path(sys.executable).parent / "bearerguard"
RSA = cached_keypair("RS256", "cli-rsa")
ATTACKER = cached_keypair("RS256", "cli-attacker")


def run(*argv: str, stdin: str | None = None) -> tuple[int, str]:
    """``bearerguard argv`` in this process: exit code and output (stdout)."""
    out = io.StringIO()
    saved = sys.stdin
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv), out=out)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code if isinstance(exit_.code, int) else 2
    finally:
        sys.stdin = saved
    return code, out.getvalue()


@pytest.fixture
def jwks_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(RSA)))
    return path


@pytest.fixture
def verify(jwks_file: Path) -> Callable[..., tuple[int, str]]:
    """``bearerguard verify token --issuer --audience --jwks FILE *extra``."""

    def verify_(token: str, *extra: str) -> tuple[int, str]:
        args = ("--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(jwks_file))
        return run("verify", token, *args, *extra)

    return verify_


def first_failure(output: str) -> str:
    return next(line for line in output.splitlines() if "first failure" in line)


# -- smoke: the console script and python -m, one command each ----------------------------


def smoke(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "BEARERGUARD_DEMO_KEY": str(tmp_path / "demo-key.pem")}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_smoke_inspect_with_python_dash_m(tmp_path: Path) -> None:
    result = smoke([sys.executable, "-m", "bearerguard", "inspect", "opaque-token"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "opaque token" in result.stdout


def test_smoke_verify_with_the_console_script(tmp_path: Path, jwks_file: Path) -> None:
    args = ["--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(jwks_file)]
    result = smoke([str(SCRIPT), "verify", make_token(RSA), *args], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("VALID")


def test_smoke_mint_with_the_console_script(tmp_path: Path) -> None:
    result = smoke([str(SCRIPT), "mint", "--subject", "bob"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert jwt.decode(result.stdout.strip(), options={"verify_signature": False})["sub"] == "bob"


# -- mint ---------------------------------------------------------------------------


@pytest.fixture
def demo_issuer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo issuer, its key in this test's directory."""
    from bearerguard import _demo_issuer as issuer

    monkeypatch.setenv("BEARERGUARD_DEMO_KEY", str(tmp_path / "demo-key.pem"))
    return issuer


def test_mint_then_inspect(demo_issuer: Any) -> None:
    code, minted = run("mint", "--scope", "read write", "--expires", "10m")
    assert code == 0
    token = minted.strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "read write"
    assert 590 <= claims["exp"] - time.time() <= 600

    code, shown = run("inspect", token)
    assert code == 0
    assert '"alg": "RS256"' in shown
    assert "expires" in shown and "in 10 min" in shown
    assert "read write" in shown
    assert "\033[" not in shown  # not a terminal: no colour


def test_mint_subject_and_issuer(demo_issuer: Any) -> None:
    token = run("mint", "--subject", "bob")[1].strip()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "bob"
    assert claims["iss"] == "http://127.0.0.1:5000"


# -- inspect --------------------------------------------------------------------------


def test_inspect_reads_stdin_and_strips_bearer() -> None:
    code, shown = run("inspect", "-", stdin=f"Bearer {make_token(RSA)}\n")
    assert code == 0
    assert '"sub": "user-1"' in shown


def test_inspect_expired_says_ago() -> None:
    token = jwt.encode({"exp": int(time.time()) - 7200, "scope": "a"}, "k" * 32, algorithm="HS256")
    assert "2 h ago" in run("inspect", token)[1]


def test_inspect_colour_on_request() -> None:
    token = jwt.encode({"exp": int(time.time()) - 60}, "k" * 32, algorithm="HS256")
    assert "\033[1;31m" in run("inspect", "--colour", token)[1]  # the expiry in red
    assert "\033[" not in run("inspect", "--no-colour", token)[1]


def test_inspect_opaque() -> None:
    code, shown = run("inspect", "demo-good")
    assert code == 0
    assert "opaque token" in shown


def test_inspect_json() -> None:
    data: dict[str, Any] = json.loads(run("inspect", "--json", make_token(RSA, scope="x"))[1])
    assert data["format"] == "jws"
    assert data["scopes"] == ["x"]
    assert data["claims"]["iss"] == ISSUER
    assert data["times"]["exp"]["relative"].startswith("in ")
    assert data["expired"] is False
    assert json.loads(run("inspect", "--json", "opaque")[1]) == {"format": "opaque", "length": 6}


# -- usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["inspect"], ["mint", "--expires", "soon"], ["frobnicate"], ["demo"], ["demo", "--check"]],
    ids=["no-token", "bad-duration", "unknown-command", "demo-moved-out", "demo-check"],
)
def test_usage_error_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    # The demo is no command any more (make demo): a usage error like any unknown one.
    assert run(*argv)[0] == 2
    assert "usage: bearerguard" in capsys.readouterr().err


# -- verify ---------------------------------------------------------------------------


def test_verify_valid(verify: Callable[..., tuple[int, str]]) -> None:
    code, output = verify(make_token(RSA, scope="profile"), "--scope", "profile")
    assert code == 0, output
    assert output.strip().endswith("VALID")
    lines = [line.split()[:2] for line in output.splitlines()[:-1]]
    names = ["format", "alg", "crit", "kid", "typ", "kid", "signature", "iss", "sub", "exp", "nbf"]
    assert [name for _, name in lines][: len(names)] == names
    assert all(mark in ("ok", "--") for mark, _ in lines), output
    for check in ("alg allowed", "kid found", "cnf", "aud", "scope"):
        assert check in output


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
    verify: Callable[..., tuple[int, str]], extra: tuple[str, ...], reason: str, failing: str
) -> None:
    code, output = verify(make_token(RSA, scope="profile"), *extra)
    assert code == 1
    assert f"INVALID: {reason}" in output
    assert first_failure(output).split()[1] == failing


def test_verify_expired_json(verify: Callable[..., tuple[int, str]]) -> None:
    token = make_token(RSA, now=time.time() - 420)  # exp 300 s after, 120 s ago
    code, output = verify(token, "--json")
    assert code == 1
    data = json.loads(output)
    assert data["valid"] is False and data["reason"] == "token expired"
    assert {c["name"]: c["ok"] for c in data["checks"]}["exp"] is False


def test_verify_tampered_signature(verify: Callable[..., tuple[int, str]]) -> None:
    head, body, sig = make_token(RSA).split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["scope"] = "admin"
    code, output = verify(f"{head}.{b64url(claims)}.{sig}")
    assert code == 1
    assert "INVALID: invalid signature" in output
    assert first_failure(output).split()[1] == "signature"


def test_verify_with_jwks_uri_on_loopback(serve: Any) -> None:
    from .servers import Reply

    server = serve(lambda seen: Reply(body=jwks(RSA)))
    args = ("--issuer", ISSUER, "--audience", AUDIENCE, "--jwks-uri", server.url + "/jwks")
    code, output = run("verify", make_token(RSA), *args)
    assert code == 0, output
    assert [r.path for r in server.requests] == ["/jwks"]


def test_verify_network_error_exits_2() -> None:
    args = ("--issuer", ISSUER, "--audience", AUDIENCE, "--jwks-uri", "http://127.0.0.1:9/jwks")
    code, output = run("verify", make_token(RSA), *args)
    assert code == 2
    assert output.startswith("error:")


def test_verify_unreadable_jwks_file_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    for path in (tmp_path / "bad.json", tmp_path / "missing.json"):
        args = ("--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(path))
        code, output = run("verify", make_token(RSA), *args)
        assert (code, output[:6]) == (2, "error:")


def test_verify_opaque_token() -> None:
    args = ("--issuer", ISSUER, "--audience", AUDIENCE, "--jwks-uri", "http://127.0.0.1:9/j")
    code, output = run("verify", "demo-good", *args)
    assert code == 1
    assert "not a JWT" in output
    code, output = run("verify", "demo-good", *args, "--json")
    assert code == 1
    assert json.loads(output)["reason"].startswith("not a JWT"), "--json output is JSON"


def test_verify_require_typ(verify: Callable[..., tuple[int, str]]) -> None:
    untyped = RSA.sign(claim_set())
    assert verify(untyped)[0] == 0
    code, output = verify(untyped, "--require-typ")
    assert code == 1
    assert "INVALID: wrong token type" in output
    assert first_failure(output).split()[1] == "typ"


def test_verify_leeway(verify: Callable[..., tuple[int, str]]) -> None:
    early = make_token(RSA, nbf=int(time.time()) + 30)
    assert verify(early, "--leeway", "60")[0] == 0
    code, output = verify(early, "--leeway", "0")
    assert code == 1
    assert "INVALID: token not yet valid" in output


def test_verify_names_a_key_bound_token(verify: Callable[..., tuple[int, str]]) -> None:
    bound = make_token(RSA, cnf={"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
    code, output = verify(bound)
    assert code == 1
    assert "INVALID: sender-constrained token presented as a bearer token" in output
    assert first_failure(output).split()[1] == "cnf"


def test_no_colour_wins_on_request(verify: Callable[..., tuple[int, str]]) -> None:
    expired = make_token(RSA, now=time.time() - 400)
    code, output = verify(expired, "--no-colour")
    assert code == 1
    assert "\033[" not in output
    assert "\033[1;31m" in verify(expired, "--colour")[1]


# -- verify cannot disagree with the validator ----------------------------------------------


def _now() -> float:
    return time.time()


#: Tokens each refused by the validator for another reason, and one accepted.
CORPUS: dict[str, Callable[[], str]] = {
    "valid": lambda: make_token(RSA),
    "expired": lambda: make_token(RSA, now=_now() - 400),
    "no-exp": lambda: make_token(RSA, exp=None),
    "exp-text": lambda: make_token(RSA, exp="tomorrow"),
    "audience": lambda: make_token(RSA, aud="https://other.example"),
    "no-aud": lambda: make_token(RSA, aud=None),
    "issuer": lambda: make_token(RSA, iss="https://evil.example"),
    "sub-number": lambda: make_token(RSA, sub=42),
    "jti-number": lambda: make_token(RSA, jti=7),
    "nbf-future": lambda: make_token(RSA, nbf=int(_now()) + 3600),
    "iat-future": lambda: make_token(RSA, iat=int(_now()) + 3600),
    "cnf": lambda: make_token(RSA, cnf={"jkt": "x"}),
    "typ-dpop": lambda: make_token(RSA, header={"typ": "dpop+jwt"}),
    "alg-none": lambda: forge({"alg": "none", "kid": "cli-rsa"}, claim_set()),
    "alg-hs256": lambda: forge({"alg": "HS256", "kid": "cli-rsa"}, claim_set(), b"x" * 32),
    "crit": lambda: sign_raw(RSA, {"alg": "RS256", "kid": "cli-rsa", "crit": ["x"]}, claim_set()),
    "kid-number": lambda: sign_raw(RSA, {"alg": "RS256", "kid": 1}, claim_set()),
    "unknown-kid": lambda: make_token(ATTACKER),
    "wrong-key": lambda: sign_raw(ATTACKER, {"alg": "RS256", "kid": "cli-rsa"}, claim_set()),
    "payload-list": lambda: sign_raw(RSA, {"alg": "RS256", "kid": "cli-rsa"}, b"[1]"),
    "padded": lambda: make_token(RSA) + "=",
    "header-padded": lambda: "==.".join(make_token(RSA).split(".", 1)),
    "non-canonical": lambda: make_token(RSA)[:-1] + "B",
    "header-escape": lambda: forge({"alg": "RS256\x1b[2J", "kid": "k"}, claim_set()),
}


@pytest.mark.parametrize("make", list(CORPUS.values()), ids=list(CORPUS))
def test_verify_agrees_with_the_validator(
    verify: Callable[..., tuple[int, str]], make: Callable[[], str]
) -> None:
    token = make()
    validator = JWTBearerTokenValidator(ISSUER, AUDIENCE, jwks=jwks(RSA))
    try:
        validator.validate(token)
        refusal = None
    except InvalidTokenError as error:
        refusal = error.description

    code, output = verify(token, "--json")
    data = json.loads(output)

    assert (code, data["valid"], data["reason"]) == (
        (1, False, refusal) if refusal else (0, True, None)
    )
    failed = [check for check in data["checks"] if check["ok"] is False]
    if refusal is None:
        assert failed == []
    else:  # the first step marked NO is the one that refused the token, with its words
        assert failed[0]["detail"].endswith(refusal), data


def test_verify_stops_at_a_token_it_cannot_parse(verify: Callable[..., tuple[int, str]]) -> None:
    code, output = verify(CORPUS["header-padded"]())
    assert code == 1
    assert output.splitlines()[0].split()[:2] == ["NO", "format"]
    assert "INVALID: malformed token" in output


# -- token-derived text reaches the terminal escaped ------------------------------------

#: Clear the screen, home the cursor, draw a green VALID; a C1 CSI; a bidi override.
INJECTED = "\x1b[2J\x1b[H\x1b[32mVALID\x1b[0m \x9b2J \u202e"
UNPRINTABLE = ("\x1b", "\x9b", "\u202e")


def _in_process(*argv: str) -> str:
    return run(*argv)[1]


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[list[str], Path]:
    """Tokens whose scope and alg carry terminal escapes, and the JWKS file that checks them."""
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


def test_printable_escapes_controls_and_bidi() -> None:
    assert cli.printable("plain text") == "plain text"
    assert cli.printable("a\x1b[2Jb\u202e") == "a\\x1b[2Jb\\u202e"
