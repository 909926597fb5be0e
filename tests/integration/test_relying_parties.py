"""Three real relying-party flows against a real `digisign-web serve` process with RSA virtual cards, each
checked exactly as that client checks the answer (Java-style SHA256withRSA, PKCS#1 v1.5, with chain[0]'s
key; the chain leaf → … → self-issued root, each certificate signed by the next):

1. ETP 2025 (energy certificates): ``cms-pades`` over the SHA-256 of a PDF byte range prepared with pyHanko;
   the CMS is embedded into the PDF and the result is checked with poppler's ``pdfsig``, and the signer's
   signature value over the signed attributes is checked as a Java client would.
2. The older ETP client: a raw ``signature`` over the DER SET of CMS signed attributes the client built.
3. puumerkki authentication: the authentication key signs ``https://host`` LF hmac LF ms LF payload.

Each flow has a negative test that would catch a regression in the rule it relies on.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import itertools
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers

from card import CardCertificate
from tests.support.net import free_port
from tests.support.pdf import blank_pdf
from tests.support.servers import RunningServer, start_server, stop

RSA_SIGNATURE_PROFILES = ["fineid-v3.1", "fineid-org", "fineid-v3-dual"]  # an RSA non-repudiation key
RSA_AUTH_PROFILES = ["fineid-v3", "fineid-v3.1", "fineid-org"]  # an RSA authentication key
ETP_ORIGIN = "https://www.energiatodistusrekisteri.fi"
PUUMERKKI_ORIGIN = "https://puumerkki.example"
RSA_SELECTOR = {"keyusages": ["nonrepudiation"], "keyalgorithms": ["rsa"]}


@pytest.fixture(scope="module")
def state_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One directory per profile for the module, so a restarted server reuses its card's keys."""
    return {}


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, state_roots: dict[str, Path],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A `serve` process with the virtual card ``request.param`` and the automatic PIN dialog. Module-scoped
    and parametrised indirectly, so pytest runs the tests of one profile together on one process."""
    profile: str = request.param
    if profile not in state_roots:
        state_roots[profile] = tmp_path_factory.mktemp(profile.replace(".", "_"))
    running = start_server(state_roots[profile], "--virtual-card", profile, "--dialog", "auto", port=free_port())
    yield running
    stop(running)


# --- what the clients check ----------------------------------------------------------------------


def check_chain(answer: dict) -> list[CardCertificate]:
    """≥ 3 certificates, each signed by the next, the last self-issued; an RSA leaf."""
    chain = [CardCertificate.load(base64.b64decode(c)) for c in answer["chain"]]
    assert len(chain) >= 3, [c.subject.rfc4514() for c in chain]
    for i, (cert, issuer) in enumerate(itertools.pairwise(chain)):
        assert cert.signed_by(issuer), f"chain[{i}] {cert.subject.rfc4514()} is not signed by chain[{i + 1}]"
    assert chain[-1].self_issued, f"the last certificate {chain[-1].subject.rfc4514()} is not a root"
    assert isinstance(chain[0].public_key, rsa.RSAPublicKey), chain[0].key_description
    return chain


def verify_sha256_with_rsa(leaf: CardCertificate, signature: bytes, message: bytes) -> None:
    """Java's ``Signature.getInstance("SHA256withRSA")``: PKCS#1 v1.5 over SHA-256 of ``message``."""
    public = leaf.public_key
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def check_ok(answer: dict) -> list[CardCertificate]:
    assert answer["status"] == "ok", answer
    assert answer["reasonCode"] == 200, answer
    assert answer["signatureAlgorithm"] == "SHA256withRSA", answer
    return check_chain(answer)


def check_refused(answer: dict, code: int, words: str) -> None:
    assert answer["status"] == "failed", answer
    assert answer["reasonCode"] == code, answer
    assert words in answer["reasonText"], answer
    assert "signature" not in answer and "chain" not in answer, answer


# --- 1. ETP 2025: cms-pades into a PDF ------------------------------------------------------------



async def prepare_pdf() -> tuple[signers.PdfTBSDocument, io.BytesIO, bytes]:
    """What the ETP server does before calling the card: a signature field with a /Contents placeholder
    (as digisign_web/playground.py's PdfFlow.prepare). Returns the prepared digest, the output and the
    ByteRange digest to send."""
    meta = signers.PdfSignatureMetadata(field_name="Signature1", md_algorithm="sha256",
                                        subfilter=fields.SigSeedSubFilter.PADES)
    placeholder = signers.ExternalSigner(signing_cert=None, cert_registry=None, signature_value=bytes(512))
    pdf_signer = signers.PdfSigner(meta, signer=placeholder)
    writer = IncrementalPdfFileWriter(io.BytesIO(blank_pdf()))
    prepared, _tbs, output = await pdf_signer.async_digest_doc_for_signing(writer, bytes_reserved=24576)
    return prepared, output, prepared.document_digest


