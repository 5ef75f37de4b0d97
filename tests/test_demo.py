"""`make demo` on its embedded defaults: the self-check over real HTTP.

The demo is ``examples/demo.py``, outside the package; the issuer it trusts,
``bearerguard._demo_issuer``, is inside, so that ``bearerguard mint`` works
with the base install.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from .servers import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
DEMO = EXAMPLES / "demo.py"


def _demo() -> ModuleType:
    """``examples/demo.py`` imported (once) as a module of this test run."""
    name = "bearerguard_examples_demo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, DEMO)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # SQLAlchemy resolves the models' annotations through it
        spec.loader.exec_module(module)
    return sys.modules[name]


def _create_app(*args: str) -> list[str]:
    """A command that runs the demo's ``create_app(*args)`` in a fresh interpreter."""
    code = (
        f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); "
        f"from demo import create_app; create_app({', '.join(args)})"
    )
    return [sys.executable, "-c", code]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BEARERGUARD_DEMO_DB"] = f"sqlite:///{tmp_path / 'demo.db'}"
    env["BEARERGUARD_DEMO_KEY"] = str(tmp_path / "demo-key.pem")
    return env


def test_demo_check_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(DEMO), "--check"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:3] in ("ok ", "BAD")]
    assert len(lines) >= 11 and all(line.startswith("ok ") for line in lines)
    assert "all answers as expected" in result.stdout
    # The DPoP requests (RFC 9449), each by the answer it must get.
    for expected in (
        "ok  200 (want 200) a DPoP-bound JWT with its proof",
        "ok  401 (want 401) the same proof replayed",
        "ok  200 (want 200) a fresh proof for the same token",
        "ok  401 (want 401) the DPoP-bound JWT replayed as a Bearer token",
    ):
        assert any(line.startswith(expected) for line in lines), (expected, result.stdout)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_check(tmp_path: Path) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "demo", "ARGS=--check"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all answers as expected" in result.stdout


def test_demo_prints_working_curl_lines(tmp_path: Path) -> None:
    """The printed lines name each case; the server is stopped right after start."""
    demo = _demo()
    os.environ.setdefault("BEARERGUARD_DEMO_KEY", str(tmp_path / "k.pem"))
    base = "http://127.0.0.1:5000"
    lines = [demo._curl(base, p, t) for _, p, t, _ in demo._expectations("jwt")]
    assert 'curl -i -H "Authorization: Bearer demo-good" http://127.0.0.1:5000/user' in lines
    assert "curl -i http://127.0.0.1:5000/user" in lines


# -- where the key and database live; the admin token ------------------------------------


def _private_env(tmp_path: Path) -> dict[str, str]:
    """The demo on its defaults, its private directory under a runtime dir of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEARERGUARD_DEMO_")}
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _mint(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "bearerguard"
    return subprocess.run(
        [str(script), "mint"], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_key_and_database_are_in_a_private_directory_found_again_by_mint(tmp_path: Path) -> None:
    import jwt
    from cryptography.hazmat.primitives import serialization

    env = _private_env(tmp_path)
    first, second = _mint(env), _mint(env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    home = tmp_path / "run" / "bearerguard-demo"
    key_file = home / "demo-key.pem"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = serialization.load_pem_private_key(key_file.read_bytes(), None).public_key()
    for token in (first.stdout.strip(), second.stdout.strip()):  # one key for both runs
        jwt.decode(token, public, algorithms=["RS256"], audience="bearerguard-demo")

    subprocess.run(
        _create_app(),
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert (home / "demo.db").exists(), "the default database is there too"
    assert not any(p.name.startswith("bearerguard-demo") for p in tmp_path.glob("*"))


PLANTED = [
    "world-writable-dir",
    "group-writable-dir",
    "symlinked-dir",
    "readable-key",
    "others-key",
]


@pytest.mark.parametrize("planted", PLANTED)
def test_a_planted_directory_or_key_is_refused(tmp_path: Path, planted: str) -> None:
    """Whoever can put the key there mints admin tokens: refuse, never use it."""
    env = _private_env(tmp_path)
    home = tmp_path / "run" / "bearerguard-demo"
    if planted == "symlinked-dir":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        home.symlink_to(elsewhere)
    else:
        home.mkdir(mode=0o700)
    if planted.endswith("-dir") and planted != "symlinked-dir":
        home.chmod(0o777 if planted.startswith("world") else 0o770)
    if planted.endswith("-key"):
        assert _mint(env).returncode == 0  # made by us, as it should be
        key_file = home / "demo-key.pem"
        if planted == "readable-key":
            key_file.chmod(0o644)
        else:
            if os.geteuid() != 0:
                pytest.skip("only root can give a file to another user")
            os.chown(key_file, 65534, 65534)
    result = _mint(env)
    assert result.returncode != 0
    assert "refusing" in result.stderr
    assert not result.stdout.strip(), "no token minted"


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(DEMO), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _printed(process: subprocess.Popen[str]) -> tuple[str, list[str]]:
    """The admin token the demo printed, and the lines up to it."""
    assert process.stdout is not None
    lines: list[str] = []
    while not any("/admin/stats" in line for line in lines):
        line = process.stdout.readline()
        assert line, f"the demo stopped: {lines}"
        lines.append(line.rstrip("\n"))
    curl = next(line for line in lines if "/admin/stats" in line)
    token = curl.split("Authorization: Bearer ", 1)[1].split('"', 1)[0]
    return token, lines


def _status(port: int, path: str, token: str) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:  # not listening yet
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_each_start_prints_a_new_admin_token_and_the_old_one_stops(tmp_path: Path) -> None:
    env = _private_env(tmp_path)
    tokens = []
    for _ in range(2):
        port = free_port()
        process = _start(env, port)
        try:
            token, lines = _printed(process)
            assert len(token) >= 32 and token != "demo-admin"
            assert _status(port, "/admin/stats", token) == 200
            assert _status(port, "/admin/stats", "demo-admin") == 401
            for earlier in tokens:
                assert _status(port, "/admin/stats", earlier) == 401
            assert f'curl -i -H "Authorization: Bearer demo-good" http://127.0.0.1:{port}/user' in [
                line.strip() for line in lines
            ]
        finally:
            process.terminate()
            process.wait(10)
            assert process.stdout is not None
            process.stdout.close()
        tokens.append(token)
    assert tokens[0] != tokens[1]


def _request(port: int, headers: dict[str, str]) -> tuple[int, str]:
    """GET /jwt/user with ``headers``: the status and the ``WWW-Authenticate``."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{port}/jwt/user"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status), ""
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers.get("WWW-Authenticate", "")


