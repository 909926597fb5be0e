"""Signers that can only "sign this digest", and the adapter that lets pyHanko's PDF signer use them.

The private key never leaves the card: :class:`CardSigner` sends a digest to the token and gets back
PKCS#1 v1.5 (or, on request, PSS) bytes (RSA) or raw r||s (ECDSA). :class:`SoftwareSigner` has the same
interface over a software key, for tests and tools that have no card. The SCS formats
(:mod:`digisign_web.signing.formats`) need only ``chain`` and ``sign_digest``; :class:`CmsSigner` is a
pyHanko ``Signer`` over the same interface for whole-PDF signing (:mod:`digisign_web.signing.pdf`).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from card import CardCertificate, Certificate, Token
from card.crypto import ecdsa_der_to_raw, ecdsa_raw_to_der, hash_by_name


def hash_name(name: str) -> str:
    """Normalise ``sha256``, ``SHA-256``, ``SHA256`` to ``SHA256``; ValueError for anything else."""
    return hash_by_name(name).name


class DigestSigner(Protocol):
    """What every format needs: a chain (leaf first, the card's exact bytes) and "sign this digest"."""

    @property
    def chain(self) -> list[CardCertificate]: ...

    def sign_digest(self, hash_algorithm: str, digest: bytes) -> bytes:
        """RSA: PKCS#1 v1.5 signature over DigestInfo(digest). EC: raw r||s, 2 x field size.

        Signers that offer RSA-PSS (the card's and the software signer) take ``pss=True`` as well."""
        ...


def key_algorithm(signer: DigestSigner) -> str:
    """``RSA`` or ``EC``, from the leaf certificate."""
    return signer.chain[0].key_algorithm


def key_size(signer: DigestSigner) -> int:
    return signer.chain[0].key_size


class CardSigner:
    """A key on a card. ``pin``, when given, is verified in the same card transaction as the signature
    and is not kept anywhere else; PIN2 keys need it for every signature."""

    def __init__(self, token: Token, certificate: Certificate, pin: str | None = None,
                 chain: list[CardCertificate] | None = None):
        if certificate.key is None:
            raise ValueError(f"certificate {certificate.label!r} has no private key on the card")
        self.token = token
        self.certificate = certificate
        self._pin = pin
        self._chain = chain or token.chain(certificate)

    @property
    def chain(self) -> list[CardCertificate]:
        return self._chain

    def sign_digest(self, hash_algorithm: str, digest: bytes, *, pss: bool = False) -> bytes:
        pin, self._pin = self._pin, None  # one signature per PIN entry: never reuse it
        return self.token.sign_digest(self.certificate, hash_name(hash_algorithm), digest, pin=pin, pss=pss)


class SoftwareSigner:
    """A software key with the card signer's interface (tests, and tools without a card)."""

    def __init__(self, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 chain: list[CardCertificate]):
        self.private_key = private_key
        self._chain = chain

    @property
    def chain(self) -> list[CardCertificate]:
        return self._chain

    def sign_digest(self, hash_algorithm: str, digest: bytes, *, pss: bool = False) -> bytes:
        algorithm = hash_by_name(hash_algorithm).new()
        if len(digest) != algorithm.digest_size:
            raise ValueError(f"a {algorithm.name} digest has {algorithm.digest_size} bytes, got {len(digest)}")
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            der = self.private_key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
            return ecdsa_der_to_raw(der, (self.private_key.curve.key_size + 7) // 8)
        if pss:  # salt as long as the hash, as FINEID cards make it
            scheme: padding.AsymmetricPadding = padding.PSS(padding.MGF1(algorithm), padding.PSS.DIGEST_LENGTH)
            return self.private_key.sign(digest, scheme, utils.Prehashed(algorithm))
        return self.private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))


def sign_digest_der(signer: DigestSigner, hash_algorithm: str, digest: bytes) -> bytes:
    """The signature in CMS/Java convention: RSA bytes as they are, ECDSA as DER Ecdsa-Sig-Value."""
    raw = signer.sign_digest(hash_algorithm, digest)
    return ecdsa_raw_to_der(raw) if key_algorithm(signer) == "EC" else raw


# --- pyHanko ---------------------------------------------------------------------------------
