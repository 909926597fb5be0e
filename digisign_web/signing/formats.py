"""The SCS signature types, one function each, over a :class:`~digisign_web.signing.signers.DigestSigner`.

What each type contains is the contract of decisions D17–D21 (docs/decisions.md):

* ``signature``: raw; RSA PKCS#1 v1.5 over DigestInfo, ECDSA as DER (Java's ``SHA256withECDSA``);
* ``signature-plain``: as ``signature`` but ECDSA as raw r||s (``SHA256withPLAIN-ECDSA``);
* ``cms`` / ``pkcs7``: CAdES-B-B SignedData (content-type, message-digest, signing-time,
  signing-certificate-v2, the whole chain); attached for ``data``, detached for ``digest``;
* ``cms-pades``: detached PAdES-B-B CMS over a given digest: no signing-time (the PDF's /M has it);
* ``xml`` (``xmldsig``): enveloping XMLDSig with one Reference to ``ds:Object``.

Adding a type means adding one function and one entry in :data:`SIGNATURE_TYPES`.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lxml import etree
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, methods
from signxml.algorithms import SignatureConstructionMethod

from card.crypto import HASH_NAMES, hash_by_name
from digisign_web.signing.signers import (
    CmsSigner,
    DigestSigner,
    key_algorithm,
    private_key_for,
    sign_digest_der,
)

XMLDSIG_BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
CONTENT_TYPES = ("data", "digest")


class FormatError(Exception):
    """A request this format cannot serve. ``code`` is the SCS reasonCode (400 bad input, 501 not offered)."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


@dataclass(frozen=True)
class SignRequest:
    content: bytes
    content_type: str = "data"
    hash_algorithm: str = "SHA256"


@dataclass(frozen=True)
class SignOutput:
    signature: bytes  # the bytes an SCS response base64-encodes
    signature_algorithm: str  # Java-style name: SHA256withRSA, SHA384withECDSA, SHA256withPLAIN-ECDSA


def java_algorithm_name(signer: DigestSigner, hash_algorithm: str, plain: bool = False) -> str:
    if key_algorithm(signer) == "RSA":
        return f"{hash_algorithm}withRSA"
    return f"{hash_algorithm}with{'PLAIN-' if plain else ''}ECDSA"


def message_digest(request: SignRequest) -> bytes:
    """The digest to sign: hash of the content for ``data``, the content itself for ``digest``."""
    algorithm = hash_by_name(request.hash_algorithm)
    if request.content_type == "digest":
        if len(request.content) != algorithm.size:
            raise FormatError(400, f"a {request.hash_algorithm} digest has {algorithm.size} bytes; "
                                   f"the content has {len(request.content)}")
        return request.content
    return algorithm.digest(request.content)


def _no_sha1(request: SignRequest, what: str) -> None:
    if request.hash_algorithm == "SHA1":
        raise FormatError(501, f"SHA1 is not offered for {what}: it has expired for signature containers "
                               "(use SHA256 or stronger)")


# --- the types -------------------------------------------------------------------------------


async def sign_raw(signer: DigestSigner, request: SignRequest) -> SignOutput:
    digest = message_digest(request)
    return SignOutput(sign_digest_der(signer, request.hash_algorithm, digest),
                      java_algorithm_name(signer, request.hash_algorithm))


async def sign_raw_plain(signer: DigestSigner, request: SignRequest) -> SignOutput:
    digest = message_digest(request)
    return SignOutput(signer.sign_digest(request.hash_algorithm, digest),
                      java_algorithm_name(signer, request.hash_algorithm, plain=True))


def _now() -> PdfCMSSignedAttributes:
    return PdfCMSSignedAttributes(signing_time=dt.datetime.now(dt.UTC).replace(microsecond=0))


async def sign_cms(signer: DigestSigner, request: SignRequest) -> SignOutput:
    """CAdES-B-B: attached for data, detached over the given digest."""
    _no_sha1(request, "CMS")
    md = request.hash_algorithm.lower()
    cms_signer = CmsSigner(signer)
    if request.content_type == "digest":
        digest = message_digest(request)
        # use_pades selects pyHanko's CAdES attribute spec; is_pdf_sig=False keeps signing-time in.
        info = await cms_signer.async_sign(digest, md, use_pades=True, is_pdf_sig=False,
                                           signed_attr_settings=_now())
    else:
        info = await cms_signer.async_sign_general_data(request.content, md, detached=False, use_cades=True,
                                                        signed_attr_settings=_now())
    return SignOutput(info.dump(), java_algorithm_name(signer, request.hash_algorithm))


async def sign_cms_pades(signer: DigestSigner, request: SignRequest) -> SignOutput:
    """PAdES-B-B CMS over a PDF byte-range digest, for /SubFilter ETSI.CAdES.detached."""
    _no_sha1(request, "cms-pades")
    if request.content_type != "digest":
        raise FormatError(501, "cms-pades signs the digest of a PDF byte range: send contentType 'digest'")
    digest = message_digest(request)
    info = await CmsSigner(signer).async_sign(digest, request.hash_algorithm.lower(), use_pades=True)
    return SignOutput(info.dump(), java_algorithm_name(signer, request.hash_algorithm))


