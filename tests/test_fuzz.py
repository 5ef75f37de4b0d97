"""A short, bounded run of the coverage-guided fuzzer (``make fuzz`` runs longer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_protector.py"


def test_fuzz_protector_bounded_run(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris (Linux only) is not installed")
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-max_total_time=6", "-rss_limit_mb=2048", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Done" in output
