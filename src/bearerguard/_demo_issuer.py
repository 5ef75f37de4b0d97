"""The demo's built-in issuer: its key, its JWKS, and ``bearerguard mint``.

Only what minting needs, so that ``bearerguard mint`` works with the base
install (PyJWT and cryptography; no SQLAlchemy, no Flask). The example
resource server (``examples/demo.py``, ``make demo``) trusts this issuer.

The key (and the demo client's DPoP key, ``dpop-client.pem``, beside it)
lives in a directory only the current user can use
(``$XDG_RUNTIME_DIR/bearerguard-demo``, else ``bearerguard-demo-<uid>`` in the
temp dir, mode 0700), or at ``BEARERGUARD_DEMO_KEY``. A directory or key that
another user owns or can write is refused: whoever plants the key mints the
demo's admin tokens.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = [
    "AUDIENCE",
    "ISSUER",
    "KID",
    "client_key",
    "client_key_path",
    "client_proof",
    "demo_jwks",
    "demo_key",
    "mint",
    "mint_bound",
    "private_dir",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

ISSUER = "http://127.0.0.1:5000"
AUDIENCE = "bearerguard-demo"
KID = "demo-1"


def check_private(path: str, *, directory: bool, st: os.stat_result | None = None) -> None:
    """Refuse ``path`` unless it is this user's own and no one else can write it.

    A key file must not be readable by others either. Symbolic links are
    refused: one in a shared temp dir could point anywhere.
    """
    if not hasattr(os, "getuid"):  # Windows: the temp dir is the user's own
        return
    st = st or os.lstat(path)
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    others = 0o022 if directory else 0o077
    if not kind(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & others:
        raise PermissionError(
            f"refusing {path}: not a {'directory' if directory else 'file'} of this user's "
            f"that only they can {'write' if directory else 'read and write'} "
            f"(mode {stat.filemode(st.st_mode)}, uid {st.st_uid}); remove it, or set "
            "BEARERGUARD_DEMO_KEY / BEARERGUARD_DEMO_DB"
        )


def private_dir() -> str:
    """The demo's directory, made 0700 if need be: only this user can use it."""
    if not hasattr(os, "getuid"):
        return tempfile.gettempdir()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and os.path.isdir(runtime):
        path = os.path.join(runtime, "bearerguard-demo")
    else:
        path = os.path.join(tempfile.gettempdir(), f"bearerguard-demo-{os.getuid()}")
    with contextlib.suppress(FileExistsError):  # then it is checked like any other
        os.mkdir(path, 0o700)
    check_private(path, directory=True)
    return path


def _private_key(path: str, make: Callable[[], PrivateKey]) -> PrivateKey:
    """The key in ``path``, made by ``make`` first if there is none; refused
    unless a file of this user's that only they can read."""
    if not os.path.lexists(path):
        pem = make().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".")  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        try:
            os.link(tmp, path)  # atomic: of racing workers, exactly one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        check_private(path, directory=False, st=os.fstat(f.fileno()))
        loaded = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PermissionError(f"refusing {path}: not an RSA or EC private key")
    return loaded


def _issuer_key_path() -> str:
    return os.environ.get("BEARERGUARD_DEMO_KEY") or os.path.join(private_dir(), "demo-key.pem")


def demo_key() -> rsa.RSAPrivateKey:
    """The built-in issuer's key: made once per user, shared by every worker
    and by later ``bearerguard mint`` runs."""
    path = _issuer_key_path()
    key = _private_key(path, lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    if not isinstance(key, rsa.RSAPrivateKey):
        raise PermissionError(f"refusing {path}: not an RSA private key")
    return key


def client_key_path() -> str:
    """Where the demo client's DPoP key lives: beside the issuer's key."""
    return os.path.join(os.path.dirname(_issuer_key_path()) or ".", "dpop-client.pem")


def client_key() -> ec.EllipticCurvePrivateKey:
    """The demo client's DPoP key (P-256, ES256): what ``bearerguard dpop-proof
    --key`` signs the demo's proofs with; its tokens are bound to it."""
    path = client_key_path()
    key = _private_key(path, lambda: ec.generate_private_key(ec.SECP256R1()))
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PermissionError(f"refusing {path}: not an EC private key")
    return key


def demo_jwks() -> dict[str, Any]:
    """The built-in issuer's public keys as a JWKS."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(demo_key().public_key()))
    jwk.update(kid=KID, use="sig", alg="RS256")
    return {"keys": [jwk]}


def mint(
    scope: str = "profile email",
    expires_in: int = 600,
    subject: str = "alice",
    *,
    jkt: str | None = None,
) -> str:
    """A JWT access token (RFC 9068) from the built-in issuer, for local testing;
    bound to the DPoP key of thumbprint ``jkt`` if given (RFC 9449 §6.1)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "client_id": "demo-client",
        "scope": scope,
        "iat": now,
        "exp": now + expires_in,
        "jti": os.urandom(8).hex(),
    }
    if jkt is not None:
        claims["cnf"] = {"jkt": jkt}
    headers = {"kid": KID, "typ": "at+jwt"}
    return jwt.encode(claims, demo_key(), algorithm="RS256", headers=headers)


def mint_bound(expires_in: int = 3600) -> str:
    """A token of :func:`mint` bound to the demo client's key (``cnf.jkt``)."""
    from .cli.dpop import public_jwk
    from .core.dpop import thumbprint

    return mint(expires_in=expires_in, jkt=thumbprint(public_jwk(client_key(), "ES256")))


def client_proof(url: str, token: str, method: str = "GET") -> str:
    """What ``bearerguard dpop-proof --key <client key> --url url --token token`` prints."""
    from .cli.dpop import sign_proof

    return sign_proof(client_key(), "ES256", method, url, token=token)
