"""One step of ``bearerguard verify``: :class:`Check`, and :func:`run_step` to make one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BearerGuardError, ValidatorUnavailableError

__all__ = ["Check", "run_step"]


@dataclass
class Check:
    """One step's outcome: ``ok`` None when it did not run (a step it needs
    failed first, or there is nothing to check)."""

    name: str
    ok: bool | None
    detail: str


def run_step(name: str, step: Callable[[], object], detail: str) -> Check:
    """``step()`` as a :class:`Check`: a refusal is a failed step, with its description."""
    try:
        step()
    except BearerGuardError as refusal:
        if isinstance(refusal, ValidatorUnavailableError):
            raise  # no keys to be had: an error of the command, not a verdict
        because = refusal.description
        return Check(name, False, f"{detail}: {because}" if detail else because)
    return Check(name, True, detail)
