"""The virtual card's test PKI: a root CA, a "citizen certificates" CA, and per-profile leaf keys.

Generated on first use and kept in a state directory, so that a restarted virtual card keeps its
identity (relying parties under test can pin the chain). Private keys are written 0600 in a 0700
directory; a lock file makes concurrent first starts (in-process card plus a vpcd card) safe.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Per profile: (authentication key spec, signature key spec, holder surname, given name, SATU).
_PEOPLE = {
    "fineid-v4": ("ec:secp384r1", "ec:secp384r1", "SPECIMEN-TESTINEN", "TIINA", "99901001P"),
    "fineid-v3": ("rsa:2048", "ec:secp256r1", "SPECIMEN-KOKEILU", "KALLE", "99901002R"),
}


@dataclass(frozen=True)
class LeafMaterial:
    key: PrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class CardIdentity:
    """Everything a virtual card needs that must survive restarts."""

    profile: str
    root: x509.Certificate
    ca: x509.Certificate
    auth: LeafMaterial
    sign: LeafMaterial
    serial: str

    @property
    def chain(self) -> list[x509.Certificate]:
        """Intermediate then root: what follows either leaf in a chain."""
        return [self.ca, self.root]


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _new_key(spec: str) -> PrivateKey:
    kind, param = spec.split(":")
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=int(param))
    curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(), "secp521r1": ec.SECP521R1()}
    return ec.generate_private_key(curve[param])


def _save_key(path: Path, key: PrivateKey) -> None:
    _write_private(
        path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def _name(*parts: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts])


def _key_usage(**flags: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _issue(
    subject: x509.Name,
    public_key: object,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    days: int,
    ca: bool,
    usage: x509.KeyUsage,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca and issuer != subject else None),
                       critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),  # type: ignore[arg-type]
                       critical=False)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer_key, hashes.SHA384() if isinstance(issuer_key, ec.EllipticCurvePrivateKey)
                        else hashes.SHA256())


def _ensure_cas(pki: Path) -> tuple[LeafMaterial, LeafMaterial]:
    paths = [pki / n for n in ("root.key", "root.pem", "ca.key", "ca.pem")]
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    if all(p.exists() for p in paths):
        root = LeafMaterial(_load_key(paths[0]), x509.load_pem_x509_certificate(paths[1].read_bytes()))
        ca = LeafMaterial(_load_key(paths[2]), x509.load_pem_x509_certificate(paths[3].read_bytes()))
        return root, ca
    org = (NameOID.ORGANIZATION_NAME, "digisign-web TEST")
    root_name = _name((NameOID.COUNTRY_NAME, "FI"), org,
                      (NameOID.COMMON_NAME, "digisign-web TEST Root CA - G1"))
    ca_name = _name((NameOID.COUNTRY_NAME, "FI"), org,
                    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Testivarmenteet"),
                    (NameOID.COMMON_NAME, "digisign-web TEST Citizen Certificates - G1"))
    root_key = _new_key("ec:secp384r1")
    ca_key = _new_key("ec:secp384r1")
    ca_usage = _key_usage(key_cert_sign=True, crl_sign=True)
    root_cert = _issue(root_name, root_key.public_key(), root_name, root_key, 7300, True, ca_usage)
    ca_cert = _issue(ca_name, ca_key.public_key(), root_name, root_key, 3650, True, ca_usage)
    for path, key, cert in ((paths[0], root_key, root_cert), (paths[2], ca_key, ca_cert)):
        _save_key(path, key)
        _write_public(path.with_suffix(".pem"), cert.public_bytes(serialization.Encoding.PEM))
    return LeafMaterial(root_key, root_cert), LeafMaterial(ca_key, ca_cert)


def _new_serial(profile: str) -> str:
    card_number = "".join(secrets.choice("0123456789") for _ in range(9))
    if profile == "fineid-v3":  # older generation: 20 decimal digits, card number at 10-18
        return "246" + "".join(secrets.choice("0123456789") for _ in range(7)) + card_number + "0"
    return "FI" + "".join(secrets.choice("0123456789") for _ in range(6)) + card_number


def load_or_create(state_dir: Path, profile: str) -> CardIdentity:
    """The identity of the virtual card ``profile`` kept under ``state_dir``; created on first use."""
    if profile not in _PEOPLE:
        raise ValueError(f"unknown virtual card profile {profile!r}; choose from {sorted(_PEOPLE)}")
    base = Path(state_dir) / "virtual-card"
    with _locked(base):
        root, ca = _ensure_cas(base / "pki")
        card_dir = base / profile
        card_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = {n: card_dir / n for n in ("auth.key", "auth.pem", "sign.key", "sign.pem", "card.json")}
        if all(p.exists() for p in files.values()):
            auth = LeafMaterial(_load_key(files["auth.key"]),
                                x509.load_pem_x509_certificate(files["auth.pem"].read_bytes()))
            sign = LeafMaterial(_load_key(files["sign.key"]),
                                x509.load_pem_x509_certificate(files["sign.pem"].read_bytes()))
            serial = json.loads(files["card.json"].read_text())["serial"]
            return CardIdentity(profile, root.cert, ca.cert, auth, sign, serial)

        auth_spec, sign_spec, surname, given, satu = _PEOPLE[profile]
        subject = _name(
            (NameOID.COUNTRY_NAME, "FI"),
            (NameOID.SURNAME, surname),
            (NameOID.GIVEN_NAME, given),
            (NameOID.SERIAL_NUMBER, satu),
            (NameOID.COMMON_NAME, f"{surname} {given} {satu}"),
        )
        auth_key = _new_key(auth_spec)
        if isinstance(auth_key, ec.EllipticCurvePrivateKey):
            auth_usage = _key_usage(digital_signature=True, key_agreement=True)
        else:
            auth_usage = _key_usage(digital_signature=True, key_encipherment=True, data_encipherment=True)
        auth_cert = _issue(subject, auth_key.public_key(), ca.cert.subject, ca.key, 1826, False,
                           auth_usage, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION])
        sign_key = _new_key(sign_spec)
        sign_cert = _issue(subject, sign_key.public_key(), ca.cert.subject, ca.key, 1826, False,
                           _key_usage(content_commitment=True))
        for stem, key, cert in (("auth", auth_key, auth_cert), ("sign", sign_key, sign_cert)):
            _save_key(files[f"{stem}.key"], key)
            _write_public(files[f"{stem}.pem"], cert.public_bytes(serialization.Encoding.PEM))
        serial = _new_serial(profile)
        _write_public(files["card.json"], json.dumps({"serial": serial}).encode())
        return CardIdentity(profile, root.cert, ca.cert, LeafMaterial(auth_key, auth_cert),
                            LeafMaterial(sign_key, sign_cert), serial)
