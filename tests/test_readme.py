"""Every Python block of README.md runs, in order, in one namespace.

So the documentation cannot rot: a renamed argument or a changed default that
breaks a snippet fails CI. Blocks may assert on the responses they produce.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from bearerguard import ResourceProtector

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_readme_has_the_quickstart_and_recipes() -> None:
    text = README.read_text(encoding="utf-8")
    for needed in (
        "make demo",
        "make test",
        "## Quickstart",
        "### JWT access tokens",
        "### Opaque tokens by introspection",
        "### Many workers",
        "## Let clients discover your API",
        "## Migrating",
    ):
        assert needed in text
    assert len(python_blocks()) >= 8


def test_every_python_block_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme"}
    for number, block in enumerate(python_blocks(), 1):
        try:
            exec(compile(block, f"README.md block {number}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the message is the point
            pytest.fail(f"README.md python block {number} failed: {error!r}\n{block}")
    for value in list(namespace.values()):
        if isinstance(value, ResourceProtector):
            value.revocations.close()
