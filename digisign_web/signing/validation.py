"""Verification of what the formats produce: CMS (attached or detached), PDF (PAdES) and XMLDSig.

Used by ``digisign-web verify`` and by the playground's check. The checks are pyHanko's and signxml's,
libraries we did not write (for XML the chain is walked here, see :func:`verify_xml`); this module
only finds the format and reports: format, signer, whether the
signature is intact, whether the chain reaches a trusted root, and the hash algorithm.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
from dataclasses import dataclass, field

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature, async_validate_detached_cms
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import ValidationContext
from signxml import SignatureConfiguration, XMLVerifier
from signxml.exceptions import InvalidDigest, InvalidSignature, SignXMLException

from card import CardCertificate, CardError, build_chain

DSIG11 = "http://www.w3.org/2009/xmldsig11#"
# FINEID signature certificates are nonRepudiation-only, authentication certificates digitalSignature:
# accept either, as a relying party for both keys must.
KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)


@dataclass
class Report:
    format: str
    intact: bool
    trusted: bool | None  # None: no trust anchor was given, so the chain was not judged
    signer: str = ""
    hash_algorithm: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.intact and self.trusted is not False

    def text(self) -> str:
        trust = {True: "trusted", False: "NOT trusted", None: "not checked (give --trust ROOT.pem)"}[self.trusted]
        lines = [f"format:    {self.format}", f"signer:    {self.signer or '?'}",
                 f"signature: {'intact' if self.intact else 'BROKEN'}", f"chain:     {trust}",
                 f"hash:      {self.hash_algorithm or '?'}"]
        lines += [f"problem:   {p}" for p in self.problems]
        return "\n".join(lines)


def _context(trust: list[CardCertificate]) -> ValidationContext:
    return ValidationContext(trust_roots=[c.asn1 for c in trust], allow_fetching=False)


def _name(cert: asn1_x509.Certificate | CardCertificate) -> str:
    if isinstance(cert, asn1_x509.Certificate):
        cert = CardCertificate.load(cert.dump(), "signer certificate")
    return cert.subject.rfc4514()


def _from_status(fmt: str, status: object, trust: list[CardCertificate]) -> Report:
    report = Report(fmt, bool(status.intact and status.valid), bool(status.trusted) if trust else None,  # type: ignore[attr-defined]
                    _name(status.signing_cert), status.md_algorithm.upper())  # type: ignore[attr-defined]
    if not report.intact:
        report.problems.append("the signature does not match the signed content")
    if trust and report.intact and not status.trusted:  # type: ignore[attr-defined]
        report.problems.append(f"chain: {status.trust_problem_indic}")  # type: ignore[attr-defined]
    return report


async def verify_cms(data: bytes, detached: bytes | None, trust: list[CardCertificate]) -> Report:
    info = cms.ContentInfo.load(data)
    signed = info["content"]
    attached = signed["encap_content_info"]["content"].native is not None
    context = _context(trust)
    if attached:
        status = await async_validate_cms_signature(signed, validation_context=context, key_usage_settings=KEY_USAGE)
        fmt = "CMS SignedData, attached"
    elif detached is not None:
        status = await async_validate_detached_cms(detached, signed, signer_validation_context=context,
                                                   key_usage_settings=KEY_USAGE)
        fmt = "CMS SignedData, detached"
    else:
        raise ValueError("a detached CMS needs the signed content: give --detached FILE")
    report = _from_status(fmt, status, trust)
    attrs = {a["type"].native for a in signed["signer_infos"][0]["signed_attrs"]}
    if "signing_time" not in attrs:
        report.format += " (no signing-time: PAdES profile)"
    return report


async def verify_pdf(data: bytes, trust: list[CardCertificate]) -> list[Report]:
    reader = PdfFileReader(io.BytesIO(data))
    reports = []
    for embedded in reader.embedded_signatures:
        status = await async_validate_pdf_signature(embedded, signer_validation_context=_context(trust),
                                                    key_usage_settings=KEY_USAGE)
        sub_filter = embedded.sig_object.get("/SubFilter")
        report = _from_status(f"PDF signature {embedded.field_name!r} ({sub_filter})", status, trust)
        if not status.docmdp_ok and status.docmdp_ok is not None:
            report.problems.append("the document was modified after signing")
            report.intact = False
        reports.append(report)
    if not reports:
        raise ValueError("the PDF has no signatures")
    return reports


def _chain_trusted(certs: list[CardCertificate], trust: list[CardCertificate]) -> tuple[bool, str]:
    """Whether the certificates in the signature chain up to one of ``trust`` (signatures checked)."""
    chain = build_chain(certs[0], certs[1:] + trust)
    top = chain[-1]
    if top in trust or any(top.signed_by(anchor) for anchor in trust):
        now = dt.datetime.now(dt.UTC)
        expired = [c for c in chain if not c.not_before <= now <= c.not_after]
        if expired:
            return False, f"chain: {expired[0].subject} is not valid now"
        return True, ""
    return False, f"chain: {top.subject} is not issued by a trusted root"


def verify_xml(data: bytes, trust: list[CardCertificate]) -> Report:
    """Check an XMLDSig signature with signxml, over the key of the certificate it carries.

    signxml reads ``X509Certificate`` with cryptography, which refuses real cards' non-strict
    certificates. So the certificate is read here, its key is handed to signxml as a ``KeyValue`` in a
    copy of the document (KeyInfo is outside what the signature covers), and the chain is checked here.
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    ns = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    try:
        certs = [CardCertificate.load(base64.b64decode(t.text or ""), "X509Certificate")
                 for t in root.iterfind(".//ds:X509Certificate", ns)]
    except (CardError, ValueError) as exc:
        raise ValueError(f"the signature carries a certificate that does not parse: {exc}") from None
    method = root.find(".//ds:SignatureMethod", ns)
    algorithm = (method.get("Algorithm") or "").rsplit("#", 1)[-1] if method is not None else ""
    leaf = certs[0] if certs else None
    report = Report("XMLDSig, enveloping" if root.find("ds:Object", ns) is not None else "XMLDSig",
                    intact=False, trusted=None, signer=leaf.subject.rfc4514() if leaf else "",
                    hash_algorithm=algorithm.split("-")[-1].upper())
    if leaf is None:
        report.problems.append("the signature carries no X509Certificate")
        return report
    copy = etree.fromstring(data, parser)
    signature = copy if copy.tag == f"{{{ns['ds']}}}Signature" else copy.find(".//ds:Signature", ns)
    key_info = signature.find("ds:KeyInfo", ns) if signature is not None else None
    if key_info is None:
        report.problems.append("the signature has no KeyInfo")
        return report
    for child in list(key_info):
        key_info.remove(child)
    spki = leaf.public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    etree.SubElement(key_info, f"{{{DSIG11}}}DEREncodedKeyValue").text = base64.b64encode(spki).decode("ascii")
    try:
        XMLVerifier().verify(copy, expect_config=SignatureConfiguration(require_x509=False))
        report.intact = True
    except (InvalidSignature, InvalidDigest, SignXMLException, CryptoInvalidSignature) as exc:
        report.problems.append(str(exc) or "the signature value does not verify")
    if trust:
        report.trusted, problem = _chain_trusted(certs, trust)
        if problem:
            report.problems.append(problem)
    return report


async def verify(data: bytes, detached: bytes | None = None,
                 trust: list[CardCertificate] | None = None) -> list[Report]:
    """Find the format of ``data`` and verify it; ValueError when it is none we know. pyHanko's checks run
    on the caller's event loop; the XML check, which is synchronous, in a worker thread."""
    trust = trust or []
    head = data.lstrip()[:16]
    if head.startswith(b"%PDF"):
        return await verify_pdf(data, trust)
    if head.startswith(b"<"):
        return [await asyncio.to_thread(verify_xml, data, trust)]
    if head.startswith(b"-----BEGIN"):
        body = b"".join(line for line in data.strip().splitlines() if not line.startswith(b"-----"))
        data = base64.b64decode(body)
    try:
        cms.ContentInfo.load(data)["content"]["signer_infos"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("not a PDF, an XML signature or a CMS SignedData") from exc
    return [await verify_cms(data, detached, trust)]


def verify_bytes(data: bytes, detached: bytes | None = None,
                 trust: list[CardCertificate] | None = None) -> list[Report]:
    """:func:`verify` for a program without an event loop (the CLI): the one loop it runs."""
    return asyncio.run(verify(data, detached, trust))
