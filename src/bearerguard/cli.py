"""The ``bearerguard`` command: inspect, verify and mint tokens, run the demo.

``inspect`` needs no key: it decodes and explains. ``verify`` runs the same
validator the protector runs and says which check failed. Exit codes: 0 fine,
1 token invalid, 2 usage or network error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from .core.routing import peek_jws
from .validators.base import scopes_of

__all__ = ["main"]

TIME_CLAIMS = ("exp", "nbf", "iat", "auth_time")


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\u202e``).

    Whatever comes from a token (a scope, ``alg``) is the token author's text:
    raw, an ANSI escape in it could clear the terminal and draw a fake VALID.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class _Style:
    """ANSI colour when writing to a terminal, plain text otherwise."""

    def __init__(self, stream: TextIO, colour: bool | None = None) -> None:
        if colour is None:
            colour = stream.isatty() and "NO_COLOR" not in os.environ
        self.on = colour

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def bad(self, text: str) -> str:
        return self._wrap("1;31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)


def _duration(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def relative(when: float, now: float) -> str:
    """'expires in 4 min' style text for a time claim, relative to now."""
    delta = when - now
    return f"in {_duration(delta)}" if delta >= 0 else f"{_duration(delta)} ago"


def _iso(when: float) -> str:
    try:
        return dt.datetime.fromtimestamp(when, dt.timezone.utc).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _read_token(value: str) -> str:
    token = sys.stdin.read() if value == "-" else value
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token


def describe(token: str, now: float) -> dict[str, Any]:
    """What ``inspect`` shows, as data."""
    jws = peek_jws(token)
    if jws is None:
        return {"format": "opaque", "length": len(token)}
    header, payload = jws
    times = {}
    for claim in TIME_CLAIMS:
        value = (payload or {}).get(claim)
        if isinstance(value, int | float) and not isinstance(value, bool):
            times[claim] = {"iso": _iso(value), "relative": relative(value, now)}
    scope_claim = (payload or {}).get("scope") or (payload or {}).get("scp")
    return {
        "format": "jws",
        "header": header,
        "claims": payload,
        "times": times,
        "scopes": sorted(scopes_of(scope_claim)),
        "expired": bool(
            payload and isinstance(payload.get("exp"), int | float) and payload["exp"] <= now
        ),
    }


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    token = _read_token(args.token)
    info = describe(token, time.time())
    if args.json:
        json.dump(info, out, indent=2, sort_keys=True, default=str)
        out.write("\n")
        return 0
    style = _Style(out, args.colour)
    if info["format"] == "opaque":
        out.write(f"opaque token ({info['length']} characters): not a JWT, nothing to decode.\n")
        out.write(
            style.dim("Only its issuer can tell what it means (database or introspection).\n")
        )
        return 0
    # json.dumps escapes every control and non-ASCII character (ensure_ascii).
    out.write(style.bold("header") + "\n" + json.dumps(info["header"], indent=2) + "\n")
    claims = info["claims"]
    out.write(style.bold("claims") + "\n")
    out.write(
        (json.dumps(claims, indent=2) if claims is not None else "(not a JSON object)") + "\n"
    )
    for claim, when in info["times"].items():
        label = {
            "exp": "expires",
            "nbf": "not before",
            "iat": "issued",
            "auth_time": "authenticated",
        }
        text = f"{label[claim]:<13} {when['iso']}  ({when['relative']})"
        out.write((style.bad(text) if claim == "exp" and info["expired"] else text) + "\n")
    out.write(f"{'scopes':<13} {printable(' '.join(info['scopes'])) or '(none)'}\n")
    return 0


def _parse_duration(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90s, 10m, 2h, 1d)")
    number, unit = match.groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def cmd_mint(args: argparse.Namespace, out: TextIO) -> int:
    from . import demo

    out.write(demo.mint(scope=args.scope, expires_in=args.expires, subject=args.subject) + "\n")
    return 0


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    from ._verify import verify

    return verify(args, _read_token(args.token), out, _Style(out, args.colour))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bearerguard", description=__doc__.split("\n")[0])
    colour = argparse.ArgumentParser(add_help=False)
    group = colour.add_mutually_exclusive_group()
    group.add_argument("--colour", "--color", dest="colour", action="store_true", default=None)
    group.add_argument("--no-colour", "--no-color", dest="colour", action="store_false")
    colour.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser("inspect", parents=[colour], help="decode and explain a token")
    inspect.add_argument("token", help="the token, or - to read it from stdin")
    inspect.set_defaults(run=cmd_inspect)

    verify = sub.add_parser("verify", parents=[colour], help="validate a JWT, check by check")
    verify.add_argument("token", help="the token, or - to read it from stdin")
    verify.add_argument("--issuer", required=True)
    verify.add_argument("--audience", required=True)
    keys = verify.add_mutually_exclusive_group()
    keys.add_argument("--jwks-uri", help="fetch keys here (default: discover from the issuer)")
    keys.add_argument("--jwks", metavar="FILE", help="a JWKS JSON file")
    verify.add_argument("--scope", default="", help="scopes the token must carry, e.g. 'a b'")
    verify.add_argument("--leeway", type=int, default=60)
    verify.add_argument("--require-typ", action="store_true", help="require typ at+jwt")
    verify.set_defaults(run=cmd_verify)

    mint = sub.add_parser("mint", help="mint a JWT from the demo issuer's key (local testing)")
    mint.add_argument("--scope", default="profile email")
    mint.add_argument("--expires", type=_parse_duration, default=600, help="e.g. 10m (default)")
    mint.add_argument("--subject", default="alice")
    mint.set_defaults(run=cmd_mint)

    sub.add_parser("demo", help="run the example resource server (make demo); --check to self-test")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:
        # Everything after "demo" is the demo's own (argparse's REMAINDER drops --flags).
        from . import demo

        return demo.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args, out or sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
