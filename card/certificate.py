"""Card certificates as the card stores them.

Real FINEID cards carry certificates that are not strict DER (F1):
``ecdsa-with-SHA384`` with explicit NULL parameters, and BasicConstraints with an explicit ``cA FALSE``.
``cryptography`` refuses both, so a card layer built on it cannot read a real card at all. Here the
certificate is parsed with asn1crypto, which reads BER-ish DER, its exact bytes are kept (every answer
carries them unchanged), and cryptography is used only where it is strict about the right things: the
public key (loaded from the SubjectPublicKeyInfo bytes) and signature verification.

:meth:`CardCertificate.load` parses everything up front, so a broken certificate gives one typed error
at read time rather than a ``ValueError`` later, deep inside a property.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cached_property

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from card.crypto import hash_by_lower_name, key_algorithm
from card.errors import MalformedResponseError

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# RFC 4514 short names, plus the ones FINEID names use that RFC 4514 lacks (the names OpenSSL and
# cryptography print for them, so dialogs, logs and selectors read the same everywhere).
_SHORT_NAMES = {
    "2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
    "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID",
    "2.5.4.5": "serialNumber", "2.5.4.4": "SN", "2.5.4.42": "GN",
}
# KeyUsage bit names, with contentCommitment spelled non_repudiation as FINEID users know it.
_KEY_USAGE_NAMES = {
    "digital_signature": "digital_signature", "non_repudiation": "non_repudiation",
    "key_encipherment": "key_encipherment", "data_encipherment": "data_encipherment",
    "key_agreement": "key_agreement", "key_cert_sign": "key_cert_sign", "crl_sign": "crl_sign",
}
_KEY_USAGE_ORDER = tuple(_KEY_USAGE_NAMES)


def _escape(value: str) -> str:
    """RFC 4514 §2.4 escaping of an attribute value."""
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


@dataclass(frozen=True)
class Name:
    """A distinguished name: RDNs in encoding order (country first in DVV names), each a tuple of
    ``(dotted OID, value)``. Values are text, or raw bytes for attributes that are not strings."""

    rdns: tuple[tuple[tuple[str, str | bytes], ...], ...]
    der: bytes

    @classmethod
    def from_asn1(cls, name: asn1_x509.Name) -> Name:
        rdns = []
        for rdn in name.chosen:
            pairs: list[tuple[str, str | bytes]] = []
            for atv in rdn:
                value = atv["value"]
                native = value.native if not isinstance(value, core.Any) else None
                if isinstance(native, str):
                    pairs.append((atv["type"].dotted, native))
                else:
                    pairs.append((atv["type"].dotted, value.dump()))
            rdns.append(tuple(pairs))
        return cls(tuple(rdns), name.dump())

    def rfc4514(self) -> str:
        """Most specific RDN first, as RFC 4514 writes it (``CN=…,serialNumber=…,C=FI``)."""
        return self._rfc4514

    @cached_property
    def _rfc4514(self) -> str:  # every dialog, selector and answer shows names: made once per name
        parts = []
        for rdn in reversed(self.rdns):
            items = []
            for oid, value in rdn:
                key = _SHORT_NAMES.get(oid, oid)
                items.append(f"{key}=#{value.hex()}" if isinstance(value, bytes) else f"{key}={_escape(value)}")
            parts.append("+".join(items))
        return ",".join(parts)

    def get(self, oid: str) -> str | None:
        """The first text value of attribute ``oid`` (e.g. ``2.5.4.3`` for the common name)."""
        for rdn in self.rdns:
            for key, value in rdn:
                if key == oid and isinstance(value, str):
                    return value
        return None

    def __str__(self) -> str:
        return self.rfc4514()


class CardCertificate:
    """One X.509 certificate, read leniently and kept byte for byte.

    Equality and hashing go by the exact bytes: two encodings of "the same" certificate are different
    certificates to a relying party that hashes them (signing-certificate-v2, pinning).
    """

    def __init__(self, der: bytes, parsed: asn1_x509.Certificate):
        self.der = der
        self._asn1 = parsed

    @classmethod
    def load(cls, der: bytes, label: str = "certificate") -> CardCertificate:
        """Parse ``der`` completely; :class:`MalformedResponseError` names ``label`` if it does not parse.

        Trailing bytes after the certificate (a file larger than what it holds) are not part of it.
        """
        der = bytes(der)
        try:
            parsed = asn1_x509.Certificate.load(der, strict=False)
            der = der[:len(parsed.dump())] if parsed.contents is not None else der
            cert = cls(der, parsed)
            # Touch everything a caller may read, so that errors surface here, typed.
            cert.subject, cert.issuer, cert.serial_number, cert.not_before, cert.not_after  # noqa: B018
            cert.key_usage, cert.is_ca, cert.authority_key_id, cert.subject_key_id  # noqa: B018
            cert.public_key  # noqa: B018
        except MalformedResponseError:
            raise
        except (ValueError, TypeError, KeyError, UnsupportedAlgorithm) as exc:
            raise MalformedResponseError(f"{label} does not parse: {exc}") from exc
        return cert

    @classmethod
    def from_pem(cls, pem: str | bytes, label: str = "certificate") -> CardCertificate:
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        body = "".join(line for line in text.strip().splitlines() if not line.startswith("-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise MalformedResponseError(f"{label} is not PEM: {exc}") from exc
        return cls.load(der, label)

    # -- identity -------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, CardCertificate) and other.der == self.der

    def __hash__(self) -> int:
        return hash(self.der)

    def __repr__(self) -> str:
        return f"<CardCertificate {self.subject.rfc4514()!r}>"

    @property
    def asn1(self) -> asn1_x509.Certificate:
        """The asn1crypto object (pyHanko and pyhanko-certvalidator take these); it dumps the same bytes."""
        return self._asn1

    @property
    def pem(self) -> str:
        body = base64.encodebytes(self.der).decode("ascii").replace("\n", "")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"

    @cached_property
    def sha256_fingerprint(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    # -- fields ---------------------------------------------------------------------------------
    @cached_property
    def subject(self) -> Name:
        return Name.from_asn1(self._asn1.subject)

    @cached_property
    def issuer(self) -> Name:
        return Name.from_asn1(self._asn1.issuer)

    @cached_property
    def serial_number(self) -> int:
        return int(self._asn1.serial_number)

    @cached_property
    def not_before(self) -> dt.datetime:
        return self._asn1["tbs_certificate"]["validity"]["not_before"].native.astimezone(dt.UTC)

    @cached_property
    def not_after(self) -> dt.datetime:
        return self._asn1["tbs_certificate"]["validity"]["not_after"].native.astimezone(dt.UTC)

    @cached_property
    def key_usage(self) -> list[str]:
        """KeyUsage bits by name (``digital_signature``, ``non_repudiation``, …); [] without the extension."""
        value = self._asn1.key_usage_value
        if value is None:
            return []
        bits = set(value.native)
        return [_KEY_USAGE_NAMES[n] for n in _KEY_USAGE_ORDER if n in bits]

    @cached_property
    def is_ca(self) -> bool:
        value = self._asn1.basic_constraints_value
        return bool(value is not None and value["ca"].native)

    @cached_property
    def authority_key_id(self) -> bytes | None:
        value = self._asn1.authority_key_identifier
        return bytes(value) if value is not None else None

    @cached_property
    def subject_key_id(self) -> bytes | None:
        value = self._asn1.key_identifier
        return bytes(value) if value is not None else None

    @property
    def self_issued(self) -> bool:
        return self._asn1.self_issued

    # -- the key --------------------------------------------------------------------------------
    @cached_property
    def public_key(self) -> PublicKey:
        """The subject's public key, loaded by cryptography from the SubjectPublicKeyInfo bytes."""
        key = load_der_public_key(self._asn1.public_key.dump())
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise MalformedResponseError(f"unsupported key type {type(key).__name__} in {self.subject}")
        return key

    # Cached like the names: every request's selector, dialog choices and answer ask again, and the ABC
    # isinstance checks behind them cost more than the rest of the lookup.
    @cached_property
    def key_algorithm(self) -> str:
        """``RSA`` or ``EC``."""
        return key_algorithm(self.public_key)

    @cached_property
    def key_size(self) -> int:
        return self.public_key.key_size

    @cached_property
    def curve(self) -> str | None:
        key = self.public_key
        return key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else None

    @cached_property
    def key_description(self) -> str:
        """``EC secp384r1`` or ``RSA 2048``: the key as dialogs and status pages show it."""
        return f"EC {self.curve}" if self.curve else f"RSA {self.key_size}"

    # -- verification ---------------------------------------------------------------------------
    def signed_by(self, issuer: CardCertificate) -> bool:
        """Whether ``issuer``'s key made this certificate's signature (over the TBS bytes as encoded)."""
        algo = self._asn1["signature_algorithm"]
        try:
            hash_entry = hash_by_lower_name(algo.hash_algo)
        except KeyError:
            return False
        tbs = self._asn1["tbs_certificate"].dump()
        signature = self._asn1["signature_value"].native
        key = issuer.public_key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, tbs, ec.ECDSA(hash_entry.new()))
            elif algo.signature_algo == "rsassa_pss":
                params = algo["parameters"]
                pss_hash = hash_by_lower_name(params["hash_algorithm"]["algorithm"].native).new()
                key.verify(signature, tbs, padding.PSS(padding.MGF1(pss_hash), params["salt_length"].native),
                           pss_hash)
            else:
                key.verify(signature, tbs, padding.PKCS1v15(), hash_entry.new())
        except (InvalidSignature, ValueError, KeyError, TypeError):
            return False
        return True


