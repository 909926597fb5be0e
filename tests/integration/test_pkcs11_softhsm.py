"""Tokens through PKCS#11, end to end: `digisign-web serve --pkcs11-module libsofthsm2.so` (and `list`, `sign`)
with SoftHSM2 tokens made by the test, keys generated on the token (tests/support/softhsm.py).

Every SCS signature type (and PAdES through the playground's PDF flow) is made with RSA-2048, RSA-3072, P-256
and P-384 keys and checked by independent verifiers against the token's test CA: cryptography for the raw
types, `openssl cms -verify`, `xmlsec1 --verify`, poppler's `pdfsig` and pyHanko. The signature keys carry
CKA_ALWAYS_AUTHENTICATE, and the test-double shim in front of SoftHSM2 logs every C_Login, so each signature's
own context-specific login (PIN2 never reused) is counted at the module. Wrong, locked and pinpad PINs and a
token removed while serving are covered too. PC/SC is switched off (``--exclude-reader '*'``: it filters PC/SC
reader names only), so nothing here needs pcscd."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from tests.support.browser import make_home
from tests.support.cli import cli_env
from tests.support.paths import ROOT
from tests.support.pdf import blank_pdf, nss_db, pdfsig, run_tool
from tests.support.servers import ORIGIN, RunningServer, start_web_server, stop
from tests.support.softhsm import SoftHsmToken
from tests.support.wait import async_wait_until

KEY_NAMES = ["rsa2048", "rsa3072", "p256", "p384"]
DOCUMENT = b"<?xml version='1.0'?><invoice><total>12.50</total></invoice>"
SIGNATURE_SELECTOR = {"keyusages": ["nonrepudiation"]}
AUTH_SELECTOR = {"keyusages": ["digitalsignature"]}
CKU_USER, CKU_CONTEXT_SPECIFIC = "user=1", "user=2"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def serve(served: Callable[..., RunningServer], module: Path, *args: str, pin: str = "123456") -> RunningServer:
    """`serve` with only ``module``'s tokens and the automatic dialog, told it may sign with them."""
    return served("--pkcs11-module", str(module), "--exclude-reader", "*", "--dialog", "auto",
                  "--auto-approve-real-cards", "--auto-pin1", pin, "--auto-pin2", pin, *args, virtual_card=None)


def through_shim(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The shim's settings go to the server through its environment (``served`` copies os.environ)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)


async def wait_for_version(server: RunningServer, predicate: Callable[[dict], bool], timeout: float = 20) -> dict:
    """/version once it satisfies ``predicate`` (tokens are read in the background, slot changes at a timer)."""
    seen: list[dict] = []

    async def check() -> bool:
        seen.append(await server.version())
        return predicate(seen[-1])

    await async_wait_until(check, timeout, "/version to change", interval=0.2)
    return seen[-1]


def logins(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- independent checks ---------------------------------------------------------------------------------


def check_ok(answer: dict, token: SoftHsmToken, key_name: str, role: str = "signature") -> x509.Certificate:
    """A success answer whose chain is the token's certificate for the key, then the token's CA object."""
    assert answer["status"] == "ok" and answer["reasonCode"] == 200, answer
    key = token.key(key_name, role)
    assert [base64.b64decode(c) for c in answer["chain"]] == [key.cert_der, token.ca_der]
    algorithm = "RSA" if key_name.startswith("rsa") else "ECDSA"
    assert answer["signatureAlgorithm"].endswith(algorithm), answer["signatureAlgorithm"]
    return x509.load_der_x509_certificate(key.cert_der)


def verify_raw(cert: x509.Certificate, signature: bytes, data: bytes, hash_name: str, plain: bool) -> None:
    """cryptography's check of a raw `signature` / `signature-plain` answer over ``data``."""
    algorithm = getattr(hashes, hash_name)()
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        assert len(signature) == public.key_size // 8
        public.verify(signature, data, padding.PKCS1v15(), algorithm)
    else:
        assert isinstance(public, ec.EllipticCurvePublicKey)
        if plain:  # the token's raw r || s
            size = (public.curve.key_size + 7) // 8
            assert len(signature) == 2 * size
            signature = utils.encode_dss_signature(int.from_bytes(signature[:size], "big"),
                                                    int.from_bytes(signature[size:], "big"))
        public.verify(signature, data, ec.ECDSA(algorithm))


def openssl_cms_verify(signature: bytes, ca_pem: Path, tmp_path: Path, detached_content: bytes | None) -> bytes:
    """`openssl cms -verify` against the test CA; the content it recovered (or checked, when detached)."""
    (tmp_path / "s.p7s").write_bytes(signature)
    args = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "s.p7s"),
            "-CAfile", str(ca_pem), "-purpose", "any", "-out", str(tmp_path / "s.out")]
    if detached_content is not None:
        (tmp_path / "s.content").write_bytes(detached_content)
        args += ["-content", str(tmp_path / "s.content")]
    result = run_tool(*args)
    assert result.returncode == 0 and "Verification successful" in result.stderr, result.stderr
    return (tmp_path / "s.out").read_bytes()