def _curl_headers(line: str) -> dict[str, str]:
    """The ``-H`` headers of a printed curl line, as curl would send them."""
    words = shlex.split(line)
    pairs = [words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H"]
    return {name: value for name, value in pairs}


def test_printed_dpop_lines_work_as_printed(tmp_path: Path) -> None:
    """The banner's DPoP curl works once, its proof command makes the next one,
    and the same token as a Bearer token is refused."""
    env = _private_env(tmp_path)
    port = free_port()
    process = _start(env, port)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any("as a thief would" in line for line in lines[:-1]):
            line = process.stdout.readline()
            assert line, f"the demo stopped: {lines}"
            lines.append(line.strip())
        url = f"http://127.0.0.1:{port}/jwt/user"
        dpop_curl = next(x for x in lines if x.startswith("curl") and '"DPoP: ey' in x)
        command = next(x for x in lines if x.startswith("PROOF=$("))[len("PROOF=$(") : -1]
        bearer_curl = lines[-1]
        assert dpop_curl.endswith(url) and bearer_curl.endswith(url)
        headers = _curl_headers(dpop_curl)
        assert headers["Authorization"].startswith("DPoP ")
        deadline = time.monotonic() + 30
        while True:  # until it listens
            try:
                assert _request(port, headers)[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        status, challenge = _request(port, headers)
        assert status == 401 and 'error="invalid_dpop_proof"' in challenge
        for _ in range(2):  # the printed command: a new proof each run
            made = subprocess.run(
                shlex.split(command), env=env, capture_output=True, text=True, timeout=60
            )
            assert made.returncode == 0, made.stdout + made.stderr
            assert _request(port, {**headers, "DPoP": made.stdout.strip()})[0] == 200
        status, challenge = _request(port, _curl_headers(bearer_curl))
        assert status == 401 and 'error="invalid_token"' in challenge
    finally:
        process.terminate()
        process.wait(10)
        assert process.stdout is not None
        process.stdout.close()
    client_key = tmp_path / "run" / "bearerguard-demo" / "dpop-client.pem"
    assert stat.S_IMODE(client_key.stat().st_mode) == 0o600


def test_seeded_tokens_live_a_day_not_ten_years(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    demo = _demo()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = _private_env(tmp_path)
    subprocess.run(
        _create_app(repr(url)),
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    engine = create_engine(url)
    with Session(engine) as session:
        lifetimes = {t.access_token: t.expires_in for t in session.scalars(select(demo.Token))}
    engine.dispose()
    assert set(demo.SEED_TOKENS) <= set(lifetimes) and "demo-admin" not in lifetimes
    assert set(lifetimes.values()) == {24 * 3600}


# -- the package: the issuer without the demo ---------------------------------------------


def test_bearerguard_mint_works_without_sqlalchemy(tmp_path: Path) -> None:
    """The base install has no SQLAlchemy (the ``sqla`` extra): ``bearerguard mint``
    must not need it, nor the demo app."""
    code = """
import io, sys
sys.modules["sqlalchemy"] = None  # as if not installed: importing it raises ImportError
from bearerguard import cli
out = io.StringIO()
assert cli.main(["mint", "--scope", "profile", "--subject", "carol"], out) == 0
print(out.getvalue().strip())
loaded = {name.split(".")[0] for name, module in sys.modules.items() if module is not None}
assert "sqlalchemy" not in loaded, "mint loaded SQLAlchemy"
"""
    env = _private_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    import jwt
    from cryptography.hazmat.primitives import serialization

    key_file = tmp_path / "run" / "bearerguard-demo" / "demo-key.pem"
    public = serialization.load_pem_private_key(key_file.read_bytes(), None).public_key()
    claims = jwt.decode(
        result.stdout.strip(), public, algorithms=["RS256"], audience="bearerguard-demo"
    )
    assert (claims["sub"], claims["scope"], claims["iss"]) == (
        "carol",
        "profile",
        "http://127.0.0.1:5000",
    )


def test_the_demo_app_is_not_in_the_package() -> None:
    """Its seeded tokens are public strings: it must not ship where a server imports it."""
    assert importlib.util.find_spec("bearerguard.demo") is None
    import bearerguard

    package = Path(bearerguard.__file__).parent
    assert not (package / "demo.py").exists()
