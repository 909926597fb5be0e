"""Same-origin helpers for the signing playground at ``/``: status, signature checks, and a PDF flow.

They let the playground show what browser JavaScript cannot do well: verify CMS/XML (with the verify
module, i.e. pyHanko and signxml), decode certificates, and prepare/finish a PAdES PDF around a
``cms-pades`` signature exactly as a relying party would. None of them touches the card. They answer only
the playground's own origin (the server's middleware refuses cross-site requests), read at most
``PDF_LIMIT`` bytes of a PDF however it is sent, and keep at most a few PDFs in memory for a few minutes.
"""

from __future__ import annotations

import base64
import binascii
import html
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from digisign_web.scs.errors import ScsFailure
from digisign_web.signing.pdf import PreparedPdf
from digisign_web.signing.pdf import prepare as prepare_pdf
from digisign_web.web.keys import CORE, SETTINGS
from digisign_web.web.limits import BodyTooLarge, read_limited
from digisign_web.web.pages import page, shell

# The card layer and the cryptography libraries are imported where they are used: this module is imported
# before `serve` listens, they load after (D69).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from card import CardCertificate

log = logging.getLogger(__name__)

PDF_LIMIT = 20 * 1024 * 1024
PDF_SESSIONS = 8
PDF_TTL = 600.0


async def _read(request: web.Request, limit: int) -> bytearray:
    """The body, counting the bytes actually read (a chunked upload sends no Content-Length): 413 past
    the limit."""
    try:
        return await read_limited(request, limit)
    except BodyTooLarge:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1) from None


async def _json_object(request: web.Request) -> dict[str, Any]:
    """A JSON object body (the SCS parser's rules: 400 for bad or too deeply nested JSON)."""
    from digisign_web.scs.request import parse_json

    try:
        return parse_json(await _read(request, request.app[SETTINGS].max_request_bytes))
    except ScsFailure as exc:
        raise web.HTTPBadRequest(text=exc.text) from None


def describe_certificate(cert: CardCertificate) -> dict[str, Any]:
    return {
        "subject": cert.subject.rfc4514(),
        "issuer": cert.issuer.rfc4514(),
        "serial": format(cert.serial_number, "X"),
        "notBefore": cert.not_before.isoformat(),
        "notAfter": cert.not_after.isoformat(),
        "keyUsage": cert.key_usage,
        "key": cert.key_description,
    }


