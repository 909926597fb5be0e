"""Every signature type, made through the virtual card with RSA and EC keys, accepted by an independent
verifier (cryptography, openssl cms, pyHanko, pdfsig, xmlsec1, signxml) and rejected when tampered."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import io
import itertools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature, async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
from signxml import SignatureConfiguration, XMLVerifier
from signxml.exceptions import InvalidDigest
from signxml.exceptions import InvalidSignature as XmlInvalidSignature

from card import CardCertificate, Token
from card.crypto import hash_by_name
from card.virtual import VirtualCard
from card.virtual.source import InProcessTransport
from digisign_web.signing import formats
from digisign_web.signing.formats import FormatError, SignRequest
from digisign_web.signing.signers import CardSigner, SoftwareSigner
from digisign_web.signing.validation import KEY_USAGE
from tests.support.cli import cli_env
from tests.support.paths import ROOT
from tests.support.pdf import blank_pdf, nss_db, pdfsig

HASHES = {"SHA1": hashes.SHA1, "SHA224": hashes.SHA224, "SHA256": hashes.SHA256, "SHA384": hashes.SHA384,
          "SHA512": hashes.SHA512}
PINS = {"signature": "123456", "authentication": "1234"}
DS = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
DSIG11 = "http://www.w3.org/2009/xmldsig11#"


@dataclass
class Case:
    """One card key: a fresh PIN-carrying signer per signature, its chain, and the card (for APDU counts)."""

    card: VirtualCard
    token: Token
    role: str

    @property
    def cert(self):
        return next(c for c in self.token.certificates() if c.role == self.role)

    def signer(self) -> CardSigner:
        return CardSigner(self.token, self.cert, PINS[self.role])

    @property
    def chain(self) -> list[CardCertificate]:
        return self.token.chain(self.cert)

    @property
    def root(self) -> CardCertificate:
        return self.chain[-1]

    @property
    def algorithm(self) -> str:
        return "EC" if isinstance(self.chain[0].public_key, ec.EllipticCurvePublicKey) else "RSA"


# Every virtual profile's keys: P-384 (v4), P-256 (v3 signature key), RSA-2048 (v3 authentication key),
# RSA-3072 (v3.1 both keys), the organisation card's RSA keys (QES key local to DF.ESIGN, inline digest)
# and the dual-algorithm card's RSA QES key (its P-256 key is the v3 signature key's twin).
CASES = [("fineid-v4", "signature"), ("fineid-v3", "signature"), ("fineid-v3", "authentication"),
         ("fineid-v3.1", "signature"), ("fineid-v3.1", "authentication"), ("fineid-org", "signature"),
         ("fineid-org", "authentication"), ("fineid-v3-dual", "signature")]


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def case(request: pytest.FixtureRequest, state_dir: Path) -> Case:
    card = VirtualCard(request.param[0], state_dir)
    return Case(card, Token.open(InProcessTransport(card)), request.param[1])


@pytest.fixture
def root_pem(case: Case, tmp_path: Path) -> Path:
    path = tmp_path / "root.pem"
    path.write_text(case.root.pem)
    return path


def make(case: Case, signature_type: str, content: bytes, content_type: str = "data",
         hash_algorithm: str = "SHA256") -> formats.SignOutput:
    return formats.sign(signature_type, case.signer(), SignRequest(content, content_type, hash_algorithm))


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    tool = args[0]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (scripts/test-deps.sh installs it)", pytrace=False)
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


# --- signature, signature-plain -----------------------------------------------------------------


def crypto_verify(case: Case, hash_name: str, digest: bytes, der_or_rsa: bytes) -> None:
    public = case.chain[0].public_key
    algorithm = HASHES[hash_name]()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(der_or_rsa, digest, ec.ECDSA(utils.Prehashed(algorithm)))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(der_or_rsa, digest, padding.PKCS1v15(), utils.Prehashed(algorithm))


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA512", "SHA1"])
def test_raw_signatures(case: Case, hash_name: str) -> None:
    content = b"raw signature over these bytes"
    digest = hashlib.new(hash_name.lower(), content).digest()
    der = make(case, "signature", content, hash_algorithm=hash_name)
    plain = make(case, "signature-plain", digest, "digest", hash_name)
    public = case.chain[0].public_key
    if case.algorithm == "EC":
        assert der.signature_algorithm == f"{hash_name}withECDSA"
        assert plain.signature_algorithm == f"{hash_name}withPLAIN-ECDSA"
        utils.decode_dss_signature(der.signature)  # strict DER, as Java's SHA256withECDSA wants
        field = (public.curve.key_size + 7) // 8
        assert len(plain.signature) == 2 * field
        as_der = utils.encode_dss_signature(int.from_bytes(plain.signature[:field], "big"),
                                            int.from_bytes(plain.signature[field:], "big"))
    else:
        assert der.signature_algorithm == plain.signature_algorithm == f"{hash_name}withRSA"
        assert der.signature == plain.signature  # PKCS#1 v1.5 is deterministic: the two types coincide
        as_der = plain.signature
    crypto_verify(case, hash_name, digest, der.signature)
    crypto_verify(case, hash_name, digest, as_der)
    with pytest.raises(InvalidSignature):
        crypto_verify(case, hash_name, hashlib.new(hash_name.lower(), b"tampered").digest(), der.signature)
    tampered = flip(der.signature, len(der.signature) - 3)
    with pytest.raises((InvalidSignature, ValueError)):
        crypto_verify(case, hash_name, digest, tampered)


# --- cms, pkcs7 ------------------------------------------------------------------------------------


def signed_attribute_types(info: cms.ContentInfo) -> set[str]:
    (signer_info,) = info["content"]["signer_infos"]
    return {a["type"].native for a in signer_info["signed_attrs"]}


def pyhanko_context(case: Case) -> ValidationContext:
    return ValidationContext(trust_roots=[case.root.asn1], allow_fetching=False)


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA384"])
@pytest.mark.parametrize("signature_type", ["cms", "pkcs7"])
def test_cms_attached(case: Case, root_pem: Path, tmp_path: Path, hash_name: str, signature_type: str) -> None:
    content = b"attached CMS content \x00\xff binary too"
    out = make(case, signature_type, content, hash_algorithm=hash_name)
    info = cms.ContentInfo.load(out.signature)
    signed = info["content"]
    assert signed_attribute_types(info) == {"content_type", "message_digest", "signing_time",
                                            "signing_certificate_v2"}
    assert signed["encap_content_info"]["content"].native == content
    assert len(signed["certificates"]) == 3  # leaf, intermediate, root
    assert signed["signer_infos"][0]["digest_algorithm"]["algorithm"].native == hash_name.lower()

    sig = tmp_path / "attached.p7s"
    sig.write_bytes(out.signature)
    recovered = tmp_path / "recovered.bin"
    result = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-CAfile",
                 str(root_pem), "-purpose", "any", "-out", str(recovered))
    assert result.returncode == 0, result.stderr
    assert recovered.read_bytes() == content
    status = asyncio.run(async_validate_cms_signature(signed, validation_context=pyhanko_context(case),
                                                      key_usage_settings=KEY_USAGE))
    assert status.intact and status.valid and status.trusted

    # Tampered content inside the CMS, and a tampered signature value: both verifiers refuse.
    index = out.signature.index(content) + 3
    for bad in (flip(out.signature, index), _flip_signature_value(out.signature)):
        sig.write_bytes(bad)
        assert run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-CAfile",
                   str(root_pem), "-purpose", "any", "-out", "/dev/null").returncode != 0
        status = asyncio.run(async_validate_cms_signature(cms.ContentInfo.load(bad)["content"],
                                                          validation_context=pyhanko_context(case),
                                                          key_usage_settings=KEY_USAGE))
        assert not status.intact or not status.valid


def _flip_signature_value(der: bytes) -> bytes:
    info = cms.ContentInfo.load(der)
    value = info["content"]["signer_infos"][0]["signature"].native
    return der.replace(value, flip(value, len(value) // 2))


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA512"])
def test_cms_detached_over_digest(case: Case, root_pem: Path, tmp_path: Path, hash_name: str) -> None:
    content = b"the relying party hashed this itself"
    digest = hashlib.new(hash_name.lower(), content).digest()
    out = make(case, "cms", digest, "digest", hash_name)
    info = cms.ContentInfo.load(out.signature)
    signed = info["content"]
    assert signed["encap_content_info"]["content"].native is None  # detached
    assert signed_attribute_types(info) == {"content_type", "message_digest", "signing_time",
                                            "signing_certificate_v2"}
    attrs = {a["type"].native: a["values"][0].native for a in signed["signer_infos"][0]["signed_attrs"]}
    assert attrs["message_digest"] == digest
    sig, data = tmp_path / "detached.p7s", tmp_path / "content.bin"
    sig.write_bytes(out.signature)
    data.write_bytes(content)
    result = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-content", str(data),
                 "-CAfile", str(root_pem), "-purpose", "any", "-out", "/dev/null")
    assert result.returncode == 0, result.stderr
    status = asyncio.run(async_validate_detached_cms(content, signed, signer_validation_context=pyhanko_context(case),
                                                     key_usage_settings=KEY_USAGE))
    assert status.intact and status.valid and status.trusted
    data.write_bytes(content + b"!")
    assert run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig), "-content", str(data),
               "-CAfile", str(root_pem), "-purpose", "any", "-out", "/dev/null").returncode != 0
    status = asyncio.run(async_validate_detached_cms(content + b"!", signed,
                                                     signer_validation_context=pyhanko_context(case),
                                                     key_usage_settings=KEY_USAGE))
    assert not status.intact


# --- cms-pades inside a real PDF -------------------------------------------------------------------


def pades_via_cms_pades(case: Case, hash_name: str) -> tuple[bytes, bytes]:
    """The relying party's side: prepare the PDF, send the ByteRange digest as cms-pades, embed the CMS."""
    async def flow() -> tuple[bytes, bytes]:
        placeholder = signers.ExternalSigner(
            signing_cert=case.chain[0].asn1,
            cert_registry=None, signature_value=bytes(512))
        meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm=hash_name.lower(),
                                            subfilter=fields.SigSeedSubFilter.PADES)
        pdf_signer = signers.PdfSigner(meta, signer=placeholder)
        writer = IncrementalPdfFileWriter(io.BytesIO(blank_pdf()))
        prep, _tbs, output = await pdf_signer.async_digest_doc_for_signing(writer, bytes_reserved=16384)
        result = formats.sign("cms-pades", case.signer(), SignRequest(prep.document_digest, "digest", hash_name))
        prep.fill_with_cms(output, result.signature)
        return output.getvalue(), result.signature

    return asyncio.run(flow())


