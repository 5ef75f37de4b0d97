"""Reading untrusted claim values: word sets, numbers, text, strict JSON.

One home for each coercion, so a claim means the same to the scope check, the
``roles=`` check, the JWT validator and Authlib's hooks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

__all__ = ["json_object", "number_or_none", "strict_json", "text_or_none", "values_of"]

#: Beyond 2**53 an integer has no exact float: no time claim is that large.
_MAX_EXACT = 2**53


def values_of(value: object) -> frozenset[str]:
    """The words of a claim: a space-separated string (``scope``) or a list of
    strings (``scp``, ``roles``); anything else counts for nothing.

    Non-string items are dropped, and a mapping is not a list (its keys would
    otherwise grant ``roles={"admin": false}`` the admin role).
    """
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, Iterable) and not isinstance(value, Mapping | bytes | bytearray):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def number_or_none(value: object) -> float | None:
    """A finite number, else None.

    bool is an int, and a claim of ``true`` is not a time; an integer too big
    for a float, NaN and infinity are not times either (and must not crash).
    An int in range is returned as it is: the very object in the claims, where
    a float() copy would cost 24 bytes per cached token and time claim.
    """
    # The exact type first: what JSON gives (bool's type is not int), and a
    # test cheaper than the isinstance below it, four times per cache miss.
    if type(value) is int:
        return value if -_MAX_EXACT <= value <= _MAX_EXACT else None
    if value is None:  # a claim not there: every iat or nbf a token leaves out
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _reject_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON does not (RFC 8259 §6), and
    # an `exp` of Infinity would be a token that never expires.
    raise ValueError(f"not JSON: {name}")


#: Built once: ``json.loads(data, parse_constant=...)`` builds a decoder and its
#: scanner on every call, a third of the cost of parsing a token's header.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)
#: ``JSONDecoder.decode``'s own steps, called directly: its two Python frames
#: (``decode``, ``raw_decode``) around the C scanner, twice per JWS on a miss.
_SCAN: Callable[[str, int], tuple[Any, int]] = _STRICT_JSON.scan_once  # type: ignore[attr-defined]
_WHITESPACE: Callable[[str, int], re.Match[str]] = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]


def strict_json(data: bytes | str) -> Any:
    """``data`` parsed as strict JSON (no NaN, no Infinity); raises ValueError.

    ``Any`` because JSON is: the caller checks the shape it expects.
    RecursionError (deeply nested input) is raised as ValueError too.
    """
    if isinstance(data, bytes):
        # What json.detect_encoding answers for a JSON object's first bytes
        # ("{" then no NUL: UTF-8), without its call; anything else asks it.
        head = data[:2]
        plain = len(head) == 2 and head[0] == 0x7B and head[1] != 0
        text = data.decode("utf-8" if plain else json.detect_encoding(data))
    else:
        text = data
    try:
        start = _WHITESPACE(text, 0).end()
        value, end = _SCAN(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if end != len(text) and _WHITESPACE(text, end).end() != len(text):
        raise ValueError("not JSON: extra data")
    return value


def json_object(data: bytes | str) -> dict[str, Any] | None:
    """``data`` parsed as a strict JSON object, or None."""
    try:
        value = strict_json(data)
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return None
    return value if isinstance(value, dict) else None
