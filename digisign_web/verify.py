"""Verification of what the formats produce: CMS (attached or detached), PDF (PAdES) and XMLDSig.

Used by ``digisign-web verify`` and by the playground's check. The checks are pyHanko's and signxml's,
libraries we did not write; this module only finds the format and reports: format, signer, whether the
signature is intact, whether the chain reaches a trusted root, and the hash algorithm.
"""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import ExtensionPolicy
from lxml import etree
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature, async_validate_detached_cms
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import ValidationContext
from signxml import XMLVerifier
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidSignature, SignXMLException

from card.token import NAME_OVERRIDES

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


def _context(trust: list[x509.Certificate]) -> ValidationContext:
    roots = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in trust]
    return ValidationContext(trust_roots=roots, allow_fetching=False)


def _name(cert: asn1_x509.Certificate | x509.Certificate) -> str:
    if isinstance(cert, asn1_x509.Certificate):
        cert = x509.load_der_x509_certificate(cert.dump())
    return cert.subject.rfc4514_string(NAME_OVERRIDES)


def _from_status(fmt: str, status: object, trust: list[x509.Certificate]) -> Report:
    report = Report(fmt, bool(status.intact and status.valid), bool(status.trusted) if trust else None,  # type: ignore[attr-defined]
                    _name(status.signing_cert), status.md_algorithm.upper())  # type: ignore[attr-defined]
    if not report.intact:
        report.problems.append("the signature does not match the signed content")
    if trust and report.intact and not status.trusted:  # type: ignore[attr-defined]
        report.problems.append(f"chain: {status.trust_problem_indic}")  # type: ignore[attr-defined]
    return report


async def verify_cms(data: bytes, detached: bytes | None, trust: list[x509.Certificate]) -> Report:
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


async def verify_pdf(data: bytes, trust: list[x509.Certificate]) -> list[Report]:
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


def verify_xml(data: bytes, trust: list[x509.Certificate]) -> Report:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    certs = [x509.load_der_x509_certificate(base64.b64decode(t.text or ""))
             for t in root.iterfind(".//ds:X509Certificate", ns)]
    method = root.find(".//ds:SignatureMethod", ns)
    algorithm = (method.get("Algorithm") or "").rsplit("#", 1)[-1] if method is not None else ""
    leaf = certs[0] if certs else None
    report = Report("XMLDSig, enveloping" if root.find("ds:Object", ns) is not None else "XMLDSig",
                    intact=False, trusted=None, signer=_name(leaf) if leaf else "",
                    hash_algorithm=algorithm.split("-")[-1].upper())
    verifier = XMLVerifier()
    try:
        if trust:
            # signxml reads its anchors from a file (cryptography's verifier, not OpenSSL's).
            with tempfile.TemporaryDirectory() as tmp:
                anchors = Path(tmp) / "trust.pem"
                anchors.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in trust))
                verifier.verify(data, ca_pem_file=str(anchors), ee_policy=ExtensionPolicy.permit_all())
            report.intact = report.trusted = True
        elif leaf is not None:
            verifier.verify(data, x509_cert=leaf.public_bytes(Encoding.PEM).decode())
            report.intact = True
    except InvalidCertificate as exc:
        report.trusted = False
        report.problems.append(f"chain: {exc}")
        # The chain failed; is the signature itself intact?
        if leaf is not None:
            try:
                XMLVerifier().verify(data, x509_cert=leaf.public_bytes(Encoding.PEM).decode())
                report.intact = True
            except SignXMLException as inner:
                report.problems.append(str(inner))
    except (InvalidSignature, InvalidDigest, SignXMLException) as exc:
        report.problems.append(str(exc))
    return report


def verify_bytes(data: bytes, detached: bytes | None = None,
                 trust: list[x509.Certificate] | None = None) -> list[Report]:
    """Find the format of ``data`` and verify it; ValueError when it is none we know."""
    trust = trust or []
    head = data.lstrip()[:16]
    if head.startswith(b"%PDF"):
        return asyncio.run(verify_pdf(data, trust))
    if head.startswith(b"<"):
        return [verify_xml(data, trust)]
    if head.startswith(b"-----BEGIN"):
        body = b"".join(line for line in data.strip().splitlines() if not line.startswith(b"-----"))
        data = base64.b64decode(body)
    try:
        cms.ContentInfo.load(data)["content"]["signer_infos"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError("not a PDF, an XML signature or a CMS SignedData") from exc
    return [asyncio.run(verify_cms(data, detached, trust))]