def pyhanko_pdf_status(case: Case, pdf: bytes):
    (embedded,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    return asyncio.run(async_validate_pdf_signature(embedded, signer_validation_context=pyhanko_context(case),
                                                    key_usage_settings=KEY_USAGE))


@pytest.mark.parametrize("hash_name", ["SHA256", "SHA384"])
def test_cms_pades_embedded_in_pdf(case: Case, root_pem: Path, tmp_path: Path, hash_name: str) -> None:
    pdf, cms_bytes = pades_via_cms_pades(case, hash_name)
    info = cms.ContentInfo.load(cms_bytes)
    assert signed_attribute_types(info) == {"content_type", "message_digest", "signing_certificate_v2"}
    assert info["content"]["encap_content_info"]["content"].native is None
    assert len(info["content"]["signer_infos"]) == 1
    assert "unsigned_attrs" not in info["content"]["signer_infos"][0] or \
        not info["content"]["signer_infos"][0]["unsigned_attrs"].native

    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    nss = nss_db(root_pem, tmp_path)
    report = pdfsig(nss, path)
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Certificate Validation: Certificate is Trusted." in report, report
    status = pyhanko_pdf_status(case, pdf)
    assert status.intact and status.valid and status.trusted and status.bottom_line

    # A changed byte inside the signed range, and a changed signature value: both verifiers refuse.
    in_range = pdf.index(b"/MediaBox") + 2
    value = info["content"]["signer_infos"][0]["signature"].native
    at = pdf.lower().index(value.hex().encode()) + 10  # a hex digit of the signature value in /Contents
    other = b"1" if pdf[at:at + 1] == b"0" else b"0"
    for bad in (flip(pdf, in_range), pdf[:at] + other + pdf[at + 1:]):
        path.write_bytes(bad)
        assert "Signature is Valid." not in pdfsig(nss, path)
        try:
            bad_status = pyhanko_pdf_status(case, bad)
        except Exception:
            continue  # pyHanko refusing to even parse the signature is a rejection too
        assert not (bad_status.intact and bad_status.valid)


# --- xml ---------------------------------------------------------------------------------------------


def signxml_verify(data: bytes, anchor: CardCertificate) -> None:
    """signxml's verdict on an XMLDSig signature whose X509Data chain must lead to ``anchor``.

    signxml reads X509Certificate with cryptography, which refuses the non-strict encodings of real cards
    (and so of the virtual card). So the chain is checked here on the certificates as carried (leaf first,
    each signed by the next, the last one ``anchor`` byte for byte, all valid now), and signxml checks the
    signature and every reference over the leaf's key, handed to it as a DEREncodedKeyValue in place of
    the X509Data (KeyInfo is outside what the signature covers). Raises as signxml does.
    """
    root = etree.fromstring(data)
    key_info = root.find("ds:KeyInfo", DS)
    certs = [CardCertificate.load(base64.b64decode(t.text or ""))
             for t in key_info.iterfind("ds:X509Data/ds:X509Certificate", DS)]
    assert certs and certs[-1] == anchor
    now = dt.datetime.now(dt.UTC)
    for child, parent in itertools.pairwise(certs):
        assert child.signed_by(parent), f"{child.subject} is not signed by {parent.subject}"
    assert all(c.not_before <= now <= c.not_after for c in certs)
    for element in list(key_info):
        key_info.remove(element)
    spki = certs[0].public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    etree.SubElement(key_info, f"{{{DSIG11}}}DEREncodedKeyValue").text = base64.b64encode(spki).decode()
    try:
        verified = XMLVerifier().verify(root, expect_config=SignatureConfiguration(require_x509=False))
    except InvalidSignature as exc:  # signxml wraps this only on its X.509 path: do as it does there
        raise XmlInvalidSignature(f"Signature verification failed: {exc}") from exc
    assert verified.signed_xml is not None



LARGE_DOCUMENT = bytes(range(256)) * 6144  # 1.5 MiB, not XML: its base64 text bypasses signxml (xml.SPLICE_FROM)


@pytest.mark.parametrize(("hash_name", "content"), [("SHA256", b"<order id='7'><sum>12.50</sum></order>"),
                                                     ("SHA512", b"\x00\x01 not XML at all <"),
                                                     ("SHA384", LARGE_DOCUMENT)])
def test_xml_enveloping(case: Case, root_pem: Path, tmp_path: Path, hash_name: str, content: bytes,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    from digisign_web.signing import xml

    spliced = []
    original = xml._base64_document
    monkeypatch.setattr(xml, "_base64_document", lambda *args: spliced.append(original(*args)) or spliced[-1])
    out = make(case, "xml", content, hash_algorithm=hash_name)
    # The large document took the splicing path, and it was proven against signxml's own digests, not skipped.
    assert [r is not None for r in spliced] == ([True] if content is LARGE_DOCUMENT else [])
    root = etree.fromstring(out.signature)
    assert root.tag == "{http://www.w3.org/2000/09/xmldsig#}Signature"
    (obj,) = root.findall("ds:Object", DS)
    (reference,) = root.findall("ds:SignedInfo/ds:Reference", DS)
    assert reference.get("URI") == f"#{obj.get('Id')}"
    if content.startswith(b"<"):
        assert obj.get("Encoding") is None and obj[0].tag == "order"  # embedded as XML
    else:
        assert obj.get("Encoding") == "http://www.w3.org/2000/09/xmldsig#base64"
        assert base64.b64decode(obj.text) == content
    assert len(root.findall(".//ds:X509Certificate", DS)) == 3
    method = root.find("ds:SignedInfo/ds:SignatureMethod", DS).get("Algorithm")
    assert method.endswith(f"{'ecdsa' if case.algorithm == 'EC' else 'rsa'}-{hash_name.lower()}")

    path = tmp_path / "signed.xml"
    path.write_bytes(out.signature)
    result = run("xmlsec1", "--verify", "--trusted-pem", str(root_pem), str(path))
    assert result.returncode == 0 and "OK" in result.stderr + result.stdout, result.stderr
    assert [CardCertificate.load(base64.b64decode(t.text)) for t in root.iterfind(".//ds:X509Certificate", DS)] \
        == case.chain  # the card's exact bytes
    signxml_verify(out.signature, case.root)

    value = root.find("ds:SignatureValue", DS)
    tampered_value = etree.fromstring(out.signature)
    raw = base64.b64decode(value.text)
    tampered_value.find("ds:SignatureValue", DS).text = base64.b64encode(flip(raw, 5)).decode()
    tampered_payload = etree.fromstring(out.signature)
    payload = tampered_payload.find("ds:Object", DS)
    if len(payload):
        payload[0].find("sum").text = "99.50"
    else:
        payload.text = base64.b64encode(content + b"!").decode()
    for bad in (tampered_value, tampered_payload):
        data = etree.tostring(bad)
        path.write_bytes(data)
        assert run("xmlsec1", "--verify", "--trusted-pem", str(root_pem), str(path)).returncode != 0
        with pytest.raises((XmlInvalidSignature, InvalidDigest)):
            signxml_verify(data, case.root)


# --- the CMS builder against pyHanko, which built these types before -------------------------------

SIGNING_TIME = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
CMS_SHAPES = [("cms", "data", "SHA256", 40), ("cms", "data", "SHA512", 70_000), ("pkcs7", "digest", "SHA384", 0),
              ("cms-pades", "digest", "SHA256", 0)]


def pyhanko_cms(chain: list[CardCertificate], signature_type: str, content: bytes, hash_name: str,
                signature: bytes) -> bytes:
    """What the former pyHanko path made (same calls and settings), at SIGNING_TIME and with ``signature``."""
    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    signer = signers.ExternalSigner(signing_cert=chain[0].asn1, signature_value=signature,
                                    cert_registry=SimpleCertificateStore.from_certs([c.asn1 for c in chain[1:]]))
    md, when = hash_name.lower(), PdfCMSSignedAttributes(signing_time=SIGNING_TIME)
    if signature_type == "cms-pades":
        made = signer.async_sign(content, md, use_pades=True)
    elif len(content) == hash_by_name(hash_name).size:
        made = signer.async_sign(content, md, use_pades=True, is_pdf_sig=False, signed_attr_settings=when)
    else:
        made = signer.async_sign_general_data(content, md, detached=False, use_cades=True, signed_attr_settings=when)
    return asyncio.run(made).dump()


def card_answer(chain: list[CardCertificate]) -> tuple[bytes, bytes]:
    """A signature as the card returns it (RSA bytes, ECDSA r||s) and as CMS carries it (ECDSA as DER)."""
    leaf = chain[0]
    if leaf.key_algorithm == "EC":
        field = (leaf.key_size + 7) // 8
        raw = bytes(range(1, 2 * field + 1))
        return raw, utils.encode_dss_signature(int.from_bytes(raw[:field], "big"), int.from_bytes(raw[field:], "big"))
    raw = b"\x5a" * (leaf.key_size // 8)
    return raw, raw


def cms_both_ways(monkeypatch: pytest.MonkeyPatch, chain: list[CardCertificate], signature_type: str,
                  content_type: str, hash_name: str, size: int) -> tuple[bytes, bytes, bytes]:
    """(pyHanko's bytes, ours, the content) for one request, with one signing time and one signature value."""
    monkeypatch.setattr(formats, "_now", lambda: SIGNING_TIME)
    data = bytes(i % 251 for i in range(size))
    content = hashlib.new(hash_name.lower(), data).digest() if content_type == "digest" else data
    raw, der = card_answer(chain)
    pending = formats.prepare(signature_type, SignRequest(content, content_type, hash_name), chain)
    ours = pending.finish(raw).signature
    return pyhanko_cms(chain, signature_type, content, hash_name, der), ours, data


def signed_attribute_objects(printed: str) -> list[str]:
    """The ``object:`` lines of the signedAttrs block in ``openssl cms -cmsout -print``."""
    block = printed.split("signedAttrs:", 1)[1].split("signatureAlgorithm:", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("object:")]


@pytest.mark.parametrize(("signature_type", "content_type", "hash_name", "size"), CMS_SHAPES,
                         ids=lambda v: str(v))
def test_cms_is_what_pyhanko_made(case: Case, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, signature_type: str,
                                  content_type: str, hash_name: str, size: int) -> None:
    """Same signing time, same signature value: the same bytes (structure, attributes and their order, OIDs
    and parameters, sid, certificate order, signing-certificate-v2), so relying parties see no change.

    One difference is allowed, and it is pyHanko's fault: for some certificates it embedded a re-encoded copy of
    the leaf (asn1crypto dropped BasicConstraints' explicit ``cA FALSE``), not the card's bytes (F1), so the
    certificate's own signature and the signing-certificate-v2 hash no longer matched it. Ours are always the
    card's bytes; then everything but the certificates must still be the same, byte for byte."""
    before, after, _ = cms_both_ways(monkeypatch, case.chain, signature_type, content_type, hash_name, size)
    ours, theirs = (cms.ContentInfo.load(der)["content"] for der in (after, before))
    assert [c.chosen.dump() for c in ours["certificates"]] == sorted({c.der for c in case.chain})
    if after != before:
        assert sorted(c.chosen.serial_number for c in theirs["certificates"]) == \
            sorted(c.serial_number for c in case.chain)
        for name in ("version", "digest_algorithms", "encap_content_info", "signer_infos"):
            assert ours[name].dump() == theirs[name].dump(), name
    printed = []
    for name, der in (("before", before), ("after", after)):
        (tmp_path / name).write_bytes(der)
        result = run("openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
        printed.append(result.stdout)
    expected = ["object: contentType (1.2.840.113549.1.9.3)", "object: signingTime (1.2.840.113549.1.9.5)",
                "object: messageDigest (1.2.840.113549.1.9.4)",
                "object: id-smime-aa-signingCertificateV2 (1.2.840.113549.1.9.16.2.47)"]
    if signature_type == "cms-pades":
        expected.remove("object: signingTime (1.2.840.113549.1.9.5)")
    assert signed_attribute_objects(printed[0]) == signed_attribute_objects(printed[1]) == expected
    assert printed[0].split("signerInfos:")[1] == printed[1].split("signerInfos:")[1]


@pytest.mark.parametrize("recording", ["fineid-v3-2020", "fineid-v4-2023"])
def test_cms_carries_real_cards_certificates_as_they_are(monkeypatch: pytest.MonkeyPatch, recording: str) -> None:
    """Real cards' certificates are not strict DER (F1): they go into the SignedData byte for byte, and the
    signing-certificate-v2 hash is over those bytes, as pyHanko had it."""
    from tests.support.recordings import recorded_certificates

    for der in recorded_certificates(recording).values():
        chain = [CardCertificate.load(der)]
        before, after, _ = cms_both_ways(monkeypatch, chain, "cms", "data", "SHA256", 100)
        assert after == before
        (carried,) = cms.ContentInfo.load(after)["content"]["certificates"]
        assert carried.chosen.dump() == der
        attrs = {a["type"].native: a["values"][0] for a in cms.ContentInfo.load(after)["content"]["signer_infos"][0]
                 ["signed_attrs"]}
        assert attrs["signing_certificate_v2"]["certs"][0]["cert_hash"].native == hashlib.sha256(der).digest()


def test_big_attached_cms_verifies(tmp_path: Path, state_dir: Path) -> None:
    """Long-form lengths (a content over 64 KiB) through openssl, with a software key."""
    ident = VirtualCard("fineid-v3", state_dir).identity
    signer = SoftwareSigner(ident.sign.key, [ident.sign.cert, ident.ca, ident.root])
    content = bytes(i % 253 for i in range(300_000))
    out = formats.sign("cms", signer, SignRequest(content))
    (tmp_path / "big.p7s").write_bytes(out.signature)
    (tmp_path / "root.pem").write_text(ident.root.pem)
    result = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "big.p7s"),
                 "-CAfile", str(tmp_path / "root.pem"), "-purpose", "any", "-out", str(tmp_path / "out.bin"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.bin").read_bytes() == content


# --- two phases: everything but the card on the caller's side, the card in one hop ------------------


@pytest.mark.parametrize("signature_type", ["signature", "signature-plain", "cms", "cms-pades", "xml"])
def test_prepare_and_finish_around_one_card_operation(state_dir: Path, tmp_path: Path, signature_type: str) -> None:
    """What the service does: prepare (no card), Token.sign_digest (VERIFY, MSE, PSO:HASH, PSO:CDS), finish
    (no card); the result verifies."""
    card = VirtualCard("fineid-v4", state_dir)
    token = Token.open(InProcessTransport(card))
    cert = next(c for c in token.certificates() if c.role == "signature")
    chain = token.chain(cert)
    content_type = "digest" if signature_type == "cms-pades" else "data"
    content = hashlib.sha384(b"two phases").digest() if content_type == "digest" else b"<a>two phases</a>"
    card.stats.reset()
    pending = formats.prepare(signature_type, SignRequest(content, content_type, "SHA384"), chain, "EC")
    assert card.stats.apdus == 0
    assert (pending.hash_algorithm, pending.key_algorithm, pending.pss) == ("SHA384", "EC", False)
    raw = token.sign_digest(cert, pending.hash_algorithm, pending.digest, pin="123456")
    assert dict(card.stats.by_command) == {"VERIFY": 1, "MSE": 1, "PSO": 2}
    out = pending.finish(raw)
    assert card.stats.apdus == 4
    (tmp_path / "root.pem").write_text(chain[-1].pem)
    public = chain[0].public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    if signature_type == "signature":
        public.verify(out.signature, hashlib.sha384(content).digest(), ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    elif signature_type == "signature-plain":
        assert out.signature == raw
    elif signature_type == "xml":
        (tmp_path / "s.xml").write_bytes(out.signature)
        result = run("xmlsec1", "--verify", "--trusted-pem", str(tmp_path / "root.pem"), str(tmp_path / "s.xml"))
        assert result.returncode == 0, result.stderr
    elif signature_type == "cms":
        (tmp_path / "s.p7s").write_bytes(out.signature)
        result = run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "s.p7s"),
                     "-CAfile", str(tmp_path / "root.pem"), "-purpose", "any", "-out", str(tmp_path / "c"))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "c").read_bytes() == content
    else:  # over a PDF's digest (test_cms_pades_embedded_in_pdf has the whole PDF): the attributes verify
        (signer_info,) = cms.ContentInfo.load(out.signature)["content"]["signer_infos"]
        attrs = {a["type"].native: a["values"][0].native for a in signer_info["signed_attrs"]}
        assert attrs["message_digest"] == content
        as_set = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        public.verify(signer_info["signature"].native, as_set, ec.ECDSA(hashes.SHA384()))


def test_a_given_digest_is_used_not_recomputed(state_dir: Path) -> None:
    """The service hashes a (possibly 100 MiB) document once for its dialog and hands the digest on."""
    ident = VirtualCard("fineid-v3", state_dir).identity
    chain = [ident.sign.cert, ident.ca, ident.root]
    content = b"a document the caller has hashed already"
    request = SignRequest(content).hashed()
    assert request.digest == hashlib.sha256(content).digest() and request.content is content
    assert request.hashed() is request
    marker = hashlib.sha256(b"not the content").digest()  # proves which digest is used
    for signature_type in ("signature", "cms"):
        pending = formats.prepare(signature_type, SignRequest(content, digest=marker), chain)
        if signature_type == "signature":
            assert pending.digest == marker
        else:
            der = pending.finish(bytes(64)).signature
            assert marker in der and hashlib.sha256(content).digest() not in der
    with pytest.raises(ValueError, match="digest has 32 bytes"):
        formats.prepare("cms", SignRequest(content, digest=b"short"), chain)


def test_rsa_pss_only_for_raw_rsa(state_dir: Path) -> None:
    """The CLI's --rsa-pss: a raw RSA-PSS signature (salt as long as the hash); refused elsewhere, before the card."""
    card = VirtualCard("fineid-v3.1", state_dir)
    token = Token.open(InProcessTransport(card))
    cert = next(c for c in token.certificates() if c.role == "signature")
    content = b"pss please"
    out = formats.sign("signature", CardSigner(token, cert, "123456"), SignRequest(content), pss=True)
    assert out.signature_algorithm == "SHA256withRSAandMGF1"
    public = cert.certificate.public_key
    public.verify(out.signature, content, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    ident = card.identity
    software = SoftwareSigner(ident.sign.key, [ident.sign.cert, ident.ca, ident.root])
    again = formats.sign("signature-plain", software, SignRequest(content), pss=True)
    public.verify(again.signature, content, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    before = card.stats.apdus
    for signature_type in ("cms", "xml"):
        with pytest.raises(FormatError) as info:
            formats.sign(signature_type, CardSigner(token, cert, "123456"), SignRequest(content), pss=True)
        assert info.value.code == 501
    v4 = VirtualCard("fineid-v4", state_dir).identity
    with pytest.raises(FormatError):
        formats.prepare("signature", SignRequest(content), [v4.sign.cert, v4.ca, v4.root], pss=True)
    assert card.stats.apdus == before


# --- refusals, costs and the software signer ------------------------------------------------------


@pytest.mark.parametrize(("signature_type", "content_type", "hash_name", "code"), [
    ("cms", "data", "SHA1", 501), ("pkcs7", "data", "SHA1", 501), ("cms-pades", "digest", "SHA1", 501),
    ("xml", "data", "SHA1", 501), ("xml", "digest", "SHA256", 501), ("cms-pades", "data", "SHA256", 501),
    ("signature", "digest", "SHA384", 400),  # 32 bytes are not a SHA-384 digest
    ("cms", "text", "SHA256", 400), ("cms", "data", "MD5", 400), ("smime", "data", "SHA256", 400),
])
def test_refusals_cost_no_card_work(state_dir: Path, signature_type: str, content_type: str, hash_name: str,
                                    code: int) -> None:
    card = VirtualCard("fineid-v4", state_dir)
    token = Token.open(InProcessTransport(card))
    cert = next(c for c in token.certificates() if c.role == "signature")
    before = card.stats.apdus
    content = hashlib.sha256(b"x").digest() if content_type == "digest" else b"x"
    with pytest.raises(FormatError) as info:
        formats.sign(signature_type, CardSigner(token, cert, "123456"), SignRequest(content, content_type, hash_name))
    assert info.value.code == code
    assert card.stats.apdus == before  # refused before the card: the PIN was not spent


@pytest.mark.parametrize("signature_type", ["signature", "cms", "cms-pades", "xml"])
def test_one_card_signature_per_request(state_dir: Path, signature_type: str) -> None:
    card = VirtualCard("fineid-v4", state_dir)
    token = Token.open(InProcessTransport(card))
    cert = next(c for c in token.certificates() if c.role == "signature")
    token.certificates()
    card.stats.reset()
    content_type = "digest" if signature_type == "cms-pades" else "data"
    content = hashlib.sha256(b"x").digest() if content_type == "digest" else b"<a/>"
    formats.sign(signature_type, CardSigner(token, cert, "123456"), SignRequest(content, content_type))
    # One VERIFY of PIN2 and one signature: MSE, PSO:HASH, PSO:CDS. Nothing else.
    assert dict(card.stats.by_command) == {"VERIFY": 1, "MSE": 1, "PSO": 2}


def test_software_signer_has_the_same_interface(state_dir: Path, tmp_path: Path) -> None:
    card = VirtualCard("fineid-v3", state_dir)
    ident = card.identity
    signer = SoftwareSigner(ident.sign.key, [ident.sign.cert, ident.ca, ident.root])
    out = formats.sign("cms", signer, SignRequest(b"software"))
    (tmp_path / "s.p7s").write_bytes(out.signature)
    (tmp_path / "root.pem").write_text(ident.root.pem)
    assert run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "s.p7s"), "-CAfile",
               str(tmp_path / "root.pem"), "-purpose", "any", "-out", "/dev/null").returncode == 0
    xml = formats.sign("xml", signer, SignRequest(b"<doc/>", "data", "SHA384"))
    signxml_verify(xml.signature, ident.root)


# --- the CLI ---------------------------------------------------------------------------------------


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "digisign_web", *args], cwd=ROOT, env=cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.process  # a real `digisign-web` CLI process: exit codes, stdin PIN, output files
def test_cli_sign_and_verify(state_dir: Path, tmp_path: Path) -> None:
    pdf, signed = tmp_path / "in.pdf", tmp_path / "out.pdf"
    pdf.write_bytes(blank_pdf())
    common = ["--virtual-card", "fineid-v3", "--state-dir", str(state_dir), "--pin-stdin"]
    result = cli("sign", "--type", "pades", "--in", str(pdf), "--out", str(signed), *common, stdin="123456\n")
    assert result.returncode == 0, result.stderr
    root = state_dir / "virtual-card" / "pki" / "root.pem"
    report = cli("verify", str(signed), "--trust", str(root))
    assert report.returncode == 0, report.stdout + report.stderr
    assert "ETSI.CAdES.detached" in report.stdout and "trusted" in report.stdout
    nss = nss_db(root, tmp_path)
    assert "Signature is Valid." in pdfsig(nss, signed)
    signed.write_bytes(flip(signed.read_bytes(), signed.read_bytes().index(b"/MediaBox") + 2))
    assert cli("verify", str(signed), "--trust", str(root)).returncode == 1

    data, p7s = tmp_path / "data.txt", tmp_path / "data.p7s"
    data.write_bytes(b"hello")
    result = cli("sign", "--type", "cms", "--key", "auth", "--in", str(data), "--out", str(p7s), *common,
                 stdin="1234\n")
    assert result.returncode == 0, result.stderr
    assert cli("verify", str(p7s), "--trust", str(root)).returncode == 0
    wrong = cli("sign", "--type", "xml", "--in", str(data), "--out", str(tmp_path / "x.xml"), *common,
                stdin="000000\n")
    assert wrong.returncode == 3 and "tries left" in wrong.stderr
    assert not (tmp_path / "x.xml").exists()


@pytest.mark.process  # the verify CLI as a process
def test_verify_cli_needs_detached_content(state_dir: Path, tmp_path: Path) -> None:
    card = VirtualCard("fineid-v4", state_dir)
    token = Token.open(InProcessTransport(card))
    cert = next(c for c in token.certificates() if c.role == "signature")
    digest = hashlib.sha256(b"abc").digest()
    out = formats.sign("cms", CardSigner(token, cert, "123456"), SignRequest(digest, "digest"))
    p7s = tmp_path / "d.p7s"
    p7s.write_bytes(out.signature)
    assert cli("verify", str(p7s)).returncode == 2
    (tmp_path / "abc").write_bytes(b"abc")
    ok = cli("verify", str(p7s), "--detached", str(tmp_path / "abc"))
    assert ok.returncode == 0 and "not checked" in ok.stdout  # no --trust: integrity only, and it says so


