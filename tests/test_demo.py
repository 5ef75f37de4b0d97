"""`make demo` on its embedded defaults: the self-check over real HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["BEARERGUARD_DEMO_DB"] = f"sqlite:///{tmp_path / 'demo.db'}"
    env["BEARERGUARD_DEMO_KEY"] = str(tmp_path / "demo-key.pem")
    return env


def test_demo_check_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bearerguard.demo", "--check"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line[:3] in ("ok ", "BAD")]
    assert len(lines) >= 6 and all(line.startswith("ok ") for line in lines)
    assert "all answers as expected" in result.stdout


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
    from bearerguard import demo

    os.environ.setdefault("BEARERGUARD_DEMO_KEY", str(tmp_path / "k.pem"))
    base = "http://127.0.0.1:5000"
    lines = [demo._curl(base, p, t) for _, p, t, _ in demo._expectations("jwt")]
    assert 'curl -i -H "Authorization: Bearer demo-good" http://127.0.0.1:5000/user' in lines
    assert "curl -i http://127.0.0.1:5000/user" in lines