def xmlsec_verify(signature: bytes, ca_pem: Path, tmp_path: Path) -> None:
    (tmp_path / "s.xml").write_bytes(signature)
    result = run_tool("xmlsec1", "--verify", "--trusted-pem", str(ca_pem), str(tmp_path / "s.xml"))
    assert result.returncode == 0 and "OK" in result.stdout + result.stderr, result.stderr
    tampered = signature.replace(b"12.50", b"99.50")
    assert tampered != signature
    (tmp_path / "t.xml").write_bytes(tampered)
    assert run_tool("xmlsec1", "--verify", "--trusted-pem", str(ca_pem), str(tmp_path / "t.xml")).returncode != 0


async def check_pdf(pdf: bytes, token: SoftHsmToken, tmp_path: Path) -> None:
    """poppler's pdfsig (NSS trusting the test CA) and pyHanko's validator both accept the signed PDF."""
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    report = pdfsig(nss_db(token.ca_pem_path, tmp_path), path)
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Certificate Validation: Certificate is Trusted." in report, report
    assert "Total document signed" in report, report

    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from card import CardCertificate

    ca = CardCertificate.load(token.ca_der).asn1
    reader = PdfFileReader(io.BytesIO(pdf))
    (embedded,) = reader.embedded_signatures
    status = await async_validate_pdf_signature(embedded, ValidationContext(trust_roots=[ca]))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()


async def playground_pades(server: RunningServer, pdf: bytes, hash_name: str = "SHA256") -> bytes:
    """The playground's PDF flow (what a relying party does around `cms-pades`): prepare, sign, embed."""
    own = {"Origin": server.base}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.base}/playground/pdf/prepare?hashAlgorithm={hash_name}", data=pdf,
                                ssl=server.ssl(), headers={**own, "Content-Type": "application/pdf"}) as response:
            assert response.status == 200, await response.text()
            job = await response.json()
        answer = await server.post({"content": job["digest"], "contentType": "digest", "hashAlgorithm": hash_name,
                                    "signatureType": "cms-pades", "selector": SIGNATURE_SELECTOR})
        assert answer["status"] == "ok", answer
        async with session.post(f"{server.base}/playground/pdf/finish", ssl=server.ssl(),
                                data=json.dumps({"job": job["job"], "cms": answer["signature"]}),
                                headers={**own, "Content-Type": "application/json"}) as response:
            assert response.status == 200, await response.text()
            return await response.read()


# --- every signature type with every key type -------------------------------------------------------------


