"""Enveloping XMLDSig with signxml, in two phases around the card (no card in here).

signxml builds the whole signature over a placeholder value, with a key object that keeps the digest of the
canonical SignedInfo (:class:`_CapturingKey`); the card signs that digest, and the ``finish`` function puts
the card's signature in ``ds:SignatureValue``. lxml and signxml are imported with this module, which
:mod:`digisign_web.signing.formats` loads only for the first XML request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import utils
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod, XMLSigner, methods
from signxml.algorithms import SignatureConstructionMethod

from card import CardCertificate
from card.crypto import hash_by_name

XMLDSIG_BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
DS = "http://www.w3.org/2000/09/xmldsig#"
SPLICE_FROM = 1 << 20  # bytes of a non-XML document from which its base64 text bypasses signxml
_STAND_IN = "c3RhbmQtaW4="  # base64 text signxml signs in the document's place
_MARK = "digisign-web-document"  # stands in for the base64 document in the tree; not base64 text itself


class _EnvelopingSigner(XMLSigner):
    """signxml's enveloping signer, plus the Encoding attribute on a base64 ds:Object (which must be
    in place before the Object is digested)."""

    encoding: str | None = None

    def _unpack(self, data, references):
        sig_root, doc_root, c14n_inputs, references = super()._unpack(data, references)
        if self.encoding and self.construction_method == SignatureConstructionMethod.enveloping:
            c14n_inputs[0].set("Encoding", self.encoding)
        return sig_root, doc_root, c14n_inputs, references


class _CapturingKey:
    """What signxml takes for a private key: ``sign`` keeps the canonical SignedInfo's digest and returns a
    placeholder of the right shape (DER for ECDSA, which signxml turns into r||s of ``key_size``); the real
    signature replaces it in :meth:`Pending.finish`."""

    def __init__(self, key: str, key_size: int, hash_algorithm: str):
        self.key_size = key_size
        self._key = key
        self._hash = hash_by_name(hash_algorithm)
        self.digest: bytes | None = None

    def sign(self, data: bytes, padding: object = None, algorithm: object = None,
             signature_algorithm: object = None) -> bytes:
        used = getattr(signature_algorithm, "algorithm", None) or algorithm
        if hash_by_name(getattr(used, "name", "")).name != self._hash.name or self.digest is not None:
            raise ValueError("signxml asked for a signature this request did not prepare")
        self.digest = self._hash.digest(data)
        return utils.encode_dss_signature(1, 1) if self._key == "EC" else bytes(self.key_size // 8)


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


def _signer(hash_algorithm: str, key: str, *, base64_document: bool) -> _EnvelopingSigner:
    """signxml's enveloping signer for the key algorithm and hash; a base64 document gets its Encoding."""
    method = getattr(SignatureMethod, f"{'ECDSA' if key == 'EC' else 'RSA'}_{hash_algorithm}")
    signer = _EnvelopingSigner(method=methods.enveloping, signature_algorithm=method,
                               digest_algorithm=getattr(DigestAlgorithm, hash_algorithm))
    if base64_document:
        signer.encoding = XMLDSIG_BASE64
    return signer


def _finisher(root: etree._Element, value: etree._Element, document: Callable[[], bytes] | None
              ) -> Callable[[bytes], bytes]:
    """``finish``: the card's signature into ds:SignatureValue, then the serialised tree; with ``document``,
    the base64 text it gives is spliced in where the tree holds :data:`_MARK` (base64 needs no escaping)."""

    def finish(raw: bytes) -> bytes:
        value.text = base64.b64encode(raw).decode("ascii")
        text = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        if document is None:
            return text
        head, tail = text.split(_MARK.encode("ascii"))
        return b"".join((head, document(), tail))

    return finish


