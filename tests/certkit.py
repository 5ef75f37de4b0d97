"""X.509 certificates minted at run time for the mTLS tests (RFC 8705):
a CA, a server certificate for 127.0.0.1, and client certificates.

Nothing is committed: keys live in memory, and :meth:`Issued.write` puts
them in a test's ``tmp_path`` when nginx or a TLS client needs files.
"""

from __future__ import annotations

import datetime
import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bearerguard.core.certificates import x5t_s256


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    #: The files' name in :meth:`write`.
    name: str

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def thumbprint(self) -> str:
        """``cnf["x5t#S256"]`` of a token bound to this certificate."""
        return x5t_s256(self.der)

    @property
    def nginx_escaped(self) -> str:
        """As nginx's ``$ssl_client_escaped_cert`` sends it: the PEM, URL-escaped."""
        return quote(self.pem, safe="")

    def files(self, directory: Path) -> tuple[Path, Path]:
        """``<name>.pem`` and ``<name>.key`` in ``directory``."""
        return directory / f"{self.name}.pem", directory / f"{self.name}.key"

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write :meth:`files`."""
        cert, key = self.files(directory)
        cert.write_text(self.pem)
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    name: str,
    common_name: str,
    issuer: Issued | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject if issuer is not None else _name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    signer = issuer.key if issuer is not None else key
    return Issued(builder.sign(signer, hashes.SHA256()), key, name)


@dataclass(frozen=True)
class PKI:
    ca: Issued
    server: Issued
    client_a: Issued
    client_b: Issued
    #: Self-signed, no CA's (RFC 8705 §2.2: self-signed certificate mutual TLS).
    self_signed: Issued


@functools.cache
def pki() -> PKI:
    """One CA and its certificates, minted once per test session."""
    ca = _issue("ca", "bearerguard test CA", None, ca=True)
    return PKI(
        ca=ca,
        server=_issue("server", "127.0.0.1", ca, server=True),
        client_a=_issue("a", "client A", ca),
        client_b=_issue("b", "client B", ca),
        self_signed=_issue("c", "client C", None),
    )
