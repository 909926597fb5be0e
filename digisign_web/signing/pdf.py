"""PDF signatures (PAdES-B-B, ``/SubFilter ETSI.CAdES.detached``, no timestamp) with pyHanko.

Two flows: :func:`sign_pdf` signs a whole PDF with a card signer (``digisign-web sign --type pades``), and
:func:`prepare` + :meth:`PreparedPdf.embed` is what a relying party does around SCS ``cms-pades``: prepare
the incremental update, hand out the ByteRange digest, then embed the CMS that came back. pyHanko is imported
only here, inside the functions, so commands that sign no PDF do not pay for it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

RESERVED_BYTES = 24576  # room for the CMS in the prepared file: a long chain of RSA-4096 certificates fits


class PdfError(ValueError):
    """The bytes are not a PDF that pyHanko can sign."""


def signature_count(pdf: bytes) -> int:
    """How many signatures the PDF already has; raises :class:`PdfError` for what cannot be signed.

    Callers check this before asking for a PIN, so a bad file is refused before the card is used."""
    from pyhanko.pdf_utils.misc import PdfError as PyhankoPdfError
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        return len(PdfFileReader(io.BytesIO(pdf)).embedded_signatures)
    except (PyhankoPdfError, ValueError, KeyError, TypeError) as exc:
        raise PdfError(str(exc)) from None


def _metadata(pdf: bytes, hash_algorithm: str) -> Any:
    from pyhanko.sign import fields, signers

    if hash_algorithm == "SHA1":
        raise PdfError("SHA1 is not offered for PDF signatures")
    return signers.PdfSignatureMetadata(field_name=f"Signature{signature_count(pdf) + 1}",
                                        md_algorithm=hash_algorithm.lower(), subfilter=fields.SigSeedSubFilter.PADES)


async def sign_pdf(signer: object, pdf: bytes, hash_algorithm: str = "SHA256") -> bytes:
    """Sign a whole PDF in an incremental update with a digest signer (a card key, or a software key)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    meta = _metadata(pdf, hash_algorithm)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    out = await signers.PdfSigner(meta, signer=_cms_signer(signer)).async_sign_pdf(writer)  # type: ignore[arg-type]
    return out.getvalue()


@dataclass
class PreparedPdf:
    """A PDF with room for a signature, and the digest over its ByteRange (what ``cms-pades`` signs)."""

    digest: bytes
    hash_algorithm: str
    _prepared: Any
    _output: io.BytesIO

    def embed(self, cms: bytes) -> bytes:
        """The signed PDF: ``cms`` (a detached CMS over :attr:`digest`) written into the reserved room."""
        self._prepared.fill_with_cms(self._output, cms)
        return self._output.getvalue()


async def prepare(pdf: bytes, hash_algorithm: str = "SHA256", signing_cert: bytes | None = None) -> PreparedPdf:
    """Prepare ``pdf`` for a signature made elsewhere (SCS ``cms-pades``); ``signing_cert`` is the signer's
    DER certificate when known (pyHanko records it in the signature dictionary)."""
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    meta = _metadata(pdf, hash_algorithm)
    leaf = asn1_x509.Certificate.load(signing_cert) if signing_cert else None
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    placeholder = signers.ExternalSigner(signing_cert=leaf, cert_registry=None, signature_value=bytes(512))
    prepared, _tbs, output = await signers.PdfSigner(meta, signer=placeholder).async_digest_doc_for_signing(
        writer, bytes_reserved=RESERVED_BYTES)
    return PreparedPdf(prepared.document_digest, hash_algorithm, prepared, output)


def _cms_signer(signer: object) -> Any:
    """pyHanko ``Signer`` over a :class:`~digisign_web.signing.signers.DigestSigner`: only the digest of the
    signed attributes leaves. Defined on first use: pyHanko is imported only for PDFs."""
    from pyhanko.sign.signers.pdf_cms import Signer as PyHankoSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from card.crypto import hash_by_lower_name
    from digisign_web.signing.signers import DigestSigner, key_algorithm, key_size, sign_digest_der

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
            # On the caller's loop: only the CLI's whole-PDF signing uses this, and it has nothing else to run.
            return sign_digest_der(self.digest_signer, algorithm.name, algorithm.digest(data))

    return CmsSigner(signer)  # type: ignore[arg-type]