def _b64(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise web.HTTPBadRequest(text=f"{name}: base64 string expected")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise web.HTTPBadRequest(text=f"{name}: not valid base64") from None


def _check_raw(signature: bytes, content: bytes, content_type: str, hash_name: str, plain: bool,
               leaf: CardCertificate) -> tuple[bool, str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from card.crypto import ecdsa_raw_to_der, hash_by_name

    algorithm = hash_by_name(hash_name).new()

    digest = content if content_type == "digest" else None
    public = leaf.public_key
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            der = ecdsa_raw_to_der(signature) if plain else signature
            if digest is not None:
                public.verify(der, digest, ec.ECDSA(Prehashed(algorithm)))
            else:
                public.verify(der, content, ec.ECDSA(algorithm))
        elif isinstance(public, rsa.RSAPublicKey):
            if digest is not None:
                public.verify(signature, digest, padding.PKCS1v15(), Prehashed(algorithm))
            else:
                public.verify(signature, content, padding.PKCS1v15(), algorithm)
        else:
            return False, "unsupported key type"
    except (InvalidSignature, ValueError) as exc:
        return False, f"the signature does not verify ({type(exc).__name__})"
    return True, "the signature verifies against the leaf certificate's public key"


async def verify(request: web.Request) -> web.Response:
    """Check an SCS answer: {signatureType, signature, content, contentType, hashAlgorithm, chain}."""
    return web.json_response(await _verify_data(await _json_object(request)))


async def _verify_data(data: dict[str, Any]) -> dict[str, Any]:
    from card import CardCertificate, CardError
    from card.crypto import HASH_NAMES

    chain_b64 = data.get("chain") or []
    if not isinstance(chain_b64, list) or not chain_b64:
        raise web.HTTPBadRequest(text="chain: a non-empty list expected")
    try:
        chain = [CardCertificate.load(_b64(c, "chain"), "chain certificate") for c in chain_b64]
    except CardError:
        raise web.HTTPBadRequest(text="chain: not DER certificates") from None
    signature = _b64(data.get("signature"), "signature")
    content = _b64(data.get("content", ""), "content")
    kind = str(data.get("signatureType", "signature"))
    content_type = str(data.get("contentType", "data"))
    hash_name = str(data.get("hashAlgorithm", "SHA256")).upper()
    root = chain[-1]
    result: dict[str, Any] = {"chain": [describe_certificate(c) for c in chain],
                              "trustNote": "The chain is checked up to the root in the answer; decide yourself "
                                           "whether you trust that root."}
    if kind in ("signature", "signature-plain"):
        if hash_name not in HASH_NAMES:
            raise web.HTTPBadRequest(text="hashAlgorithm unknown")
        ok, text = _check_raw(signature, content, content_type, hash_name, kind == "signature-plain", chain[0])
        result.update(format=f"raw ({kind})", intact=ok, trusted=None, signer=describe_certificate(chain[0])["subject"],
                      hash=hash_name, problems=[] if ok else [text], summary=text)
        return result
    detached = None
    if (kind in ("cms", "pkcs7") and content_type == "digest") or kind == "cms-pades":
        if "originalContent" not in data:
            result.update(format="CMS, detached over a digest", intact=None, trusted=None, signer="", hash=hash_name,
                          problems=["a detached CMS over a digest needs the original content to be checked"],
                          summary="not checked")
            return result
        detached = _b64(data.get("originalContent"), "originalContent")
    try:
        from digisign_web.signing.validation import verify  # pyHanko and signxml: only when used

        reports = await verify(signature, detached, [root])
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    report = reports[0]
    result.update(format=report.format, intact=report.intact, trusted=report.trusted, signer=report.signer,
                  hash=report.hash_algorithm, problems=report.problems,
                  summary="valid" if report.ok else "NOT valid")
    return result


@dataclass
class _PdfJob:
    pdf: PreparedPdf
    created: float


class PdfFlow:
    """What a relying party does around ``cms-pades``: prepare the PDF, hand out the ByteRange digest,
    then embed the returned CMS (:mod:`digisign_web.signing.pdf`). Kept in memory, few and short-lived."""

    def __init__(self) -> None:
        self._jobs: dict[str, _PdfJob] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        for key, job in list(self._jobs.items()):
            if now - job.created > PDF_TTL:
                self._jobs.pop(key, None)
        while len(self._jobs) >= PDF_SESSIONS:
            self._jobs.pop(next(iter(self._jobs)))

    async def prepare(self, request: web.Request) -> web.Response:
        from card.crypto import PDF_HASH_NAMES

        hash_name = request.query.get("hashAlgorithm", "SHA256").upper()
        if hash_name not in PDF_HASH_NAMES:
            raise web.HTTPBadRequest(text=f"hashAlgorithm: {', '.join(PDF_HASH_NAMES[:-1])} or {PDF_HASH_NAMES[-1]}")
        pdf = bytes(await _read(request, PDF_LIMIT))
        if not pdf.startswith(b"%PDF"):
            raise web.HTTPBadRequest(text="that is not a PDF")
        leaf_b64 = request.query.get("cert")
        leaf = _b64(leaf_b64, "cert") if leaf_b64 else None
        try:
            prepared = await prepare_pdf(pdf, hash_name, leaf)
        except Exception as exc:
            log.info("playground: cannot prepare that PDF: %s", exc)
            raise web.HTTPBadRequest(text=f"cannot prepare that PDF: {exc}") from None
        self._expire()
        key = secrets.token_urlsafe(16)
        self._jobs[key] = _PdfJob(prepared, time.monotonic())
        return web.json_response({"job": key, "hashAlgorithm": hash_name,
                                  "digest": base64.b64encode(prepared.digest).decode()})

    async def finish(self, request: web.Request) -> web.Response:
        data = await _json_object(request)
        job = self._jobs.pop(str(data.get("job", "")), None)
        if job is None:
            raise web.HTTPGone(text="that PDF job has expired; start again")
        cms = _b64(data.get("cms"), "cms")
        try:
            signed = job.pdf.embed(cms)
        except Exception as exc:
            raise web.HTTPBadRequest(text=f"cannot embed that CMS: {exc}") from None
        return web.Response(body=signed, content_type="application/pdf",
                            headers={"Content-Disposition": 'attachment; filename="signed.pdf"'})


async def status(request: web.Request) -> web.Response:
    """Server and card state for the playground (from memory, like /version)."""
    service = request.app[CORE].loaded  # None for a moment after start: no reader known yet (D69)
    readers = service.manager.readers() if service else {}
    summaries = {s.reader: s for s in service.state.summaries()} if service else {}
    body = {
        "version": request.app[SETTINGS].scs_version,
        "readers": [{"name": name, "card": atr is not None,
                     "atr": atr.hex(" ").upper() if atr else None,
                     "token": _summary(summaries.get(name), request.app[SETTINGS].cert_expiration_warning_days)}
                    for name, atr in readers.items()],
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _summary(summary: Any, warning_days: int) -> dict[str, Any] | None:
    """A card's summary; each certificate's ``validity`` and ``daysLeft`` as of now (the badges, D50)."""
    if summary is None:
        return None
    return {"profile": summary.profile, "serial": summary.serial, "label": summary.label,
            "problem": summary.problem, "certificates": summary.certificates_now(warning_days)}


async def websigner_result(request: web.Request) -> web.Response:
    """The playground's WebSigner returnUrl: show what came back and check it, as a relying party would."""
    form = await request.post()
    fields = {k: form.getall(k) for k in set(form.keys())}
    first = {k: str(v[0]) for k, v in fields.items() if v}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(_short(str(v)))}</code></td></tr>"
                   for k, values in sorted(fields.items()) for v in values)
    verdict = ""
    if first.get("status") == "ok":
        data = {"signatureType": first.get("signatureType", "signature"), "signature": first.get("signature", ""),
                "content": str(form.get("state") or ""), "contentType": "data",  # the playground puts it in state
                "hashAlgorithm": first.get("signatureAlgorithm", "SHA256with").split("with")[0],
                "chain": [str(c) for c in fields.get("chain", [])]}
        try:
            check = await _verify_data(data)
            verdict = (f'<p class="result {"ok" if check.get("intact") else "bad"}">'
                       f'{html.escape(str(check.get("summary")))} – {html.escape(str(check.get("format")))}</p>')
        except web.HTTPException as exc:
            verdict = f'<p class="error">{html.escape(exc.text or "")}</p>'
    body = ('<section class="panel"><h2>WebSigner result</h2>'
            f"{verdict}<table>{rows}</table><p><a href=\"/\">Back to the playground</a></p></section>")
    return page("report", shell("WebSigner result", body, body_class="playground", main_class="wrap"))


def _short(value: str) -> str:
    return value if len(value) <= 120 else f"{value[:60]}…{value[-40:]} ({len(value)} characters)"


def add_routes(app: web.Application) -> None:
    flow = PdfFlow()
    app.router.add_get("/playground/status", status)
    app.router.add_post("/playground/verify", verify)
    app.router.add_post("/playground/pdf/prepare", flow.prepare)
    app.router.add_post("/playground/pdf/finish", flow.finish)
    app.router.add_post("/playground/websigner-result", websigner_result)
