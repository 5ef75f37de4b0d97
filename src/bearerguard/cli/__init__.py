"""The ``bearerguard`` command: inspect, verify and mint tokens; check metadata.

``inspect`` needs no key: it decodes and explains. ``verify`` runs the
validator's own steps and says which one failed. ``mint`` signs a token with
the demo issuer's key (the demo itself: ``make demo``). ``dpop-proof``
signs a DPoP proof for one request (``verify --dpop-proof`` checks one against
its token). ``metadata`` checks
a resource's RFC 9728 document as a client would. Exit codes: 0 fine,
1 token invalid, 2 usage or network error.

Each command is a module with a ``cmd_<name>(args, out) -> int``; :func:`main`
parses and dispatches, so tests call it in-process with their own ``out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from .dpop import cmd_dpop_proof
from .inspect import cmd_inspect
from .metadata import cmd_metadata
from .mint import cmd_mint, parse_duration
from .terminal import printable
from .verify import cmd_verify

__all__ = ["build_parser", "main", "printable"]


def _output_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_mutually_exclusive_group()
    group.add_argument("--colour", "--color", dest="colour", action="store_true", default=None)
    group.add_argument("--no-colour", "--no-color", dest="colour", action="store_false")
    options.add_argument("--json", action="store_true", help="machine-readable output")
    return options


def _add_verify(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    verify = sub.add_parser("verify", parents=[parent], help="validate a JWT, check by check")
    verify.add_argument("token", help="the token, or - to read it from stdin")
    verify.add_argument("--issuer", required=True)
    verify.add_argument("--audience", required=True)
    keys = verify.add_mutually_exclusive_group()
    keys.add_argument("--jwks-uri", help="fetch keys here (default: discover from the issuer)")
    keys.add_argument("--jwks", metavar="FILE", help="a JWKS JSON file")
    verify.add_argument("--scope", default="", help="scopes the token must carry, e.g. 'a b'")
    verify.add_argument("--leeway", type=int, default=60)
    verify.add_argument("--require-typ", action="store_true", help="require typ at+jwt")
    proof = verify.add_argument_group("DPoP (RFC 9449)")
    proof.add_argument("--dpop-proof", metavar="PROOF", help="check this proof against the token")
    proof.add_argument("--method", help="the request's method (default: the proof's htm)")
    proof.add_argument("--url", help="the request's URL (default: the proof's htu)")
    verify.set_defaults(run=cmd_verify)


def _add_dpop_proof(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proof = sub.add_parser("dpop-proof", help="sign a DPoP proof for one request (curl -H DPoP:)")
    proof.add_argument("--key", required=True, help="the client's private key: PEM or JWK file")
    proof.add_argument("--method", default="GET")
    proof.add_argument(
        "--url", required=True, help="the request's URL (query and fragment dropped)"
    )
    proof.add_argument("--token", help="the access token, for ath (- reads stdin)")
    proof.add_argument("--nonce", help="the server's DPoP-Nonce")
    proof.add_argument("--alg", help="default: ES256/384/512 by curve, RS256, EdDSA")
    proof.set_defaults(run=cmd_dpop_proof)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="bearerguard", description=__doc__.split("\n")[0])
    output = _output_options()
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser("inspect", parents=[output], help="decode and explain a token")
    inspect.add_argument("token", help="the token, or - to read it from stdin")
    inspect.set_defaults(run=cmd_inspect)

    _add_verify(sub, output)
    _add_dpop_proof(sub)

    metadata = sub.add_parser(
        "metadata", parents=[output], help="fetch and check a resource's RFC 9728 metadata"
    )
    metadata.add_argument("url", help="the protected resource's URL (its resource identifier)")
    metadata.set_defaults(run=cmd_metadata)

    mint = sub.add_parser("mint", help="mint a JWT from the demo issuer's key (local testing)")
    mint.add_argument("--scope", default="profile email")
    mint.add_argument("--expires", type=parse_duration, default=600, help="e.g. 10m (default)")
    mint.add_argument("--subject", default="alice")
    mint.set_defaults(run=cmd_mint)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run one command; return its exit code (argparse exits 2 on a usage error)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(args.run(args, out if out is not None else sys.stdout))
