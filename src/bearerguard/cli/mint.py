"""``bearerguard mint``: a JWT from the demo issuer's key, for trying things locally."""

from __future__ import annotations

import argparse
import re
from typing import TextIO

__all__ = ["cmd_mint", "parse_duration"]


def parse_duration(text: str) -> int:
    """Seconds from ``90s``, ``10m``, ``2h``, ``1d`` or a bare number (argparse's type)."""
    match = re.fullmatch(r"(\d+)\s*([smhd]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (say 90s, 10m, 2h, 1d)")
    number, unit = match.groups()
    return int(number) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def cmd_mint(args: argparse.Namespace, out: TextIO) -> int:
    """Print a token signed by the demo issuer's key (kept in a private directory)."""
    # Imported here: the issuer's key is only loaded (or made) when minting.
    from .. import _demo_issuer

    token = _demo_issuer.mint(scope=args.scope, expires_in=args.expires, subject=args.subject)
    out.write(token + "\n")
    return 0
