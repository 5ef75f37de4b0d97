"""``bearerguard inspect``: decode a token and explain it; no key needed, nothing verified."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from typing import Any, TextIO

from ..core.routing import peek_jws
from ..validators.base import scopes_of
from .terminal import Style, printable, read_token

__all__ = ["TIME_CLAIMS", "cmd_inspect", "describe", "relative"]

TIME_CLAIMS = ("exp", "nbf", "iat", "auth_time")
_LABELS = {"exp": "expires", "nbf": "not before", "iat": "issued", "auth_time": "authenticated"}


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def relative(when: float, now: float) -> str:
    """'in 4 min' or '2 h ago': a time claim relative to now."""
    delta = when - now
    return f"in {_duration(delta)}" if delta >= 0 else f"{_duration(delta)} ago"


def _iso(when: float) -> str:
    try:
        return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def describe(token: str, now: float) -> dict[str, Any]:
    """What ``inspect`` shows, as data (``--json`` prints it as is)."""
    jws = peek_jws(token)
    if jws is None:
        return {"format": "opaque", "length": len(token)}
    header, payload = jws
    claims = payload or {}
    times = {
        claim: {"iso": _iso(claims[claim]), "relative": relative(claims[claim], now)}
        for claim in TIME_CLAIMS
        if _is_number(claims.get(claim))
    }
    return {
        "format": "jws",
        "header": header,
        "claims": payload,
        "times": times,
        "scopes": sorted(scopes_of(claims.get("scope") or claims.get("scp"))),
        "expired": _is_number(claims.get("exp")) and claims["exp"] <= now,
    }


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Print what the token says; always 0 (an opaque token is no error)."""
    info = describe(read_token(args.token), time.time())
    if args.json:
        # json.dumps escapes every control and non-ASCII character (ensure_ascii).
        json.dump(info, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
        return 0
    style = Style(out, args.colour)
    if info["format"] == "opaque":
        out.write(f"opaque token ({info['length']} characters): not a JWT, nothing to decode.\n")
        out.write(
            style.dim("Only its issuer can tell what it means (database or introspection).\n")
        )
        return 0
    out.write(style.bold("header") + "\n" + json.dumps(info["header"], indent=2) + "\n")
    claims = info["claims"]
    out.write(style.bold("claims") + "\n")
    out.write(
        (json.dumps(claims, indent=2) if claims is not None else "(not a JSON object)") + "\n"
    )
    for claim, when in info["times"].items():
        text = f"{_LABELS[claim]:<13} {when['iso']}  ({when['relative']})"
        out.write((style.bad(text) if claim == "exp" and info["expired"] else text) + "\n")
    out.write(f"{'scopes':<13} {printable(' '.join(info['scopes'])) or '(none)'}\n")
    return 0
