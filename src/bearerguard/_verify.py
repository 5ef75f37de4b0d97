"""``bearerguard verify``: the protector's JWT validation, one check per line.

The verdict is the validator's own (``JWTBearerTokenValidator.validate``, as
the protector runs it); the lines before it explain that verdict check by
check, so "why was this token rejected?" has an answer.
"""

from __future__ import annotations

import argparse
import base64
import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TextIO

from ._http import FetchError
from .cli import printable
from .core.routing import peek_jws
from .errors import BearerGuardError, SigningKeysUnavailableError
from .validators.base import scopes_of
from .validators.jwt import JWTBearerTokenValidator, _typ_allowed

__all__ = ["verify"]


class _Style(Protocol):
    def good(self, text: str) -> str: ...
    def bad(self, text: str) -> str: ...
    def dim(self, text: str) -> str: ...


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not checked (a check before it failed, or not asked for)
    detail: str


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _validator(args: argparse.Namespace) -> JWTBearerTokenValidator:
    jwks = None
    if args.jwks:
        with open(args.jwks, encoding="utf-8") as f:
            jwks = json.load(f)
    return JWTBearerTokenValidator(
        issuer=args.issuer,
        audience=args.audience,
        jwks=jwks,
        jwks_uri=args.jwks_uri,
        leeway=args.leeway,
        require_typ=args.require_typ,
    )


def _checks(
    validator: JWTBearerTokenValidator,
    token: str,
    header: dict[str, Any],
    claims: dict[str, Any],
    scope: str,
) -> list[Check]:
    now = validator.clock()
    alg, kid = header.get("alg"), header.get("kid")
    checks = [Check("alg allowed", alg in validator.algorithms, f"{alg}")]
    keys = validator._static if validator.fetcher is None else validator.fetcher.keys()
    key = (
        keys.find(kid, alg)
        if keys is not None and isinstance(alg, str) and (kid is None or isinstance(kid, str))
        else None
    )
    checks.append(Check("kid found", key is not None, f"kid {kid!r} among {len(keys or ())} keys"))
    if key is not None and isinstance(alg, str):
        signing_input, _, signature = token.rpartition(".")
        try:
            valid = key.verify(alg, signing_input.encode("ascii"), _b64(signature))
        except Exception:
            valid = False
        checks.append(Check("signature", valid, "verified" if valid else "does not verify"))
    else:
        checks.append(Check("signature", None, "no key to check it with"))
    iss = claims.get("iss")
    checks.append(Check("iss", iss == validator.issuer, f"{iss!r}, want {validator.issuer!r}"))
    aud = claims.get("aud")
    auds = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
    wanted = validator.audiences
    checks.append(Check("aud", wanted is None or bool(wanted & auds), f"{aud!r}"))
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        checks.append(
            Check("exp", now < exp, f"{'in' if exp > now else 'since'} {abs(exp - now):.0f} s")
        )
    else:
        checks.append(Check("exp", False, "missing"))
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float):
        checks.append(Check("nbf", nbf <= now + validator.leeway, f"{nbf - now:+.0f} s from now"))
    else:
        checks.append(Check("nbf", None, "not present"))
    cnf = claims.get("cnf")
    bound = "none" if cnf is None else "bound to a key (DPoP/mTLS): not a bearer token"
    checks.append(Check("cnf", cnf is None, bound))
    typ = header.get("typ")
    wanted_typ = "at+jwt" if validator.require_typ else "at+jwt, JWT or none"
    checks.append(
        Check("typ", _typ_allowed(header, validator.require_typ), f"{typ!r}, want {wanted_typ}")
    )
    have = scopes_of(claims.get("scope") or claims.get("scp"))
    need = frozenset(scope.split())
    checks.append(
        Check("scope", need <= have if need else None, f"has {' '.join(sorted(have)) or '-'}")
    )
    return checks


def verify(args: argparse.Namespace, token: str, out: TextIO, style: _Style) -> int:
    """Run the checks and the validator; print; return 0 valid, 1 invalid, 2 error."""
    jws = peek_jws(token)
    claims = jws[1] if jws is not None else None
    if jws is None or claims is None:
        out.write("not a JWT: only its issuer can check an opaque token (introspection)\n")
        return 1
    header = jws[0]
    try:
        validator = _validator(args)
        checks = _checks(validator, token, header, claims, args.scope)
        verdict: BearerGuardError | None = None
        try:
            validator.validate(token)
        except BearerGuardError as error:
            verdict = error
    except (OSError, ValueError, FetchError, SigningKeysUnavailableError) as error:
        message = error.description if isinstance(error, BearerGuardError) else str(error)
        out.write(f"error: {printable(message)}\n")
        return 2
    scope_check = checks[-1]
    valid = verdict is None and scope_check.ok is not False
    reason = (
        verdict.description if verdict is not None else (None if valid else "insufficient scope")
    )
    if args.json:
        # json.dumps escapes every control and non-ASCII character (ensure_ascii).
        result = {"valid": valid, "reason": reason, "checks": [asdict(c) for c in checks]}
        out.write(json.dumps(result, indent=2) + "\n")
        return 0 if valid else 1
    first = True
    for check in checks:
        mark = "--" if check.ok is None else "ok" if check.ok else "NO"
        # The details quote the token (its alg, kid, scopes): escaped.
        line = f"{mark:>2}  {check.name:<12} {printable(check.detail)}"
        if check.ok is False and first:
            line, first = style.bad(line + "   <- first failure"), False
        elif check.ok is None:
            line = style.dim(line)
        out.write(line + "\n")
    out.write(style.good("VALID\n") if valid else style.bad(f"INVALID: {printable(str(reason))}\n"))
    return 0 if valid else 1
