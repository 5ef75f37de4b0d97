"""``bearerguard verify``: the validator's own steps, one line each, then its verdict.

The lines are the steps :class:`~bearerguard.validators.JWTBearerTokenValidator`
runs, taken from it (:mod:`bearerguard.jose`: the strict parse, each header
check, the key, the signature, each claims check) and run one by one, so
"why was this token rejected?" has an answer that cannot disagree with the
protector: the verdict is ``validator.validate(token)``'s, and its first
failure is the first line marked ``NO``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from functools import partial
from typing import Any, TextIO

from ..core.binding import is_certificate_only
from ..core.requirements import compile_requirement
from ..core.routing import peek_jws
from ..errors import BearerGuardError, ValidatorUnavailableError
from ..jose.jws import CompactJWS, extract, verify_signature
from ..jose.keys import VerifyKey
from ..transport import FetchError
from ..validators.base import TokenInfo
from ..validators.jwt import JWTBearerTokenValidator
from .dpop import binding_detail, proof_checks, unverified_claims
from .inspect import relative
from .steps import Check, run_step
from .terminal import Style, printable, read_token

__all__ = ["Check", "cmd_verify", "explain"]

#: The claims whose types the "claim types" step checks, when present.
_TYPED = ("jti", "client_id", "acr", "auth_time", "amr")


def explain(validator: JWTBearerTokenValidator, token: str) -> list[Check]:
    """Every step of ``validator`` over ``token``, in the order it runs them.

    The validator stops at its first failure; this goes on where a step does
    not need the one that failed, to say all that is wrong.
    """
    try:
        jws = extract(token)
    except BearerGuardError as refusal:
        return [Check("format", False, refusal.description)]
    checks = [Check("format", True, "JWS compact")]
    header = jws.header
    for name, step in validator.header_policy.steps():
        checks.append(
            run_step(name, partial(step, header), _header_detail(name, header, validator))
        )
    passed = {check.name: check.ok for check in checks}
    checks += _signature_checks(
        validator, jws, usable=bool(passed["alg allowed"] and passed["kid"])
    )
    try:
        claims = jws.claims()
    except BearerGuardError as refusal:
        return [*checks, Check("claims", False, refusal.description)]
    now = validator.clock()
    for name, claim_step in validator.claims_policy.steps():
        detail = _claim_detail(name, claims, now, validator)
        checks.append(run_step(name, partial(claim_step, claims, header, now), detail))
    return checks


def _signature_checks(
    validator: JWTBearerTokenValidator, jws: CompactJWS, *, usable: bool
) -> list[Check]:
    """The key step and the signature step (neither runs without an allowed ``alg``)."""
    if not usable:
        return [Check("kid found", None, "not looked up"), Check("signature", None, "no key")]
    kid = jws.header.get("kid")
    found: list[VerifyKey] = []
    key = run_step(
        "kid found",
        lambda: found.append(validator.signing_key(jws.header)),
        f"kid {kid!r} among {len(validator.key_set())} keys",
    )
    if not found:
        return [key, Check("signature", None, "no key to check it with")]
    signature = run_step("signature", lambda: verify_signature(jws, found[0]), "")
    if signature.ok:
        signature.detail = "verified"
    return [key, signature]


def _header_detail(name: str, header: Mapping[str, Any], v: JWTBearerTokenValidator) -> str:
    if name == "typ":
        wanted = "at+jwt" if v.require_typ else "at+jwt, JWT or none"
        return f"{header.get('typ')!r}, want {wanted}"
    if name == "crit":
        return ", ".join(k for k in ("crit", "b64") if k in header) or "none"
    return repr(header.get(name.split()[0]))  # "alg allowed": the alg


def _claim_detail(
    name: str, claims: Mapping[str, Any], now: float, v: JWTBearerTokenValidator
) -> str:
    """What the token says for the step ``name`` (the step itself decides)."""
    value = claims.get(name)
    if name in ("exp", "nbf", "iat"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "not present" if value is None else repr(value)
        return relative(value, now)
    if name == "iss":
        return f"{value!r}, want {v.issuer!r}"
    if name == "cnf":
        if value is None:
            return "none"
        if isinstance(value, Mapping) and is_certificate_only(value):
            detail = binding_detail(value)
            return f"bound to a client certificate ({detail}): checked on each request"
        return f"bound to a key ({binding_detail(value)}): not a bearer token (see --dpop-proof)"
    if name == "claim types":
        return ", ".join(n for n in _TYPED if n in claims) or "none present"
    if name in ("aud", "sub"):
        return repr(value)
    return ""


def _scope_check(info: TokenInfo | None, scope: str) -> Check:
    """The view's needs: not the validator's business, but the protector's next step."""
    if info is None:
        return Check("scope", None, "not checked: the token is refused")
    have = " ".join(sorted(info.scopes)) or "-"
    if not scope.split():
        return Check("scope", None, f"has {have}")
    missing = compile_requirement(scope, "AND", {}).missing(info)
    return Check("scope", missing is None, f"has {have}")


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


