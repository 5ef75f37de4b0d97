"""What reaches the terminal: token text escaped, colour only on a terminal.

Whatever comes from a token (a scope, ``alg``, ``kid``) is its author's text:
printed raw, an ANSI escape in it could clear the screen and draw a fake VALID.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

__all__ = ["Style", "printable", "read_token"]


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped (``\\x1b``, ``\\u202e``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class Style:
    """ANSI colour when writing to a terminal (and ``NO_COLOR`` unset), plain text otherwise.

    ``colour`` (``--colour``/``--no-colour``) overrides the guess.
    """

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


def read_token(value: str) -> str:
    """The token argument, or stdin for ``-``; a leading ``Bearer`` is dropped."""
    token = sys.stdin.read() if value == "-" else value
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    return token
