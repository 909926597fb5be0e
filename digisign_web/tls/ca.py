"""The local TLS identity: a per-installation, name-constrained CA and a ``localhost`` leaf it signs.

Browsers need a certificate they trust for ``https://localhost:53952``. A separate CA (which the user
trusts once) plus a short-lived leaf follows decision D2 (docs/decisions.md): Firefox refuses a CA
certificate used as the leaf, and browsers cap leaf validity at 398 days, so the leaf lives 397 days and
is renewed automatically 30 days before it expires.

A trusted CA is a key to every site the browser visits, unless it is constrained. This CA carries a
critical nameConstraints extension permitting only ``DNS:localhost``, ``IP:127.0.0.1/32`` and ``IP:::1/128``,
so a certificate its key signs for any other name (``bank.example``, ``127.0.0.2``) is refused by Chromium,
Firefox (NSS) and OpenSSL even where the CA is trusted. It lives ``CA_DAYS`` (825 days, the longest leaf life
browsers once allowed) instead of ten years, and it is replaced ``CA_RENEW_BEFORE`` (90 days) before it
expires, together with the leaf, which then needs ``digisign-web trust install`` again. A CA made by an
earlier version (no or other name constraints, a longer life) is replaced the same way: new key, new
certificate, the old key deleted. Keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from digisign_web.tls.files import TlsFiles, tls_files, write_stamp

log = logging.getLogger(__name__)

CA_DAYS = 825
CA_RENEW_BEFORE = dt.timedelta(days=90)
LEAF_DAYS = 397
RENEW_BEFORE = dt.timedelta(days=30)
SAN_NAMES = ("localhost",)
SAN_IPS = ("127.0.0.1", "::1")
PERMITTED_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
                   x509.IPAddress(ipaddress.ip_network("::1/128")))


def _write(path: Path, data: bytes, private: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    try:
        os.fchmod(fd, 0o600 if private else 0o644)  # a stale .tmp keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _same_key(key: object, cert: x509.Certificate) -> bool:
    public = getattr(key, "public_key", None)
    return public is not None and public().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def name_constraints(cert: x509.Certificate) -> tuple[bool, list[str]] | None:
    """(critical, permitted subtrees as ``DNS:…``/``IP:…`` strings) of a CA, None when it has none.

    Excluded subtrees are listed with an ``excluded `` prefix: this CA never has any.
    """
    try:
        ext = cert.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return None
    names = []
    for label, subtrees in (("", ext.value.permitted_subtrees), ("excluded ", ext.value.excluded_subtrees)):
        for general in subtrees or ():
            kind = {x509.DNSName: "DNS", x509.IPAddress: "IP"}.get(type(general), type(general).__name__)
            names.append(f"{label}{kind}:{general.value}")
    return ext.critical, names


def ca_problems(cert: x509.Certificate, now: dt.datetime | None = None) -> list[str]:
    """Why this local CA must be replaced; empty when it is what ``ensure_tls`` makes and not due for renewal.

    A CA of an earlier digisign-web has no name constraints and a ten-year life: its key can make a
    certificate for any site that the browsers trusting it accept.
    """
    now = now or dt.datetime.now(dt.UTC)
    problems = []
    constraints = name_constraints(cert)
    wanted = [f"{'DNS' if isinstance(n, x509.DNSName) else 'IP'}:{n.value}" for n in PERMITTED_NAMES]
    if constraints is None:
        problems.append("no name constraints (an earlier version's CA: its key can sign for any site)")
    elif not constraints[0] or sorted(constraints[1]) != sorted(wanted):
        problems.append(f"name constraints other than {', '.join(wanted)} (critical)")
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    if life > dt.timedelta(days=CA_DAYS + 1):
        problems.append(f"valid for {life.days} days, longer than {CA_DAYS}")
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(0):
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    elif left < CA_RENEW_BEFORE:
        problems.append(f"expires on {cert.not_valid_after_utc:%Y-%m-%d}, within the {CA_RENEW_BEFORE.days} days "
                        "before expiry when it is renewed")
    return problems


def _new_ca(now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_id = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    # A subject of its own (serialNumber = the key id): NSS files certificates by subject, so a CA that shared
    # its name with the one it replaces could not be told apart from it (or removed alone) in a browser store.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "digisign-web"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "digisign-web local CA"),
                      x509.NameAttribute(NameOID.SERIAL_NUMBER, key_id.digest.hex()[:16])])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.NameConstraints(permitted_subtrees=list(PERMITTED_NAMES), excluded_subtrees=None),
                       critical=True)
        .add_extension(key_id, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _load_ca(cert_path: Path, key_path: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | str:
    """The CA in the state directory, or why a new one is needed ("missing" on first start)."""
    if not cert_path.exists() and not key_path.exists():
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except (OSError, ValueError, TypeError) as exc:
        return f"unreadable ({exc})"
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not _same_key(key, cert):
        return "its key does not match the certificate"
    problems = ca_problems(cert)
    return "; ".join(problems) if problems else (key, cert)


def _leaf_ok(cert_path: Path, key_path: Path, ca: x509.Certificate) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:  # any unreadable, foreign or broken leaf is simply issued again
        return False
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    names = set(san.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > RENEW_BEFORE
    return fresh and _same_key(key, cert) and names == set(SAN_NAMES) and ips == set(SAN_IPS)


def _issue_leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    san = [x509.DNSName(n) for n in SAN_NAMES] + [x509.IPAddress(ipaddress.ip_address(i)) for i in SAN_IPS]
    not_after = min(now + dt.timedelta(days=LEAF_DAYS), ca_cert.not_valid_after_utc)  # never outlives the CA
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, leaf


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Create (first start), renew (near expiry) or replace (an earlier version's unconstrained CA) the local
    CA, and the localhost leaf with it, under ``state_dir/tls``.

    Raises OSError when the directory cannot be written.
    """
    tls = Path(state_dir) / "tls"
    tls.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(tls, 0o700)
    files = tls_files(state_dir)
    ca_key_path = tls / "ca.key"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    loaded = _load_ca(files.ca_cert, ca_key_path)
    if isinstance(loaded, str):
        problem = loaded
        ca_key, ca_cert = _new_ca(now)
        # The new key replaces the old file: the old key is gone, so nothing it signed can be renewed.
        _write(ca_key_path, _pem_key(ca_key), private=True)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), private=False)
        if problem == "missing":
            log.info("created the local TLS CA %s (valid %d days)", files.ca_cert, CA_DAYS)
        else:
            files = TlsFiles(files.ca_cert, files.cert, files.key, ca_replaced=problem)
            log.warning("replaced the local TLS CA %s with a new, name-constrained one (the old CA: %s); "
                        "browsers trust the new one after `digisign-web trust install`", files.ca_cert, problem)
    else:
        ca_key, ca_cert = loaded
        os.chmod(ca_key_path, 0o600)
    if _leaf_ok(files.cert, files.key, ca_cert):
        os.chmod(files.key, 0o600)
        leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
    else:
        key, leaf = _issue_leaf(ca_key, ca_cert, now)
        _write(files.key, _pem_key(key), private=True)
        _write(files.cert, leaf.public_bytes(serialization.Encoding.PEM), private=False)
        log.info("issued the localhost TLS certificate %s (valid until %s)", files.cert,
                 leaf.not_valid_after_utc.date())
    # Until then, the next start may skip this check if the files are unchanged (tls/files.py, D69).
    write_stamp(tls, min(leaf.not_valid_after_utc - RENEW_BEFORE, ca_cert.not_valid_after_utc - CA_RENEW_BEFORE))
    return files
