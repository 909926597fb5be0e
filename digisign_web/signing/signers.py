"""Signers that can only "sign this digest", and the adapters that let pyHanko and signxml use them.

The private key never leaves the card: :class:`CardSigner` sends a digest to the token and gets back
PKCS#1 v1.5 bytes (RSA) or raw r||s (ECDSA). :class:`SoftwareSigner` has the same interface over a
software key, for tests and tools that have no card. Everything above (CMS, PAdES, XMLDSig) is built on
``sign_digest`` alone, through two adapters:

* :class:`CmsSigner`, a pyHanko ``Signer`` whose ``async_sign_raw`` hashes the signed attributes and
  sends only the digest (ECDSA converted to DER, as CMS wants);
* :func:`private_key_for`, an object implementing cryptography's private-key interface whose ``sign``
  goes to the signer (signxml calls it and turns the DER into r||s for XMLDSig itself).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from card import CardCertificate, Certificate, Token
from card.crypto import ecdsa_der_to_raw, ecdsa_raw_to_der, hash_by_lower_name, hash_by_name


def hash_name(name: str) -> str:
    """Normalise ``sha256``, ``SHA-256``, ``SHA256`` to ``SHA256``; ValueError for anything else."""
    return hash_by_name(name).name


class DigestSigner(Protocol):
    """What every format needs: a chain (leaf first, the card's exact bytes) and "sign this digest"."""

    @property
    def chain(self) -> list[CardCertificate]: ...

    def sign_digest(self, hash_algorithm: str, digest: bytes) -> bytes:
        """RSA: PKCS#1 v1.5 signature over DigestInfo(digest). EC: raw r||s, 2 x field size."""
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

    def sign_digest(self, hash_algorithm: str, digest: bytes) -> bytes:
        pin, self._pin = self._pin, None  # one signature per PIN entry: never reuse it
        return self.token.sign_digest(self.certificate, hash_name(hash_algorithm), digest, pin=pin)


class SoftwareSigner:
    """A software key with the card signer's interface (tests, and tools without a card)."""

    def __init__(self, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 chain: list[CardCertificate]):
        self.private_key = private_key
        self._chain = chain

    @property
    def chain(self) -> list[CardCertificate]:
        return self._chain

    def sign_digest(self, hash_algorithm: str, digest: bytes) -> bytes:
        algorithm = hash_by_name(hash_algorithm).new()
        if len(digest) != algorithm.digest_size:
            raise ValueError(f"a {algorithm.name} digest has {algorithm.digest_size} bytes, got {len(digest)}")
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            der = self.private_key.sign(digest, ec.ECDSA(utils.Prehashed(algorithm)))
            return ecdsa_der_to_raw(der, (self.private_key.curve.key_size + 7) // 8)
        return self.private_key.sign(digest, padding.PKCS1v15(), utils.Prehashed(algorithm))


def sign_digest_der(signer: DigestSigner, hash_algorithm: str, digest: bytes) -> bytes:
    """The signature in CMS/Java convention: RSA bytes as they are, ECDSA as DER Ecdsa-Sig-Value."""
    raw = signer.sign_digest(hash_algorithm, digest)
    return ecdsa_raw_to_der(raw) if key_algorithm(signer) == "EC" else raw


# --- pyHanko ---------------------------------------------------------------------------------


class CmsSigner(PyHankoSigner):
    """pyHanko ``Signer`` over a :class:`DigestSigner`: only the digest of the signed attributes leaves."""

    def __init__(self, signer: DigestSigner, embed_roots: bool = True):
        certs = [c.asn1 for c in signer.chain]  # parsed leniently, dumped as the card's exact bytes
        super().__init__(signing_cert=certs[0], cert_registry=SimpleCertificateStore.from_certs(certs[1:]),
                         embed_roots=embed_roots)
        self.digest_signer = signer

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        algorithm = hash_by_lower_name(digest_algorithm)
        if dry_run:  # pyHanko sizes PDF placeholders with this: never touch the card for it
            size = key_size(self.digest_signer)
            if key_algorithm(self.digest_signer) == "EC":
                field = (size + 7) // 8
                return bytes(2 * field + 9)  # the largest DER Ecdsa-Sig-Value for this field
            return bytes(size // 8)
        digest = algorithm.digest(data)
        return await asyncio.to_thread(sign_digest_der, self.digest_signer, algorithm.name, digest)


# --- cryptography private-key interface (signxml) -------------------------------------------


def _digest_of(data: bytes, algorithm: hashes.HashAlgorithm | utils.Prehashed) -> tuple[str, bytes]:
    if isinstance(algorithm, utils.Prehashed):
        return hash_name(algorithm._algorithm.name), data
    h = hashes.Hash(algorithm)
    h.update(data)
    return hash_name(algorithm.name), h.finalize()


class _Unsupported:
    def _refuse(self, what: str) -> None:
        raise NotImplementedError(f"{what} is not possible with a card-held key")

    def private_numbers(self):
        self._refuse("exporting the private key")

    def private_bytes(self, *args: object, **kwargs: object):
        self._refuse("exporting the private key")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo: dict):
        return self


class _RsaKey(_Unsupported, rsa.RSAPrivateKey):
    def __init__(self, signer: DigestSigner):
        self._signer = signer

    def sign(self, data: bytes, padding: padding.AsymmetricPadding,
             algorithm: hashes.HashAlgorithm | utils.Prehashed) -> bytes:
        if not isinstance(padding, _PKCS1):
            raise NotImplementedError("the card signs PKCS#1 v1.5 here; PSS is not offered")
        name, digest = _digest_of(data, algorithm)
        return self._signer.sign_digest(name, digest)

    @property
    def key_size(self) -> int:
        return key_size(self._signer)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._signer.chain[0].public_key  # type: ignore[return-value]

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        self._refuse("decryption")
        raise AssertionError


class _EcKey(_Unsupported, ec.EllipticCurvePrivateKey):
    def __init__(self, signer: DigestSigner):
        self._signer = signer

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise NotImplementedError("only ECDSA")
        name, digest = _digest_of(data, signature_algorithm.algorithm)
        return sign_digest_der(self._signer, name, digest)  # DER, as cryptography's own keys return

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return key_size(self._signer)

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._signer.chain[0].public_key  # type: ignore[return-value]

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse("key agreement")
        raise AssertionError


_PKCS1 = padding.PKCS1v15


def private_key_for(signer: DigestSigner) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """A cryptography private-key object whose ``sign`` is the signer's ``sign_digest``."""
    return _EcKey(signer) if key_algorithm(signer) == "EC" else _RsaKey(signer)
