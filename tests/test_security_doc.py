"""SECURITY.md names a test for each promise: every one it names must exist.

A renamed or deleted test would otherwise leave a promise that nothing checks.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)")


def test_every_test_security_md_names_exists() -> None:
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    references = set(REFERENCE.findall(text))
    assert len(references) > 50  # the parse found the references at all
    missing = []
    for path, name in sorted(references):
        source = ROOT / path
        defined = source.exists() and re.search(
            rf"^\s*(?:async )?def {name}\(", source.read_text(encoding="utf-8"), re.M
        )
        if not defined:
            missing.append(f"{path}::{name}")
    assert not missing, missing


CASE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)\[([\w-]+)\]`")


def test_every_parametrized_case_security_md_names_exists() -> None:
    """A case id (``test_x[case]``) must be a string literal of that test's file."""
    text = (ROOT / "SECURITY.md").read_text(encoding="utf-8")
    cases = set(CASE.findall(text))
    assert cases  # the parse found them at all
    missing = [
        f"{path}::{name}[{case}]"
        for path, name, case in sorted(cases)
        if f'"{case}"' not in (ROOT / path).read_text(encoding="utf-8")
    ]
    assert not missing, missing
