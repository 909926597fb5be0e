"""The virtual card's test PKI: a root CA, a "citizen certificates" CA, and per-profile leaf keys.

Generated on first use and kept in a state directory, so that a restarted virtual card keeps its
identity (relying parties under test can pin the chain). Private keys are written 0600 in a 0700
directory; a lock file makes concurrent first starts (in-process card plus a vpcd card) safe.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos, core, keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from card.apdu import encode_tlv
from card.certificate import CardCertificate
from card.crypto import key_algorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

# Per profile: authentication key spec, signature key specs (one per QES slot), holder, and organisation.
@dataclass(frozen=True)
class _Person:
    auth: str
    sign: tuple[str, ...]
    surname: str
    given: str
    satu: str
    organisation: str | None = None


_PEOPLE = {
    "fineid-v4": _Person("ec:secp384r1", ("ec:secp384r1",), "SPECIMEN-TESTINEN", "TIINA", "99901001P"),
    "fineid-v3": _Person("rsa:2048", ("ec:secp256r1",), "SPECIMEN-KOKEILU", "KALLE", "99901002R"),
    "fineid-v3.1": _Person("rsa:3072", ("rsa:3072",), "SPECIMEN-KOLMONEN", "KAISA", "99901003T"),
    "fineid-v3-dual": _Person("rsa:2048", ("rsa:2048", "ec:secp256r1"), "SPECIMEN-KAKSONEN", "KAAPO",
                              "99901004U"),
    "fineid-org": _Person("rsa:2048", ("rsa:2048",), "SPECIMEN-VIRKAMIES", "VILMA", "99901005V",
                          "digisign-web TEST Organisation Oy"),
}
PROFILES = tuple(_PEOPLE)
# Bumped when the certificates' encoding changes: stored keys are kept, certificates are issued again.
PKI_VERSION = 2
LEAF_DAYS = 1826  # the default leaf certificate: valid from yesterday for five years

# Test-oriented: lets a test give the virtual card an expired, expiring or not yet valid certificate (D52).
# ``sign=-1`` (the signature certificates expired a day ago), ``auth=10`` (expires in 10 days),
# ``sign=30:400`` (valid from 30 days ahead to 400 days ahead); several joined with commas. Also the
# ``--cert-days`` option of ``serve`` and ``virtual-card``.
CERT_DAYS_ENV = "DIGISIGN_WEB_VIRTUAL_CERT_DAYS"
CERT_ROLES = ("auth", "sign")


@dataclass(frozen=True)
class CertDays:
    """A leaf's validity period in days from the moment it is issued: [start, end]; start None = the default
    (yesterday, or five years before ``end`` when that is earlier, so an expired certificate looks used)."""

    end: float
    start: float | None = None

    def bounds(self, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        not_after = now + dt.timedelta(days=self.end)
        if self.start is not None:
            return now + dt.timedelta(days=self.start), not_after
        return min(now - dt.timedelta(days=1), not_after - dt.timedelta(days=LEAF_DAYS)), not_after

    def spec(self) -> str:
        return f"{self.end:g}" if self.start is None else f"{self.start:g}:{self.end:g}"


def parse_cert_days(text: str) -> dict[str, CertDays]:
    """``ROLE=DAYS[,ROLE=DAYS]`` (ROLE auth or sign; DAYS ``N`` or ``FROM:TO``, may be negative or
    fractional) -> the periods asked for; ValueError with the reason for anything else."""
    out: dict[str, CertDays] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, days = part.partition("=")
        role = role.strip().lower()
        if not sep or role not in CERT_ROLES:
            raise ValueError(f"{part!r}: expected ROLE=DAYS with ROLE one of {', '.join(CERT_ROLES)}")
        try:
            first, colon, second = days.partition(":")
            period = CertDays(float(second), float(first)) if colon else CertDays(float(first))
        except ValueError:
            raise ValueError(f"{part!r}: DAYS is a number of days (e.g. -1, 10, 30:400)") from None
        if period.start is not None and period.start > period.end:
            raise ValueError(f"{part!r}: the period starts after it ends")
        if not all(abs(v) <= 36500 for v in (period.end, period.start or 0.0)):
            raise ValueError(f"{part!r}: at most 36500 days either way")
        out[role] = period
    return out


@dataclass(frozen=True)
class LeafMaterial:
    key: PrivateKey
    cert: CardCertificate


@dataclass(frozen=True)
class CardIdentity:
    """Everything a virtual card needs that must survive restarts."""

    profile: str
    root: CardCertificate
    ca: CardCertificate
    auth: LeafMaterial
    signs: tuple[LeafMaterial, ...]
    serial: str

    @property
    def sign(self) -> LeafMaterial:
        """The first (on dual-algorithm cards, the RSA) signature key."""
        return self.signs[0]

    @property
    def chain(self) -> list[CardCertificate]:
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


def _key_matches(key: PrivateKey, spec: str) -> bool:
    kind, param = spec.split(":")
    if kind == "rsa":
        return isinstance(key, rsa.RSAPrivateKey) and key.key_size == int(param)
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == param


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


def _key_for(path: Path, spec: str) -> PrivateKey:
    """The key stored at ``path`` if it fits ``spec``, else a new one (stored 0600)."""
    if path.exists():
        key = _load_key(path)
        if _key_matches(key, spec):
            return key
    key = _new_key(spec)
    _save_key(path, key)
    return key


# --- certificates encoded as real FINEID cards encode them -----------------------------------
# Real cards carry ecdsa-with-SHA384 with explicit NULL parameters and BasicConstraints with an explicit
# cA FALSE (F1). cryptography can neither write nor read these, so the
# certificates are assembled with asn1crypto and only the signature is made with cryptography.

# Extension{basicConstraints, critical, BasicConstraints{cA FALSE}}, with the DEFAULT written out.
_EXPLICIT_CA_FALSE = bytes.fromhex("300f0603551d130101ff0405") + bytes.fromhex("3003010100")


def _name(*parts: tuple[str, str]) -> asn1_x509.Name:
    """An X.500 name from (asn1crypto attribute name, value) pairs, in encoding order."""
    rdns = []
    for kind, value in parts:
        string_type = "printable_string" if kind in ("country_name", "serial_number") else "utf8_string"
        atv_value = asn1_x509.DirectoryString(name=string_type, value=value) \
            if kind not in ("country_name", "serial_number") else core.PrintableString(value)
        rdns.append(asn1_x509.RelativeDistinguishedName([
            asn1_x509.NameTypeAndValue({"type": kind, "value": atv_value})]))
    return asn1_x509.Name(name="", value=asn1_x509.RDNSequence(rdns))


def _spki(public_key: object) -> keys.PublicKeyInfo:
    der = public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return keys.PublicKeyInfo.load(der)


def _signature_algorithm(issuer_key: PrivateKey) -> algos.SignedDigestAlgorithm:
    if key_algorithm(issuer_key) == "EC":
        return algos.SignedDigestAlgorithm({"algorithm": "sha384_ecdsa", "parameters": core.Null()})
    return algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa", "parameters": core.Null()})


def _extension(oid: str, value: object, critical: bool = False) -> asn1_x509.Extension:
    return asn1_x509.Extension({"extn_id": oid, "critical": critical, "extn_value": value})


def _issue(
    subject: asn1_x509.Name,
    public_key: object,
    issuer: asn1_x509.Name,
    issuer_key: PrivateKey,
    days: int,
    ca: bool,
    usage: set[str],
    eku: list[str] | None = None,
    period: CertDays | None = None,
) -> CardCertificate:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=days)
    if period is not None:
        not_before, not_after = period.bounds(now)
    spki = _spki(public_key)
    own_id = hashlib.sha1(spki["public_key"].contents[1:]).digest()
    issuer_spki = _spki(issuer_key.public_key())
    issuer_id = hashlib.sha1(issuer_spki["public_key"].contents[1:]).digest()
    if ca:
        constraints = asn1_x509.BasicConstraints(
            {"ca": True, "path_len_constraint": 0 if issuer != subject else None})
    else:
        constraints = None
    extensions = [
        _extension("authority_key_identifier", asn1_x509.AuthorityKeyIdentifier({"key_identifier": issuer_id})),
        _extension("key_identifier", core.OctetString(own_id)),
        _extension("key_usage", asn1_x509.KeyUsage(usage), critical=True),
    ]
    extension_der = b"".join(e.dump() for e in extensions)
    if constraints is not None:
        extension_der += _extension("basic_constraints", constraints, critical=True).dump()
    else:
        extension_der += _EXPLICIT_CA_FALSE
    if eku:
        extension_der += _extension("extended_key_usage", asn1_x509.ExtKeyUsageSyntax(eku)).dump()
    signature_algorithm = _signature_algorithm(issuer_key)
    tbs = asn1_x509.TbsCertificate({
        "version": "v3",
        "serial_number": int.from_bytes(secrets.token_bytes(16), "big") >> 1,
        "signature": signature_algorithm,
        "issuer": issuer,
        "validity": {"not_before": asn1_x509.Time(name="utc_time", value=not_before),
                     "not_after": asn1_x509.Time(name="utc_time", value=not_after)},
        "subject": subject,
        "subject_public_key_info": spki,
    })
    # asn1crypto re-encodes a DEFAULT it is given, so the extensions are appended as bytes: [3] { SEQ }.
    data = encode_tlv(0x30, tbs.contents + encode_tlv(0xA3, encode_tlv(0x30, extension_der)))
    if isinstance(issuer_key, ec.EllipticCurvePrivateKey):
        signature = issuer_key.sign(data, ec.ECDSA(hashes.SHA384()))
    else:
        signature = issuer_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    # Assembled by hand so that the signed TBS bytes are the ones in the certificate, as encoded.
    body = data + signature_algorithm.dump() + core.OctetBitString(signature).dump()
    return CardCertificate.load(encode_tlv(0x30, body), "test certificate")



def _load_cert(path: Path) -> CardCertificate:
    return CardCertificate.from_pem(path.read_text(), str(path))


def _ensure_cas(pki: Path) -> tuple[LeafMaterial, LeafMaterial]:
    pki.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths = {n: pki / n for n in ("root.key", "root.pem", "ca.key", "ca.pem", "version")}
    current = paths["version"].exists() and paths["version"].read_text().strip() == str(PKI_VERSION)
    if current and all(p.exists() for p in paths.values()):
        return (LeafMaterial(_load_key(paths["root.key"]), _load_cert(paths["root.pem"])),
                LeafMaterial(_load_key(paths["ca.key"]), _load_cert(paths["ca.pem"])))
    org = ("organization_name", "digisign-web TEST")
    root_name = _name(("country_name", "FI"), org, ("common_name", "digisign-web TEST Root CA - G1"))
    ca_name = _name(("country_name", "FI"), org, ("organizational_unit_name", "Testivarmenteet"),
                    ("common_name", "digisign-web TEST Citizen Certificates - G1"))
    root_key = _key_for(paths["root.key"], "ec:secp384r1")
    ca_key = _key_for(paths["ca.key"], "ec:secp384r1")
    ca_usage = {"key_cert_sign", "crl_sign"}
    root_cert = _issue(root_name, root_key.public_key(), root_name, root_key, 7300, True, ca_usage)
    ca_cert = _issue(ca_name, ca_key.public_key(), root_name, root_key, 3650, True, ca_usage)
    _write_public(paths["root.pem"], root_cert.pem.encode())
    _write_public(paths["ca.pem"], ca_cert.pem.encode())
    _write_public(paths["version"], f"{PKI_VERSION}\n".encode())
    return LeafMaterial(root_key, root_cert), LeafMaterial(ca_key, ca_cert)


def _new_serial(profile: str) -> str:
    card_number = "".join(secrets.choice("0123456789") for _ in range(9))
    if profile.startswith("fineid-v3"):  # older generation: 20 decimal digits, card number at 10-18
        return "246" + "".join(secrets.choice("0123456789") for _ in range(7)) + card_number + "0"
    return "FI" + "".join(secrets.choice("0123456789") for _ in range(6)) + card_number


def load_or_create(state_dir: Path, profile: str, cert_days: dict[str, CertDays] | None = None) -> CardIdentity:
    """The identity of the virtual card ``profile`` kept under ``state_dir``; created on first use.

    Keys are kept across upgrades; certificates of an older :data:`PKI_VERSION` are issued again, and so
    are the leaves when the validity asked for (``cert_days``, default: :data:`CERT_DAYS_ENV`, else five
    years) differs from the stored one's, so a test's expired certificate never outlives the test's setting.
    """
    if profile not in _PEOPLE:
        raise ValueError(f"unknown virtual card profile {profile!r}; choose from {', '.join(_PEOPLE)}")
    if cert_days is None:
        cert_days = parse_cert_days(os.environ.get(CERT_DAYS_ENV, ""))
    periods = {role: cert_days[role].spec() for role in CERT_ROLES if role in cert_days}
    person = _PEOPLE[profile]
    base = Path(state_dir) / "virtual-card"
    with _locked(base):
        root, ca = _ensure_cas(base / "pki")
        card_dir = base / profile
        card_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        stems = ["auth"] + [f"sign{i if i else ''}" for i in range(len(person.sign))]
        files = {f"{s}.{e}": card_dir / f"{s}.{e}" for s in stems for e in ("key", "pem")}
        meta_path = card_dir / "card.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        if (meta.get("pki_version") == PKI_VERSION and meta.get("ca") == ca.cert.sha256_fingerprint
                and meta.get("cert_days", {}) == periods and all(p.exists() for p in files.values())):
            leaves = [LeafMaterial(_load_key(files[f"{s}.key"]), _load_cert(files[f"{s}.pem"])) for s in stems]
            return CardIdentity(profile, root.cert, ca.cert, leaves[0], tuple(leaves[1:]), meta["serial"])

        parts: list[tuple[str, str]] = [("country_name", "FI")]
        if person.organisation:
            parts.append(("organization_name", person.organisation))
        subject = _name(*parts, ("surname", person.surname), ("given_name", person.given),
                        ("serial_number", person.satu),
                        ("common_name", f"{person.surname} {person.given} {person.satu}"))
        leaves = []
        for stem, spec in zip(stems, (person.auth, *person.sign), strict=True):
            key = _key_for(files[f"{stem}.key"], spec)
            if stem == "auth":
                usage = {"digital_signature", "key_agreement"} if spec.startswith("ec:") else \
                    {"digital_signature", "key_encipherment", "data_encipherment"}
                cert = _issue(subject, key.public_key(), ca.cert.asn1.subject, ca.key, LEAF_DAYS, False, usage,
                              ["client_auth", "email_protection"], cert_days.get("auth"))
            else:
                cert = _issue(subject, key.public_key(), ca.cert.asn1.subject, ca.key, LEAF_DAYS, False,
                              {"non_repudiation"}, period=cert_days.get("sign"))
            _write_public(files[f"{stem}.pem"], cert.pem.encode())
            leaves.append(LeafMaterial(key, cert))
        serial = meta.get("serial") or _new_serial(profile)
        record = {"serial": serial, "pki_version": PKI_VERSION, "ca": ca.cert.sha256_fingerprint}
        if periods:  # the default card's record stays as it always was
            record["cert_days"] = periods
        _write_public(meta_path, json.dumps(record).encode())
        return CardIdentity(profile, root.cert, ca.cert, leaves[0], tuple(leaves[1:]), serial)