def pdfsig(pdf: Path, home: Path) -> str:
    """poppler's verifier; HOME points at an empty directory so no user NSS database is read or made."""
    home.mkdir(exist_ok=True)
    result = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HOME": str(home)})
    return result.stdout + result.stderr  # the exit code reflects trust too: read the text


def etp2025_request(version: str, digest: bytes) -> dict:
    return {"version": version, "selector": dict(RSA_SELECTOR), "contentType": "digest", "hashAlgorithm": "SHA256",
            "signatureType": "cms-pades", "content": base64.b64encode(digest).decode()}


@pytest.mark.parametrize("server", RSA_SIGNATURE_PROFILES, indirect=True)
async def test_etp2025_cms_pades_into_pdf(server: RunningServer, tmp_path: Path) -> None:
    version = (await server.version())["version"]
    prepared, output, digest = await prepare_pdf()
    assert len(digest) == 32
    answer = await server.post(etp2025_request(version, digest), origin=ETP_ORIGIN)
    chain = check_ok(answer)
    assert answer["signatureType"] == "cms-pades"
    assert "non_repudiation" in chain[0].key_usage, chain[0].key_usage
    cms_der = base64.b64decode(answer["signature"])

    # The Java client's own check: the signer's value over the signed attributes (SET OF, tag 0x31).
    info = cms.ContentInfo.load(cms_der)
    assert info["content_type"].native == "signed_data"
    signed_data = info["content"]
    assert signed_data["encap_content_info"]["content"].native is None  # detached
    (signer,) = signed_data["signer_infos"]
    sid = signer["sid"].chosen
    assert sid["serial_number"].native == chain[0].serial_number
    assert sid["issuer"].dump() == chain[0].asn1.issuer.dump()
    assert signer["digest_algorithm"]["algorithm"].native == "sha256"
    assert signer["signature_algorithm"].signature_algo == "rsassa_pkcs1v15"
    attributes = {a["type"].native: a["values"] for a in signer["signed_attrs"]}
    assert attributes["content_type"][0].native == "data"
    assert attributes["message_digest"][0].native == digest
    signed_attrs = signer["signed_attrs"].dump()
    assert signed_attrs[0] == 0xA0  # [0] IMPLICIT in the SignerInfo; signed as a universal SET OF
    verify_sha256_with_rsa(chain[0], signer["signature"].native, b"\x31" + signed_attrs[1:])

    # Embed the CMS and let an independent verifier check the PDF.
    prepared.fill_with_cms(output, cms_der)
    path = tmp_path / "signed.pdf"
    path.write_bytes(output.getvalue())
    report = pdfsig(path, tmp_path / "home")
    assert "Signature Type: ETSI.CAdES.detached" in report, report
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Total document signed" in report, report
    # pdfsig really checks: one changed byte inside the signed range is a digest mismatch.
    tampered = bytearray(output.getvalue())
    tampered[tampered.index(b"/MediaBox") + 2] ^= 1
    path.write_bytes(bytes(tampered))
    assert "Signature is Valid." not in pdfsig(path, tmp_path / "home")


@pytest.mark.parametrize("server", ["fineid-v4"], indirect=True)
async def test_etp2025_strict_rsa_on_an_ec_card_fails(server: RunningServer) -> None:
    """An EC-only card: with strictKeyPolicy (top level) the server must refuse rather than hand the RSA-only
    client an ECDSA CMS it cannot use."""
    version = (await server.version())["version"]
    request = {**etp2025_request(version, hashlib.sha256(b"%PDF byte range").digest()), "strictKeyPolicy": True}
    answer = await server.post(request, origin=ETP_ORIGIN)
    check_refused(answer, 404, "keyalgorithms")


# --- 2. the older ETP client: raw signature over signed attributes it built ----------------------