@pytest.mark.parametrize("key_name", KEY_NAMES)
async def test_every_signature_type_through_softhsm(key_name: str, softhsm_token, served, tmp_path: Path) -> None:
    token = softhsm_token(keys=((key_name, "signature"),), label=f"digisign-{key_name}")
    assert token.key(key_name).always_authenticate
    server = serve(served, token.module)  # libsofthsm2.so itself

    version = await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    assert version["signatureAlgorithms"] == ("RSA" if key_name.startswith("rsa") else "ECDSA"), version
    assert version["hashAlgorithms"] == "SHA1, SHA224, SHA256, SHA384, SHA512", version
    assert "cms-pades" in version["signatureTypes"].split(","), version

    async def sign(signature_type: str, content: bytes, content_type: str = "data",
                   hash_name: str = "SHA256") -> tuple[dict, x509.Certificate]:
        answer = await server.post({"content": b64(content), "contentType": content_type, "hashAlgorithm": hash_name,
                                    "signatureType": signature_type, "selector": SIGNATURE_SELECTOR})
        cert = check_ok(answer, token, key_name)
        assert answer["signatureType"] == signature_type
        return answer, cert

    answer, cert = await sign("signature", DOCUMENT)
    verify_raw(cert, base64.b64decode(answer["signature"]), DOCUMENT, "SHA256", plain=False)
    digest = hashlib.sha384(DOCUMENT).digest()
    answer, cert = await sign("signature-plain", digest, "digest", "SHA384")
    verify_raw(cert, base64.b64decode(answer["signature"]), DOCUMENT, "SHA384", plain=True)

    answer, _ = await sign("cms", DOCUMENT)
    assert openssl_cms_verify(base64.b64decode(answer["signature"]), token.ca_pem_path, tmp_path, None) == DOCUMENT
    answer, _ = await sign("pkcs7", hashlib.sha256(DOCUMENT).digest(), "digest")
    openssl_cms_verify(base64.b64decode(answer["signature"]), token.ca_pem_path, tmp_path, DOCUMENT)

    answer, _ = await sign("xml", DOCUMENT)
    xmlsec_verify(base64.b64decode(answer["signature"]), token.ca_pem_path, tmp_path)

    await check_pdf(await playground_pades(server, blank_pdf()), token, tmp_path)


