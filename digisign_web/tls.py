"""The local TLS identity: a per-installation CA and a ``localhost`` leaf it signs.

Browsers need a certificate they trust for ``https://localhost:53952``. A separate CA (which the user
trusts once) plus a short-lived leaf follows the decision D2 of the SCS reference: Firefox refuses a CA
certificate used as the leaf, and browsers cap leaf validity at 398 days, so the leaf lives 397 days and
is renewed automatically 30 days before it expires. Keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

LEAF_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
SAN_NAMES = ("localhost",)
SAN_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _leaf_ok(cert_path: Path, ca: x509.Certificate) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, Exception):
        return False
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names = set(san.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return fresh and set(SAN_NAMES) <= names and set(SAN_IPS) <= ips


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Create (first start) or renew (near expiry) the local CA and localhost leaf under ``state_dir/tls``."""
    tls = Path(state_dir) / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(tls, 0o700)
    files = TlsFiles(tls / "ca.pem", tls / "localhost.pem", tls / "localhost.key")
    ca_key_path = tls / "ca.key"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    if files.ca_cert.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "digisign-web"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "digisign-web local CA")])
        ca_cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write(ca_key_path, _pem_key(ca_key), private=True)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        log.info("created the local TLS CA %s", files.ca_cert)
    if files.key.exists() and _leaf_ok(files.cert, ca_cert):
        return files
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in SAN_NAMES] + [x509.IPAddress(ipaddress.ip_address(i)) for i in SAN_IPS]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _pem_key(key), private=True)
    _write(files.cert, leaf.public_bytes(serialization.Encoding.PEM), private=False)
    log.info("issued the localhost TLS certificate %s (valid %d days)", files.cert, LEAF_DAYS)
    return files


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or newer, with the localhost leaf."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context