class _EnvelopingSigner(XMLSigner):
    """signxml's enveloping signer, plus the Encoding attribute on a base64 ds:Object (which must be
    in place before the Object is digested)."""

    encoding: str | None = None

    def _unpack(self, data, references):
        sig_root, doc_root, c14n_inputs, references = super()._unpack(data, references)
        if self.encoding and self.construction_method == SignatureConstructionMethod.enveloping:
            c14n_inputs[0].set("Encoding", self.encoding)
        return sig_root, doc_root, c14n_inputs, references


def xml_payload(content: bytes) -> etree._Element | None:
    """The content as an XML element if it is a well-formed document without a DTD, else None."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        tree = etree.fromstring(content, parser).getroottree()
    except (etree.XMLSyntaxError, ValueError):
        return None
    if tree.docinfo.doctype:
        return None  # a DTD would be lost inside ds:Object: carry the document as base64 instead
    return tree.getroot()


async def sign_xml(signer: DigestSigner, request: SignRequest) -> SignOutput:
    """Enveloping XMLDSig; well-formed XML goes in as XML, anything else as base64 text."""
    _no_sha1(request, "XMLDSig")
    if request.content_type == "digest":
        raise FormatError(501, "xml signs content, not a digest: send contentType 'data'")
    algorithm = key_algorithm(signer)
    method = getattr(SignatureMethod, f"{'ECDSA' if algorithm == 'EC' else 'RSA'}_{request.hash_algorithm}")
    xml_signer = _EnvelopingSigner(method=methods.enveloping, signature_algorithm=method,
                                   digest_algorithm=getattr(DigestAlgorithm, request.hash_algorithm))
    payload = xml_payload(request.content)
    data: etree._Element | str
    if payload is None:
        xml_signer.encoding = XMLDSIG_BASE64
        data = base64.b64encode(request.content).decode("ascii")
    else:
        data = payload
    key = private_key_for(signer)
    root = await asyncio.to_thread(xml_signer.sign, data, key=key, key_info=key_info(signer))
    return SignOutput(etree.tostring(root, xml_declaration=True, encoding="UTF-8"),
                      java_algorithm_name(signer, request.hash_algorithm))


def key_info(signer: DigestSigner) -> etree._Element:
    """``ds:KeyInfo/ds:X509Data`` with the chain as the card stores it. signxml would parse the
    certificates with cryptography first, which refuses real cards' non-strict encodings."""
    ns = "http://www.w3.org/2000/09/xmldsig#"
    element = etree.Element(f"{{{ns}}}KeyInfo", nsmap={"ds": ns})
    data = etree.SubElement(element, f"{{{ns}}}X509Data")
    for cert in signer.chain:
        etree.SubElement(data, f"{{{ns}}}X509Certificate").text = base64.b64encode(cert.der).decode("ascii")
    return element


SignFunction = Callable[[DigestSigner, SignRequest], Awaitable[SignOutput]]


@dataclass(frozen=True)
class SignatureType:
    """A registry entry: the function, and the request shapes it accepts (checked before any card work)."""

    function: SignFunction
    content_types: tuple[str, ...] = CONTENT_TYPES
    sha1: bool = False  # SHA-1 only for raw signatures (legacy relying parties); expired for containers


SIGNATURE_TYPES: dict[str, SignatureType] = {
    "signature": SignatureType(sign_raw, sha1=True),
    "signature-plain": SignatureType(sign_raw_plain, sha1=True),
    "cms": SignatureType(sign_cms),
    "pkcs7": SignatureType(sign_cms),  # DigiSign: "compliant with 'cms' definition"
    "cms-pades": SignatureType(sign_cms_pades, content_types=("digest",)),
    "xml": SignatureType(sign_xml, content_types=("data",)),
    "xmldsig": SignatureType(sign_xml, content_types=("data",)),  # synonym from another SCS server (D21)
}
ADVERTISED_TYPES = ("signature", "signature-plain", "cms", "cms-pades", "pkcs7", "xml")


def preflight(signature_type: str, request: SignRequest) -> None:
    """Every check that needs no card, so that a request that cannot succeed never reaches the PIN dialog:
    400 for unknown values or a digest of the wrong length, 501 for combinations not offered."""
    if signature_type not in SIGNATURE_TYPES:
        raise FormatError(400, f"unknown signatureType {signature_type!r}; "
                               f"supported: {', '.join(ADVERTISED_TYPES)}")
    if request.content_type not in CONTENT_TYPES:
        raise FormatError(400, f"unknown contentType {request.content_type!r}; use 'data' or 'digest'")
    if request.hash_algorithm not in HASH_NAMES:
        raise FormatError(400, f"unknown hashAlgorithm {request.hash_algorithm!r}; "
                               f"supported: {', '.join(HASH_NAMES)}")
    entry = SIGNATURE_TYPES[signature_type]
    if request.hash_algorithm == "SHA1" and not entry.sha1:
        _no_sha1(request, signature_type)
    if request.content_type not in entry.content_types:
        wanted = " or ".join(repr(t) for t in entry.content_types)
        raise FormatError(501, f"{signature_type} takes contentType {wanted}, not {request.content_type!r}")
    message_digest(request)  # the digest length


async def sign(signature_type: str, signer: DigestSigner, request: SignRequest) -> SignOutput:
    """Produce ``signature_type`` for ``request``; :class:`FormatError` for what cannot be served."""
    preflight(signature_type, request)
    return await SIGNATURE_TYPES[signature_type].function(signer, request)