def _verdict(
    validate: Callable[[str], TokenInfo], token: str
) -> tuple[TokenInfo | None, BearerGuardError | None]:
    try:
        return validate(token), None
    except ValidatorUnavailableError:
        raise
    except BearerGuardError as refusal:
        return None, refusal


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    """Explain and judge the token; 0 valid, 1 invalid, 2 usage or network error."""
    token = read_token(args.token)
    if peek_jws(token) is None:
        return _not_a_jwt(out, as_json=args.json)
    try:
        validator = _validator(args)
        checks = explain(validator, token)
        bound = args.dpop_proof is not None
        info, refusal = _verdict(validator.validate_bound if bound else validator.validate, token)
    except (OSError, ValueError, FetchError, ValidatorUnavailableError) as error:
        message = error.description if isinstance(error, BearerGuardError) else str(error)
        out.write(f"error: {printable(message)}\n")
        return 2
    if bound:
        checks = _with_proof(checks, args, token, info)
    checks.append(_scope_check(info, args.scope))
    failed = [
        "insufficient scope" if c.name == "scope" else c.detail
        for c in checks
        if c.ok is False and c.name in _REQUEST_STEPS
    ]
    valid = refusal is None and not failed
    reason = refusal.description if refusal is not None else failed[0] if failed else None
    if args.json:
        # json.dumps escapes every control and non-ASCII character (ensure_ascii).
        result = {"valid": valid, "reason": reason, "checks": [asdict(c) for c in checks]}
        out.write(json.dumps(result, indent=2) + "\n")
    else:
        _print(checks, valid, reason, out, Style(out, args.colour))
    return 0 if valid else 1


#: The steps of the request rather than the token: the proof, the binding, the view's scopes.
_REQUEST_STEPS = ("dpop proof", "binding", "scope")


def _with_proof(
    checks: list[Check], args: argparse.Namespace, token: str, info: TokenInfo | None
) -> list[Check]:
    """``checks`` as the DPoP scheme sees them: ``cnf`` is the binding the proof
    must match (no failure of its own), then the proof's checks and that match."""
    cnf = unverified_claims(token).get("cnf")
    line = Check("cnf", None, "none: not a bound token")
    if cnf is not None:
        line = Check("cnf", isinstance(cnf, Mapping), binding_detail(cnf))
    checks = [line if c.name == "cnf" else c for c in checks]
    if info is None:
        return [*checks, Check("dpop proof", None, "not checked: the token is refused")]
    bound = info.confirmation
    return checks + proof_checks(args.dpop_proof, token, bound, args.method, args.url, time.time())


def _not_a_jwt(out: TextIO, *, as_json: bool) -> int:
    reason = "not a JWT: only its issuer can check an opaque token (introspection)"
    result = {"valid": False, "reason": reason, "checks": []}
    out.write((json.dumps(result) if as_json else reason) + "\n")
    return 1


def _print(checks: list[Check], valid: bool, reason: str | None, out: TextIO, style: Style) -> None:
    first = True
    for check in checks:
        mark = "--" if check.ok is None else "ok" if check.ok else "NO"
        # The details quote the token (its alg, kid, claims): escaped.
        line = f"{mark:>2}  {check.name:<12} {printable(check.detail)}"
        if check.ok is False and first:
            line, first = style.bad(line + "   <- first failure"), False
        elif check.ok is None:
            line = style.dim(line)
        out.write(line + "\n")
    out.write(style.good("VALID\n") if valid else style.bad(f"INVALID: {printable(str(reason))}\n"))