def load_pem_certificates(data: bytes | str, label: str = "PEM file") -> list[CardCertificate]:
    """Every certificate in a PEM bundle, read as leniently as card certificates are."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    blocks = []
    for part in text.split("-----BEGIN CERTIFICATE-----")[1:]:
        if "-----END CERTIFICATE-----" not in part:
            raise MalformedResponseError(f"{label}: a certificate has no END line")
        blocks.append(part.split("-----END CERTIFICATE-----")[0])
    return [CardCertificate.from_pem(b, f"{label} certificate {i + 1}") for i, b in enumerate(blocks)]


def build_chain(leaf: CardCertificate, candidates: list[CardCertificate]) -> list[CardCertificate]:
    """``leaf``, then the issuers found among ``candidates``, in order, as far as they go.

    An issuer is taken only if its subject names the certificate's issuer and its key verifies the
    certificate's signature: a same-named certificate of another generation must not slip in.
    """
    chain = [leaf]
    while not chain[-1].self_issued:
        current = chain[-1]
        issuer = next((c for c in candidates if c not in chain and c.subject.der == current.issuer.der
                       and current.signed_by(c)), None)
        if issuer is None:
            issuer = next((c for c in candidates if c not in chain
                           and c.subject.rfc4514() == current.issuer.rfc4514() and current.signed_by(c)), None)
        if issuer is None:
            break
        chain.append(issuer)
    return chain


__all__ = ["CardCertificate", "Name", "PublicKey", "build_chain", "load_pem_certificates"]