async def test_always_authenticate_key_logs_in_for_every_signature(softhsm_token, served, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """CKA_ALWAYS_AUTHENTICATE: each signature has its own context-specific login (PIN2 is never reused),
    counted at the module by the shim's C_Login log (the shim only logs and forwards here)."""
    token = softhsm_token(keys=(("p256", "signature"),))
    login_log = tmp_path / "logins.txt"
    module, env = token.shim_module(login_log=login_log)
    through_shim(monkeypatch, env)
    server = serve(served, module)
    await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    for number in range(1, 3):
        content = DOCUMENT + str(number).encode()
        answer = await server.post({"content": b64(content), "signatureType": "signature",
                                    "selector": SIGNATURE_SELECTOR})
        verify_raw(check_ok(answer, token, "p256"), base64.b64decode(answer["signature"]), content, "SHA256",
                   plain=False)
        seen = logins(login_log)
        assert [line for line in seen if CKU_CONTEXT_SPECIFIC in line] == \
            ["login user=2 pin=given rv=0x0"] * number, seen
    assert all(line.endswith("pin=given rv=0x0") for line in seen), seen


async def test_authentication_key_reuses_pin1_without_context_logins(softhsm_token, served, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    token = softhsm_token(keys=(("p256", "authentication"),))
    login_log = tmp_path / "logins.txt"
    module, env = token.shim_module(login_log=login_log)
    through_shim(monkeypatch, env)
    server = serve(served, module)
    await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    for _ in range(2):
        content = f"{ORIGIN};{os.urandom(48).hex()}".encode()
        answer = await server.post({"content": b64(content), "signatureType": "signature",
                                    "selector": AUTH_SELECTOR})
        cert = check_ok(answer, token, "p256", "authentication")
        verify_raw(cert, base64.b64decode(answer["signature"]), content, "SHA256", plain=False)
    seen = logins(login_log)
    # PIN1-like: one C_Login(CKU_USER) for the origin's session, no context-specific login.
    assert [line for line in seen if CKU_USER in line] == ["login user=1 pin=given rv=0x0"], seen
    assert not [line for line in seen if CKU_CONTEXT_SPECIFIC in line], seen


# --- PINs ---------------------------------------------------------------------------------------------------


async def test_wrong_pin_gives_the_same_reason_code_as_a_card(softhsm_token, served, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    card_server = served("--dialog", "auto", "--auto-pin2", "999999")  # the in-process virtual card
    request = {"content": b64(DOCUMENT), "signatureType": "signature", "selector": SIGNATURE_SELECTOR}
    card_answer = await card_server.post(request)
    assert card_answer["status"] == "failed", card_answer

    token = softhsm_token(keys=(("p256", "signature"),))
    login_log = tmp_path / "logins.txt"
    module, env = token.shim_module(login_log=login_log)
    through_shim(monkeypatch, env)
    server = serve(served, module, pin="999999")
    await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    answer = await server.post(request)
    assert answer["status"] == "failed" and answer["reasonCode"] == card_answer["reasonCode"] == 401, answer
    assert "signature" not in answer and "chain" not in answer
    # Tried once, never again on its own (the auto dialog gives up where a person would retype).
    failed = [line for line in logins(login_log) if "rv=0xa0" in line]  # CKR_PIN_INCORRECT
    assert len(failed) == 1, logins(login_log)
    assert "999999" not in server.log()  # no PIN in the log


async def test_locked_pin_is_refused_like_a_blocked_card_pin(softhsm_token, served,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    token = softhsm_token(keys=(("p256", "signature"),))
    token.lock_user_pin()  # through the PIN-counter module: SoftHSM2 itself never locks
    module, env = token.pin_counter_module()
    through_shim(monkeypatch, env)
    server = serve(served, module)
    await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    answer = await server.post({"content": b64(DOCUMENT), "signatureType": "signature",
                                "selector": SIGNATURE_SELECTOR})
    assert answer["status"] == "failed" and answer["reasonCode"] == 401, answer
    assert any(word in answer["reasonText"].lower() for word in ("blocked", "locked")), answer
    assert token.pin_tries_file.read_text().strip() == "0"


async def test_protected_authentication_path_never_sends_a_pin(softhsm_token, protected_auth_module, served,
                                                               tmp_path: Path) -> None:
    token = softhsm_token(keys=(("p384", "signature"),))
    pinpad = protected_auth_module(token)  # sets its env in this process, which the server inherits
    server = serve(served, pinpad.module, pin="000000")  # a PIN the dialog would get wrong, were it asked
    await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    request = {"content": b64(DOCUMENT), "signatureType": "cms", "selector": SIGNATURE_SELECTOR}
    answer = await server.post(request)
    check_ok(answer, token, "p384")
    assert openssl_cms_verify(base64.b64decode(answer["signature"]), token.ca_pem_path, tmp_path, None) == DOCUMENT
    seen = pinpad.logins()
    assert seen and all("pin=null" in line for line in seen), seen  # the PIN came from the "reader"
    assert any(CKU_CONTEXT_SPECIFIC in line and "rv=0x0" in line for line in seen), seen

    pinpad.cancel()  # the user presses Cancel on the pinpad
    cancelled = await server.post(request)
    assert cancelled["status"] == "failed" and cancelled["reasonCode"] == 401, cancelled
    assert pinpad.logins()[-1].endswith("rv=0x50"), pinpad.logins()  # CKR_FUNCTION_CANCELED, not retried


def test_web_dialog_shows_no_pin_field_for_a_pinpad_token(softhsm_token, protected_auth_module, browser_factory,
                                                          tmp_path: Path) -> None:
    """The web dialog in Chromium: the pinpad token's choice says "on the reader", the page has no PIN field
    to fill, its answer carries no PIN, and the module logs in with a NULL PIN (the PIN came from the reader)."""
    token = softhsm_token(keys=(("p256", "signature"),))
    pinpad = protected_auth_module(token)
    web = start_web_server(tmp_path / "web", "--pkcs11-module", str(pinpad.module), "--exclude-reader", "*")
    try:
        page = browser_factory(make_home(tmp_path / "home", web.server.ca)).new_context().new_page()
        details, answers = [], []
        page.on("response", lambda r: details.append(r) if r.url.endswith("/request") else None)
        page.on("request", lambda r: answers.append(r.post_data) if r.url.endswith("/answer") else None)
        issuer = x509.load_der_x509_certificate(token.ca_der).subject.rfc4514_string()
        request = {"content": b64(DOCUMENT), "signatureType": "signature",  # only the token's certificate
                   "selector": {"issuers": [issuer], "keyusages": ["nonrepudiation"]}}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(lambda: asyncio.run(web.server.post(request)))
            page.goto(web.next_dialog_url(timeout=30))
            page.wait_for_selector("#request:not([hidden])", timeout=15000)
            assert page.is_hidden("#pin") and page.is_hidden("#pin-label")
            assert "reader" in page.text_content("#pin-hint")
            page.click("#sign")
            answer = pending.result(timeout=60)
        check_ok(answer, token, "p256")
        shown = [r.json() for r in details if r.ok]
        choices = [c for body in shown for c in body.get("choices", [])]
        assert choices and all(c["pin_on_reader"] and c["needs_pin"] for c in choices), shown
        assert len(answers) == 1 and json.loads(answers[0]).get("pin") is None, answers
        seen = pinpad.logins()
        assert seen and all("pin=null" in line for line in seen), seen
    finally:
        stop(web.server)


# --- the token goes away -----------------------------------------------------------------------------------


async def test_removed_token_drops_out_of_version_and_sign(softhsm_token, served) -> None:
    token = softhsm_token(keys=(("p256", "signature"),))
    server = serve(served, token.module)
    before = await wait_for_version(server, lambda v: v["signatureAlgorithms"] != "")
    assert before["signatureAlgorithms"] == "ECDSA"
    request = {"content": b64(DOCUMENT), "signatureType": "signature", "selector": SIGNATURE_SELECTOR}
    check_ok(await server.post(request), token, "p256")

    token.delete()
    after = await wait_for_version(server, lambda v: v["signatureAlgorithms"] == "")
    assert after["signatureAlgorithms"] == "" and after["hashAlgorithms"] == "", after
    answer = await server.post(request)
    assert answer["status"] == "failed" and answer["reasonCode"] == 404, answer  # no usable card


# --- list and sign ------------------------------------------------------------------------------------------


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with this process's environment (SOFTHSM2_CONF comes from the softhsm_token fixture)."""
    return subprocess.run([sys.executable, "-m", "digisign_web", *args], cwd=ROOT, env=cli_env(), input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_list_shows_the_token(softhsm_token) -> None:
    token = softhsm_token(keys=(("rsa2048", "authentication"), ("p384", "signature")))
    result = cli("list", "--json", "--pkcs11-module", str(token.module), "--exclude-reader", "*")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    (entry,) = listing["tokens"]
    assert entry["reader"].endswith("(PKCS#11: libsofthsm2.so)"), entry["reader"]
    assert token.serial in json.dumps(entry) and token.label in json.dumps(entry)
    certificates = {c["role"]: c for c in entry["certificates"]}
    assert certificates["authentication"]["key_algorithm"] == "RSA"
    assert certificates["authentication"]["key_size"] == 2048
    assert certificates["signature"]["key_algorithm"] == "EC" and certificates["signature"]["key_size"] == 384
    assert "non_repudiation" in certificates["signature"]["key_usage"]

    text = cli("list", "--pkcs11-module", str(token.module), "--exclude-reader", "*")
    assert text.returncode == 0 and "PKCS#11: libsofthsm2.so" in text.stdout, text.stdout + text.stderr


async def test_sign_cms_and_pades_through_softhsm(softhsm_token, tmp_path: Path) -> None:
    token = softhsm_token(keys=(("rsa2048", "signature"),))
    common = ("--pkcs11-module", str(token.module), "--exclude-reader", "*", "--pin-stdin")
    (tmp_path / "doc.xml").write_bytes(DOCUMENT)
    result = cli("sign", "--type", "cms", "--in", str(tmp_path / "doc.xml"), "--out", str(tmp_path / "doc.p7s"),
                 *common, stdin=token.user_pin + "\n")
    assert result.returncode == 0, result.stderr
    assert openssl_cms_verify((tmp_path / "doc.p7s").read_bytes(), token.ca_pem_path, tmp_path, None) == DOCUMENT

    (tmp_path / "doc.pdf").write_bytes(blank_pdf())
    result = cli("sign", "--type", "pades", "--in", str(tmp_path / "doc.pdf"), "--out", str(tmp_path / "out.pdf"),
                 *common, stdin=token.user_pin + "\n")
    assert result.returncode == 0, result.stderr
    await check_pdf((tmp_path / "out.pdf").read_bytes(), token, tmp_path / "pdf")

    wrong = cli("sign", "--type", "cms", "--in", str(tmp_path / "doc.xml"), "--out", str(tmp_path / "bad.p7s"),
                *common, stdin="000000\n")
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr, wrong.stderr
    error = wrong.stderr.strip().splitlines()[-1]  # after the "Signing ... with ..." line: one error line
    assert error.startswith("error: wrong PIN") and "None" not in error, wrong.stderr
    assert not (tmp_path / "bad.p7s").exists()
