"""``bearerguard metadata URL``: a protected resource's RFC 9728 document,
found and checked the way a client must before trusting it.

The steps (RFC 9728 §3 and §5): request ``URL`` without a token and read
``resource_metadata`` from the 401 challenge (else use the well-known URL,
§3.1); fetch the document; check it (§3.2, §3.3: ``resource`` identical to
``URL``, https); fetch each authorization server's RFC 8414 metadata, whose
``issuer`` must be that server. One line per check; exit 0 when all pass, 1
when one fails, 2 when the resource or its document cannot be fetched.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from typing import Any, TextIO
from urllib.parse import urlsplit

from ..core.metadata import is_loopback, metadata_url
from ..transport import FetchError, HTTPClient, HTTPResponse
from .terminal import Style, printable
from .verify import Check

__all__ = ["as_metadata_url", "check_document", "cmd_metadata", "discover"]

_RESOURCE_METADATA = re.compile(r'resource_metadata="((?:[^"\\]|\\.)*)"')
_METHODS = frozenset({"header", "body", "query"})


def _header(response: HTTPResponse, name: str) -> str:
    wanted = name.lower()
    return next((v for k, v in response.headers.items() if k.lower() == wanted), "")


def discover(url: str, http: HTTPClient) -> tuple[str, str]:
    """``(document URL, how it was found)``: the 401 challenge's
    ``resource_metadata``, else the well-known URL for ``url`` (§3.1)."""
    answer = http.request("GET", url)
    if answer.status == 401:
        found = _RESOURCE_METADATA.search(_header(answer, "WWW-Authenticate"))
        if found is not None:
            return re.sub(r"\\(.)", r"\1", found.group(1)), "from the 401 challenge"
    return metadata_url(url), f"well-known URL (the resource answered {answer.status})"


def as_metadata_url(issuer: str) -> str:
    """RFC 8414 §3.1: ``/.well-known/oauth-authorization-server`` inserted before the path."""
    parts = urlsplit(issuer)
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server" + (
        parts.path.rstrip("/")
    )


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))


def check_document(doc: Any, resource: str) -> list[Check]:
    """The checks a client makes of a document fetched for ``resource`` (§2, §3.2, §3.3)."""
    if not isinstance(doc, dict):
        return [Check("json object", False, "the document is not a JSON object (§3.2)")]
    checks = [Check("json object", True, "")]
    got = doc.get("resource")
    same = isinstance(got, str) and got == resource
    checks.append(
        Check("resource", same, f"{got!r}" if same else f"{got!r} is not {resource!r} (§3.3)")
    )
    checks.append(Check("https", _secure(resource), resource))
    for name in ("authorization_servers", "scopes_supported", "bearer_methods_supported"):
        value = doc.get(name)
        if value is None:
            checks.append(Check(name, None, "absent"))
            continue
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        if ok and name == "bearer_methods_supported":
            ok = set(value) <= _METHODS
        if ok and name == "authorization_servers":
            ok = all(_secure(v) for v in value)
        checks.append(Check(name, ok, ", ".join(map(str, value)) if ok else f"invalid: {value!r}"))
    if "signed_metadata" in doc:
        checks.append(Check("signed_metadata", None, "present (its key is out of band: unchecked)"))
    return checks


def _issuer_check(issuer: str, http: HTTPClient) -> Check:
    """An authorization server's RFC 8414 metadata: reachable, JSON, its own ``issuer``."""
    name = f"AS {issuer}"
    try:
        answer = http.request("GET", as_metadata_url(issuer))
        doc = json.loads(answer.body) if answer.status == 200 else None
    except (FetchError, ValueError) as error:
        return Check(name, False, f"metadata unreachable: {error}")
    if not isinstance(doc, dict):
        return Check(name, False, f"no RFC 8414 metadata (HTTP {answer.status})")
    if doc.get("issuer") != issuer:
        named = doc.get("issuer")
        return Check(name, False, f"its metadata names issuer {named!r} (RFC 8414 §3.3)")
    return Check(name, True, f"token_endpoint {doc.get('token_endpoint')!r}")


def cmd_metadata(args: argparse.Namespace, out: TextIO) -> int:
    """Find, fetch and check ``args.url``'s metadata; 0 fine, 1 problems, 2 unreachable."""
    http = HTTPClient()
    try:
        return _check(args, http, out)
    finally:
        http.close()


def _check(args: argparse.Namespace, http: HTTPClient, out: TextIO) -> int:
    try:
        doc_url, how = discover(args.url, http)
        answer = http.request("GET", doc_url)
        if answer.status != 200:
            raise FetchError(f"{doc_url} answered HTTP {answer.status}")
        try:
            doc: Any = json.loads(answer.body)
        except ValueError:
            doc = None
    except (FetchError, ValueError) as error:
        out.write(f"error: {printable(str(error))}\n")
        return 2
    checks = [Check("document", True, f"{doc_url} ({how})"), *check_document(doc, args.url)]
    servers = doc.get("authorization_servers") if isinstance(doc, dict) else None
    if isinstance(servers, list):
        checks.extend(_issuer_check(s, http) for s in servers if isinstance(s, str))
    valid = all(check.ok is not False for check in checks)
    if args.json:
        out.write(json.dumps({"valid": valid, "checks": [asdict(c) for c in checks]}, indent=2))
        out.write("\n")
        return 0 if valid else 1
    style = Style(out, args.colour)
    for check in checks:
        mark = "--" if check.ok is None else "ok" if check.ok else "NO"
        line = f"{mark:>2}  {check.name:<24} {printable(check.detail)}"
        out.write((style.bad(line) if check.ok is False else line) + "\n")
    out.write(style.good("VALID\n") if valid else style.bad("INVALID\n"))
    return 0 if valid else 1
