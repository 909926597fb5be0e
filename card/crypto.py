"""Algorithms every layer shares: the one hash table, RSA/EC key detection and the ECDSA encodings (D34).

The card layer is the lowest layer that needs hash sizes and DigestInfo prefixes, so the table lives here
and the signing, SCS and web layers import it instead of keeping their own lists that could drift apart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa, utils


@dataclass(frozen=True)
class Hash:
    """One hash algorithm under every name the layers use for it."""

    name: str  # SCS, Java and signxml spelling: "SHA256"
    size: int  # digest bytes
    digest_info_prefix: bytes  # DER DigestInfo up to the digest, for cards that want the host to build it
    algorithm: type[hashes.HashAlgorithm]  # cryptography's class
    lower_name: str  # asn1crypto, pyHanko and hashlib spelling: "sha256"
    pdf: bool = True  # offered for PAdES PDFs in the playground (SHA-256 and up)

    def new(self) -> hashes.HashAlgorithm:
        """A fresh cryptography hash object (``hashes.SHA256()``)."""
        return self.algorithm()

    def digest(self, data: bytes) -> bytes:
        return hashlib.new(self.lower_name, data).digest()


# DigestInfo prefixes: RFC 8017 §9.2 note 1.
SHA1 = Hash("SHA1", 20, bytes.fromhex("3021300906052b0e03021a05000414"), hashes.SHA1, "sha1", pdf=False)
SHA224 = Hash("SHA224", 28, bytes.fromhex("302d300d06096086480165030402040500041c"), hashes.SHA224, "sha224",
              pdf=False)
SHA256 = Hash("SHA256", 32, bytes.fromhex("3031300d060960864801650304020105000420"), hashes.SHA256, "sha256")
SHA384 = Hash("SHA384", 48, bytes.fromhex("3041300d060960864801650304020205000430"), hashes.SHA384, "sha384")
SHA512 = Hash("SHA512", 64, bytes.fromhex("3051300d060960864801650304020305000440"), hashes.SHA512, "sha512")

HASHES: tuple[Hash, ...] = (SHA1, SHA224, SHA256, SHA384, SHA512)
HASH_NAMES: tuple[str, ...] = tuple(h.name for h in HASHES)  # what the SCS API accepts, in this order
PDF_HASH_NAMES: tuple[str, ...] = tuple(h.name for h in HASHES if h.pdf)

_BY_NAME = {h.name: h for h in HASHES}
_BY_LOWER = {h.lower_name: h for h in HASHES}
_BY_SIZE = {h.size: h for h in HASHES}


def normalize_hash_name(name: str) -> str:
    """``sha256``, ``SHA-256``, ``SHA_256`` → ``SHA256`` (not checked against the table)."""
    return name.upper().replace("-", "").replace("_", "")


def hash_by_name(name: str) -> Hash:
    """The entry for any spelling of a name (``SHA256``, ``sha-256``); ValueError for an unknown hash."""
    entry = _BY_NAME.get(normalize_hash_name(name))
    if entry is None:
        raise ValueError(f"unsupported hash algorithm {name!r}")
    return entry


def hash_by_lower_name(name: str) -> Hash:
    """The entry for an asn1crypto/pyHanko name (``sha256``); KeyError for an unknown one."""
    return _BY_LOWER[name.lower()]


def hash_by_size(size: int) -> Hash | None:
    """The hash whose digests have ``size`` bytes (sizes are unique in the table), or None."""
    return _BY_SIZE.get(size)


# --- keys ------------------------------------------------------------------------------------------

Key = rsa.RSAPublicKey | rsa.RSAPrivateKey | ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey


def key_algorithm(key: Key) -> str:
    """``RSA`` or ``EC`` for a public or private key; ValueError for any other kind."""
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return "EC"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    raise ValueError(f"unsupported key type {type(key).__name__}")


# --- ECDSA signature encodings ---------------------------------------------------------------------


def ecdsa_raw_to_der(raw: bytes) -> bytes:
    """r||s (what FINEID returns, and XMLDSig wants) to DER Ecdsa-Sig-Value (what CMS and Java want)."""
    if not raw or len(raw) % 2:
        raise ValueError("raw ECDSA signature must have an even, non-zero length")
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def ecdsa_der_to_raw(der: bytes, field_bytes: int) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(field_bytes, "big") + s.to_bytes(field_bytes, "big")