def signed_attributes(document: bytes) -> bytes:
    """The DER SET OF signed attributes the client computes before calling (content-type, signing-time,
    message-digest); it later puts the signature value into its own SignerInfo."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    attributes = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": now})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(document).digest()]}),
    ])
    der = attributes.dump()
    assert der[0] == 0x31
    return der


def old_etp_request(content: bytes, selector: dict) -> dict:
    return {"version": "1.1", "signatureType": "signature", "contentType": "data", "hashAlgorithm": "SHA256",
            "selector": selector, "content": base64.b64encode(content).decode()}


@pytest.mark.parametrize("server", RSA_SIGNATURE_PROFILES, indirect=True)
async def test_old_etp_signature_over_signed_attributes(server: RunningServer) -> None:
    attributes = signed_attributes(b"%PDF-1.7 an energy certificate " + secrets.token_bytes(16))
    answer = await server.post(old_etp_request(attributes, dict(RSA_SELECTOR)), origin=ETP_ORIGIN)
    chain = check_ok(answer)
    assert answer["signatureType"] == "signature"
    assert "non_repudiation" in chain[0].key_usage, chain[0].key_usage
    signature = base64.b64decode(answer["signature"])
    assert len(signature) == chain[0].key_size // 8
    verify_sha256_with_rsa(chain[0], signature, attributes)


@pytest.mark.parametrize("server", ["fineid-v3"], indirect=True)
async def test_old_etp_strict_rsa_never_takes_the_rsa_authentication_key(server: RunningServer) -> None:
    """FINEID v3.0: RSA authentication key, P-256 signature key. strictKeyPolicy inside the selector: no
    RSA non-repudiation key, so a failure; neither the EC key nor the RSA authentication key may sign."""
    selector = {**RSA_SELECTOR, "strictKeyPolicy": True}
    answer = await server.post(old_etp_request(signed_attributes(b"document"), selector), origin=ETP_ORIGIN)
    check_refused(answer, 404, "keyalgorithms")


# --- 3. puumerkki authentication ------------------------------------------------------------------

PUUMERKKI_SECRET = secrets.token_bytes(32)


def puumerkki_challenge(host: str, payload: str) -> str:
    """The puumerkki server's challenge: origin LF hmac LF ms LF payload, the HMAC over the rest."""
    ms = str(int(time.time() * 1000))
    mac = hmac.new(PUUMERKKI_SECRET, f"{ms}\n{payload}".encode(), hashlib.sha256).hexdigest()
    return f"https://{host}\n{mac}\n{ms}\n{payload}"


def puumerkki_accepts(origin: str, text: str) -> bool:
    """The puumerkki server's check of the signed text (the signature is checked separately)."""
    site, mac, ms, payload = text.split("\n", 3)
    expected = hmac.new(PUUMERKKI_SECRET, f"{ms}\n{payload}".encode(), hashlib.sha256).hexdigest()
    return site == origin and hmac.compare_digest(mac, expected) and abs(time.time() * 1000 - int(ms)) < 60_000


def puumerkki_request(text: str) -> dict:
    return {"version": "1.1", "signatureType": "signature", "contentType": "data", "hashAlgorithm": "SHA256",
            "selector": {"keyusages": ["digitalsignature"]}, "content": base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize("server", RSA_AUTH_PROFILES, indirect=True)
async def test_puumerkki_authentication(server: RunningServer) -> None:
    text = puumerkki_challenge("puumerkki.example", "login")
    assert text.startswith(PUUMERKKI_ORIGIN + "\n") and len(text.split("\n")[1]) == 64
    answer = await server.post(puumerkki_request(text), origin=PUUMERKKI_ORIGIN)
    chain = check_ok(answer)
    assert "digital_signature" in chain[0].key_usage, chain[0].key_usage
    verify_sha256_with_rsa(chain[0], base64.b64decode(answer["signature"]), text.encode())
    assert puumerkki_accepts(PUUMERKKI_ORIGIN, text)


@pytest.mark.parametrize("server", ["fineid-v3"], indirect=True)
@pytest.mark.parametrize(("origin", "text"), [
    # Another site replays puumerkki's challenge through the visitor's card.
    ("https://evil.example", puumerkki_challenge("puumerkki.example", "login")),
    # The challenge's origin without its separator: hex continues a host name, so this is not bound.
    (PUUMERKKI_ORIGIN, puumerkki_challenge("puumerkki.example", "login").replace("\n", "", 1)),
], ids=["other-origin", "no-separator"])
async def test_puumerkki_content_not_bound_to_the_origin_is_refused(server: RunningServer, origin: str,
                                                                    text: str) -> None:
    answer = await server.post(puumerkki_request(text), origin=origin)
    check_refused(answer, 403, "authentication key may not sign")
