"""CMS SignedData for ``cms``, ``pkcs7`` and ``cms-pades``, spliced from pre-encoded parts.

The structure is what pyHanko made for these types before (D17–D20, tests/unit/test_formats.py compares the
two): SignedData v1 with one SignerInfo v1 identified by issuerAndSerialNumber; digestAlgorithm with NULL
parameters; ``<hash>WithRSAEncryption`` (NULL parameters) or ``ecdsa-with-<hash>`` (none); the whole chain as
the card stores it (F1: real cards' certificates are not strict DER, so their bytes are copied, never
re-encoded), in DER SET order; signed attributes content-type (id-data), signing-time (UTCTime; not for
``cms-pades``), message-digest and signing-certificate-v2 (ESSCertIDv2: SHA-256 of the leaf, the default
hash left out, issuerSerial); no unsigned attributes.

Everything that depends only on the chain, the hash and the type is encoded once into a :class:`CmsTemplate`
(cached per chain), so a signature costs two short attribute encodings, one hash of the signed attributes
and a few byte joins, instead of pyHanko's thousands of asn1crypto encodings. Nothing here touches a card:
:meth:`CmsTemplate.signed_attributes` gives what the key signs (hashed), :meth:`CmsTemplate.signed_data` the
finished ContentInfo once the signature is back.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import algos, cms, tsp, x509

from card import CardCertificate
from card.crypto import hash_by_name

_ID_DATA = bytes.fromhex("06092a864886f70d010701")  # OBJECT IDENTIFIER id-data
_ID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")
_ID_MESSAGE_DIGEST = bytes.fromhex("06092a864886f70d010904")
_ID_SIGNING_TIME = bytes.fromhex("06092a864886f70d010905")
_VERSION_1 = b"\x02\x01\x01"  # INTEGER 1: SignedData and SignerInfo (issuerAndSerialNumber, id-data)


def _length(n: int) -> bytes:
    """A DER length."""
    if n < 0x80:
        return bytes((n,))
    octets = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _tlv(tag: int, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return bytes((tag,)) + _length(len(body)) + body


def _header(tag: int, size: int) -> bytes:
    return bytes((tag,)) + _length(size)


def _signing_time(when: dt.datetime) -> bytes:
    """The signing-time attribute: UTCTime through 2049, GeneralizedTime after (RFC 5652 §11.3)."""
    when = when.astimezone(dt.UTC)
    if 1950 <= when.year < 2050:
        value = _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    else:
        value = _tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))
    return _tlv(0x30, _ID_SIGNING_TIME, _tlv(0x31, value))


@dataclass(frozen=True)
class CmsTemplate:
    """The encoded parts of a SignedData that are the same for every signature with one chain, hash and type."""

    hash_algorithm: str  # SHA256
    key_algorithm: str  # RSA or EC
    with_signing_time: bool  # False for cms-pades: the PDF's /M carries the time
    fixed_attributes: tuple[bytes, ...]  # content-type and signing-certificate-v2 attributes, encoded
    signer_info_head: bytes  # version, sid, digestAlgorithm
    signature_algorithm: bytes
    digest_algorithms: bytes  # SET OF with the one digestAlgorithm
    certificates: bytes  # [0] IMPLICIT SET OF Certificate: the card's bytes

    def signed_attributes(self, message_digest: bytes, signing_time: dt.datetime | None = None) -> bytes:
        """The DER SET OF signed attributes: its hash is what the key signs. ``signing_time`` is required
        unless the template is for cms-pades, and ignored there."""
        if len(message_digest) != hash_by_name(self.hash_algorithm).size:
            raise ValueError(f"a {self.hash_algorithm} message digest has the wrong length {len(message_digest)}")
        attributes = [*self.fixed_attributes,
                      _tlv(0x30, _ID_MESSAGE_DIGEST, _tlv(0x31, _tlv(0x04, message_digest)))]
        if self.with_signing_time:
            if signing_time is None:
                raise ValueError("this CMS type carries a signing-time")
            attributes.append(_signing_time(signing_time))
        return _tlv(0x31, *sorted(attributes))  # DER: a SET OF in the order of its elements' encodings

    def signed_data(self, signed_attributes: bytes, signature: bytes, content: bytes | None = None) -> bytes:
        """The ContentInfo: ``signature`` as CMS wants it (RSA bytes, ECDSA as DER), ``content`` attached
        when given. The content is copied once, into the result."""
        signer_info = _tlv(0x30, self.signer_info_head, b"\xa0", signed_attributes[1:], self.signature_algorithm,
                           _tlv(0x04, signature))
        signer_infos = _tlv(0x31, signer_info)
        if content is None:
            encap = [_tlv(0x30, _ID_DATA)]
        else:
            octets = _header(0x04, len(content))
            explicit = _header(0xA0, len(octets) + len(content))
            encap = [_header(0x30, len(_ID_DATA) + len(explicit) + len(octets) + len(content)), _ID_DATA, explicit,
                     octets, content]
        body = [_VERSION_1, self.digest_algorithms, *encap, self.certificates, signer_infos]
        signed_data_size = sum(map(len, body))
        signed_data = _header(0x30, signed_data_size)
        explicit = _header(0xA0, len(signed_data) + signed_data_size)
        outer = _header(0x30, len(_ID_SIGNED_DATA) + len(explicit) + len(signed_data) + signed_data_size)
        return b"".join([outer, _ID_SIGNED_DATA, explicit, signed_data, *body])


def template(chain: Sequence[CardCertificate], hash_algorithm: str, key_algorithm: str | None = None, *,
             signing_time: bool = True) -> CmsTemplate:
    """The template for this chain (leaf first), hash and key; cached, so repeated signatures with one
    certificate encode its parts once."""
    return _template(tuple(chain), hash_by_name(hash_algorithm).name, key_algorithm or chain[0].key_algorithm,
                     signing_time)


@functools.lru_cache(maxsize=64)
def _template(chain: tuple[CardCertificate, ...], hash_name: str, key_algorithm: str,
              with_signing_time: bool) -> CmsTemplate:
    leaf = chain[0].asn1
    md = hash_by_name(hash_name).lower_name
    tbs = leaf["tbs_certificate"]
    # The leaf's issuer and serial as pyHanko put them: the issuer Name as encoded in the certificate.
    sid = cms.IssuerAndSerialNumber({"issuer": tbs["issuer"], "serial_number": leaf.serial_number})
    ess = tsp.SigningCertificateV2({"certs": [tsp.ESSCertIDv2({
        "hash_algorithm": {"algorithm": "sha256"},  # the DEFAULT: left out of the encoding
        "cert_hash": hashlib.sha256(chain[0].der).digest(),
        "issuer_serial": {"issuer": [x509.GeneralName({"directory_name": tbs["issuer"]})],
                          "serial_number": tbs["serial_number"]},
    })]})
    fixed = (cms.CMSAttribute({"type": "content_type", "values": ["data"]}).dump(),
             cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}).dump())
    digest_algorithm = algos.DigestAlgorithm({"algorithm": md}).dump()
    mechanism = f"{md}_{'ecdsa' if key_algorithm == 'EC' else 'rsa'}"
    signature_algorithm = algos.SignedDigestAlgorithm({"algorithm": mechanism}).dump()
    certificates = _tlv(0xA0, *sorted({c.der for c in chain}))  # the card's exact bytes (F1), DER set order
    return CmsTemplate(hash_name, key_algorithm, with_signing_time, fixed, _VERSION_1 + sid.dump() + digest_algorithm,
                       signature_algorithm, _tlv(0x31, digest_algorithm), certificates)