def enveloping(content: bytes, hash_algorithm: str, key: str, chain: Sequence[CardCertificate]
               ) -> tuple[bytes, Callable[[bytes], bytes]]:
    """The digest the key must sign, and the function that makes the signed document from the card's
    signature (XMLDSig wants ECDSA as r||s, which is what the card returns)."""
    payload = xml_payload(content)
    if payload is None and len(content) >= SPLICE_FROM:
        spliced = _base64_document(content, hash_algorithm, key, chain)
        if spliced is not None:
            return spliced
    xml_signer = _signer(hash_algorithm, key, base64_document=payload is None)
    data: etree._Element | str
    if payload is None:
        data = base64.b64encode(content).decode("ascii")
    else:
        data = payload
    capture = _CapturingKey(key, chain[0].key_size, hash_algorithm)
    root = xml_signer.sign(data, key=capture, key_info=key_info(chain))
    del data
    value = root.find(f"{{{DS}}}SignatureValue")
    if capture.digest is None or value is None:
        raise AssertionError("signxml made no signature value")
    if payload is None:
        # The document is digested: the tree gives its copy of the base64 text back, and finish splices the
        # signed document together from the serialised tree and the base64 text (which needs no escaping),
        # encoded again then, so that no second copy waits through the card operation.
        document = root.find(f"{{{DS}}}Object")
        if document is None or document.text is None or len(document.text) != 4 * ((len(content) + 2) // 3):
            raise AssertionError("signxml did not carry the document as the ds:Object text")
        document.text = _MARK

    return capture.digest, _finisher(root, value, None if payload is not None else lambda: base64.b64encode(content))


def _base64_document(content: bytes, hash_algorithm: str, key: str, chain: Sequence[CardCertificate]
                     ) -> tuple[bytes, Callable[[bytes], bytes]] | None:
    """A large non-XML document without passing its base64 text through signxml and libxml2.

    signxml signs a tiny stand-in document; the canonical ds:Object is then stand-in-text-split into the parts
    around the text, and the real Object's digest is the hash of those parts around the document's base64
    text (which canonicalisation leaves as it is). SignedInfo, with that digest in, is canonicalised again.
    Both steps are first checked against what signxml computed for the stand-in; if either differs, None:
    the caller signs the ordinary way."""
    algorithm = hash_by_name(hash_algorithm)
    xml_signer = _signer(hash_algorithm, key, base64_document=True)
    capture = _CapturingKey(key, chain[0].key_size, hash_algorithm)
    root = xml_signer.sign(_STAND_IN, key=capture, key_info=key_info(chain))
    document = root.find(f"{{{DS}}}Object")
    signed_info = root.find(f"{{{DS}}}SignedInfo")
    value = root.find(f"{{{DS}}}SignatureValue")
    digest_values = signed_info.findall(f".//{{{DS}}}DigestValue") if signed_info is not None else []
    if document is None or value is None or len(digest_values) != 1 or capture.digest is None:
        return None
    canonical = etree.tostring(document, method="c14n")
    if (canonical.count(_STAND_IN.encode()) != 1
            or base64.b64decode(digest_values[0].text or "") != algorithm.digest(canonical)
            or algorithm.digest(etree.tostring(signed_info, method="c14n")) != capture.digest):
        return None
    before, after = canonical.split(_STAND_IN.encode())
    encoded = base64.b64encode(content)
    hasher = hashes.Hash(algorithm.new())
    for part in (before, encoded, after):
        hasher.update(part)
    digest_values[0].text = base64.b64encode(hasher.finalize()).decode("ascii")
    to_sign = algorithm.digest(etree.tostring(signed_info, method="c14n"))
    document.text = _MARK

    return to_sign, _finisher(root, value, lambda: encoded)


def key_info(chain: Sequence[CardCertificate]) -> etree._Element:
    """``ds:KeyInfo/ds:X509Data`` with the chain as the card stores it. signxml would parse the
    certificates with cryptography first, which refuses real cards' non-strict encodings."""
    ns = "http://www.w3.org/2000/09/xmldsig#"
    element = etree.Element(f"{{{ns}}}KeyInfo", nsmap={"ds": ns})
    data = etree.SubElement(element, f"{{{ns}}}X509Data")
    for cert in chain:
        etree.SubElement(data, f"{{{ns}}}X509Certificate").text = base64.b64encode(cert.der).decode("ascii")
    return element
