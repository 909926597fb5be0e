"""The signing playground at `/` in a real headless Chromium, against a real `digisign-web serve --virtual-card
fineid-v4 --dialog web` process: the live status, the request builder (text and file, data and digest), the
exchange and its verification, the PDF and authentication flows, the copyable snippets, troubleshooting when the
server goes away, and the Finnish phone layout. Each signature is approved in the real web dialog, and checked
again here in Python (cryptography, pdfsig), not only by the page.

The tests are plain `def`: Playwright's sync API cannot run inside the asyncio loop of `async def` tests."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.browser import screenshot
from tests.support.cards import answer_chain
from tests.support.paths import ROOT
from tests.support.pdf import blank_pdf, nss_db, pdfsig
from tests.support.servers import WebServer, start_web_server, stop

PIN1, PIN2 = "1234", "123456"


@pytest.fixture
def context(browser_factory, trusted_home):
    browser = browser_factory(trusted_home)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    return context


@pytest.fixture
def page(context, web_server: WebServer):
    page = context.new_page()
    open_playground(page, web_server)
    return page


def open_playground(page, web_server: WebServer) -> None:
    """Opens the playground, failing on any script error or CSP violation, and waits for the card."""
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.problems = problems
    response = page.goto(web_server.base + "/")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    page.wait_for_selector("#readers .cert")


def no_page_errors(page, expected: str = "") -> None:
    problems = [p for p in page.problems if not (expected and expected in p)]
    assert problems == [], problems


def approve(page, web_server: WebServer, pin: str = PIN2) -> None:
    """Plays the user: opens the dialog URL the server asked the browser to open, enters the PIN, signs."""
    dialog = page.context.new_page()
    assert dialog.goto(web_server.next_dialog_url()).status == 200
    dialog.wait_for_selector("#request:not([hidden])")
    if dialog.is_visible("#pin"):
        dialog.fill("#pin", pin)
    dialog.click("#sign")
    dialog.wait_for_selector("#done:not([hidden])")
    assert dialog.text_content("#result").startswith(("Signed", "Allekirjoitettu", "Signerat"))
    dialog.close()


def cancel(page, web_server: WebServer) -> None:
    dialog = page.context.new_page()
    dialog.goto(web_server.next_dialog_url())
    dialog.wait_for_selector("#request:not([hidden])")
    dialog.click("#cancel")
    dialog.wait_for_selector("#done:not([hidden])")
    dialog.close()


def received(page) -> dict:
    """The answer as the page shows it, in full."""
    if not page.is_checked("#show-full"):
        page.check("#show-full")
    return json.loads(page.text_content("#received"))


def sent(page) -> dict:
    if not page.is_checked("#show-full"):
        page.check("#show-full")
    return json.loads(page.text_content("#sent"))


def wait_verified(page) -> None:
    page.wait_for_selector("#verification:not([hidden])", timeout=30_000)


def check_raw_ecdsa(answer: dict, content: bytes) -> None:
    leaf = answer_chain(answer)[0]
    algorithm = getattr(hashes, answer["signatureAlgorithm"].split("with")[0])()
    leaf.public_key.verify(base64.b64decode(answer["signature"]), content, ec.ECDSA(algorithm))


def test_status_panel_shows_the_virtual_card(page, web_server: WebServer) -> None:
    assert page.text_content("#server-text") == "Running · card ready"
    assert page.text_content("#server-base") == web_server.base
    assert page.text_content("#server-version") == "1.1"
    assert "ECDSA" in page.text_content("#server-algorithms")
    readers = page.text_content("#readers")
    assert "digisign-web virtual reader" in readers and "card present" in readers
    assert "fineid-v4" in readers and "FINEID" in readers
    assert readers.count("SPECIMEN-TESTINEN TIINA 99901001P") == 2  # the authentication and signature certificates
    assert "Authentication" in readers and "Signature" in readers
    assert "EC secp384r1" in readers and "expires" in readers
    assert readers.count("5 tries left") == 2
    assert "PIN1 (basic PIN)" in readers and "PIN2 (signature PIN)" in readers
    assert "2 CA certificates" in readers

    # Live: a wrong PIN in the dialog, then cancel. The status panel follows the card's counter by itself.
    page.click("#sign")
    dialog = page.context.new_page()
    dialog.goto(web_server.next_dialog_url())
    dialog.wait_for_selector("#request:not([hidden])")
    dialog.fill("#pin", "654321")
    dialog.click("#sign")
    dialog.wait_for_selector("text=Wrong PIN. 4 tries left.")
    dialog.click("#cancel")
    page.wait_for_selector("#readers :text('4 tries left')", timeout=10_000)
    assert page.text_content("#readers").count("5 tries left") == 1  # PIN1 is untouched
    no_page_errors(page)


def test_sign_text_as_signature(page, web_server: WebServer) -> None:
    text = "Hyväksyn vuokrasopimuksen ehdot."
    page.fill("#content-text", text)
    page.select_option("#signature-type", "signature")
    page.click("#sign")
    page.wait_for_selector("#waiting:not([hidden])")
    approve(page, web_server)
    wait_verified(page)
    badge = page.locator("#verify-badge")
    assert "Valid" in badge.text_content() and "ok" in badge.get_attribute("class")
    assert "200 ok" in page.text_content("#received-code")
    request = sent(page)
    assert request == {"version": "1.1", "content": base64.b64encode(text.encode()).decode(), "contentType": "data",
                       "hashAlgorithm": "SHA256", "signatureType": "signature",
                       "selector": {"keyusages": ["nonrepudiation"]}, "info": "Signed in the digisign-web playground"}
    answer = received(page)
    assert answer["status"] == "ok" and answer["reasonCode"] == 200
    check_raw_ecdsa(answer, text.encode())  # checked here too, not only by the page's helper
    chain = page.text_content("#chain")
    assert "SPECIMEN-TESTINEN TIINA 99901001P" in chain and "digisign-web TEST Root CA - G1" in chain
    assert "non repudiation" in chain
    page.uncheck("#show-full")
    assert "shortened for display" in page.text_content("#received-note")
    no_page_errors(page)
    screenshot(page, "playground")


def test_cms_requests_are_verified(page, web_server: WebServer, tmp_path: Path) -> None:
    # Attached CMS over text.
    page.select_option("#signature-type", "cms")
    page.click("#sign")
    approve(page, web_server)
    wait_verified(page)
    assert "ok" in page.get_attribute("#verify-badge", "class")
    assert "Chains to the included root" in page.text_content("#trust-badge")
    assert "CMS" in page.text_content("#verify-facts") or "cms" in page.text_content("#verify-facts").lower()

    # Detached CMS over a digest of a file the page hashed itself with WebCrypto (SHA-384).
    document = "Tämä on allekirjoitettava liite.\n".encode() * 50
    page.check("#source-file")
    page.set_input_files("#content-file", files=[{"name": "liite.txt", "mimeType": "text/plain", "buffer": document}])
    page.select_option("#content-type", "digest")
    page.select_option("#hash", "SHA384")
    page.wait_for_function("() => document.querySelector('#snippet').textContent.includes('digest')")
    page.click("#sign")
    approve(page, web_server)
    page.wait_for_function("() => document.querySelector('#verify-badge').textContent.includes('Valid')")
    request = sent(page)
    assert request["contentType"] == "digest" and request["hashAlgorithm"] == "SHA384"
    assert base64.b64decode(request["content"]) == hashlib.sha384(document).digest()
    assert "ok" in page.get_attribute("#verify-badge", "class")
    assert received(page)["signatureType"] == "cms"
    no_page_errors(page)


def test_a_cancelled_request_is_explained(page, web_server: WebServer) -> None:
    page.click("#sign")
    cancel(page, web_server)
    page.wait_for_selector("#answer-trouble:not([hidden])")
    assert "401" in page.text_content("#received-code")
    assert received(page)["status"] == "failed"
    explanation = page.text_content("#answer-trouble")
    assert "cancelled" in explanation and "PUK" in explanation
    assert page.is_hidden("#trouble")  # the server answered: not a connection problem
    assert page.is_enabled("#sign")


def test_sign_a_pdf(page, web_server: WebServer, tmp_path: Path) -> None:
    page.click("#tab-pdf")
    page.set_input_files("#pdf-file", files=[{"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"hi"}])
    page.click("#pdf-sign")
    page.wait_for_selector("#step-prepare.step-failed")
    assert "not a PDF" in page.text_content("#pdf-trouble")

    page.set_input_files("#pdf-file", files=[{"name": "contract.pdf", "mimeType": "application/pdf",
                                              "buffer": blank_pdf()}])
    page.click("#pdf-sign")
    page.wait_for_selector("#step-prepare.step-done")
    approve(page, web_server)
    page.wait_for_selector("#pdf-done:not([hidden])", timeout=30_000)
    assert page.text_content("#pdf-badge") == "PAdES-B-B, ready"
    page.wait_for_function("() => document.querySelector('#pdf-signer').textContent.includes('TIINA')")
    assert "TIINA SPECIMEN-TESTINEN" in page.text_content("#pdf-signer")
    screenshot(page, "playground-pdf")
    with page.expect_download() as info:
        page.click("#pdf-download")
    download = info.value
    assert download.suggested_filename == "contract-signed.pdf"
    signed = tmp_path / "signed.pdf"
    download.save_as(signed)
    assert signed.read_bytes().startswith(b"%PDF")
    report = pdfsig(nss_db(web_server.state_dir / "virtual-card" / "pki" / "root.pem", tmp_path), signed)
    assert "Signature is Valid." in report, report
    assert "Certificate is Trusted." in report, report
    no_page_errors(page, expected="status of 400")  # the refused non-PDF above


def test_authenticate(page, web_server: WebServer) -> None:
    page.click("#tab-auth")
    page.click("#auth-start")
    page.wait_for_selector("#auth-waiting:not([hidden])")
    approve(page, web_server, PIN1)
    page.wait_for_selector("#auth-result:not([hidden])", timeout=30_000)
    challenge = page.text_content("#auth-challenge")
    assert re.fullmatch(re.escape(web_server.base) + r";[0-9a-f]{64}", challenge), challenge
    assert page.text_content("#auth-name") == "TIINA SPECIMEN-TESTINEN"
    assert "ok" in page.get_attribute("#auth-badge", "class")
    assert "SHA256withECDSA" in page.text_content("#auth-algorithm")
    screenshot(page, "playground-auth")
    no_page_errors(page)


def test_copy_the_snippet(page, web_server: WebServer) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web_server.base)
    text = "Copy me"
    page.fill("#content-text", text)
    page.select_option("#signature-type", "cms")
    page.check('input[name="keyalgorithms"][value="ec"]')
    page.check("#strict")
    page.wait_for_function("() => document.querySelector('#snippet').textContent.includes('strictKeyPolicy')")
    snippet = page.text_content("#snippet")
    assert "SCS.sign(request)" in snippet and "SCS.discover()" in snippet
    request = json.loads(snippet.split("const request = ", 1)[1].split(";\n\n", 1)[0])
    assert request == {"version": "1.1", "content": base64.b64encode(text.encode()).decode(), "contentType": "data",
                       "hashAlgorithm": "SHA256", "signatureType": "cms",
                       "selector": {"keyusages": ["nonrepudiation"], "keyalgorithms": ["ec"]},
                       "strictKeyPolicy": True, "info": "Signed in the digisign-web playground"}
    page.click("#copy")
    page.wait_for_selector("text=Copied.")
    assert page.evaluate("() => navigator.clipboard.readText()") == snippet

    page.click('#snippet-kinds label:has(input[value="fetch"])')
    fetch_snippet = page.text_content("#snippet")
    assert f'fetch("{web_server.base}/sign"' in fetch_snippet
    assert '"Content-Type": "application/json"' in fetch_snippet
    assert json.loads(fetch_snippet.split("const request = ", 1)[1].split(";\n\n", 1)[0]) == request

    # cms-pades forces a digest, hashed in the page.
    page.select_option("#signature-type", "cms-pades")
    page.wait_for_function("() => document.querySelector('#snippet').textContent.includes('cms-pades')")
    assert page.input_value("#content-type") == "digest"
    request = json.loads(page.text_content("#snippet").split("const request = ", 1)[1].split(";\n\n", 1)[0])
    assert base64.b64decode(request["content"]) == hashlib.sha256(text.encode()).digest()
    no_page_errors(page)


def test_troubleshooting_module(page, web_server: WebServer) -> None:
    """SCSTroubleshoot.diagnose for each layer it tells apart, as a relying party would call it."""
    diagnose = """async ([kind, base]) => {
        const error = kind === "answer"
            ? new SCS.SCSError(403, "origin not allowed", {response: {status: "failed", reasonCode: 403}})
            : new SCS.SCSError(500, "SCS not available", {diagnosis: [{url: base, kind: "network", detail: "x"}]});
        if (kind === "lna") navigator.permissions.query = async () => ({state: "denied"});
        return SCSTroubleshoot.diagnose(error, {base, lang: "en", checkLocalNetworkAccess: kind === "lna"});
    }"""
    answer = page.evaluate(diagnose, ["answer", web_server.base])
    assert answer["layer"] == "policy" and any("allowedOrigins" in fix for fix in answer["fixes"])
    # The server is up and TLS is trusted, so a no-cors probe succeeds: only CORS is left.
    cors = page.evaluate(diagnose, ["network", web_server.base])
    assert cors["layer"] == "cors" and any("allowedOrigins" in fix for fix in cors["fixes"])
    down = page.evaluate(diagnose, ["network", "https://localhost:1"])
    assert down["layer"] == "server-or-certificate"
    assert any("digisign-web trust install" in fix for fix in down["fixes"])
    lna = page.evaluate(diagnose, ["lna", "https://localhost:1"])
    assert lna["layer"] == "local-network-access" and lna["localNetworkAccess"] == "denied"
    assert "Local Network Access" in lna["fixes"][0]


def test_troubleshooting_when_the_server_stops(page, web_server: WebServer) -> None:
    stop(web_server.server)  # the page stays open, the server is gone
    page.click("#sign")
    page.wait_for_selector("#trouble:not([hidden])", timeout=15_000)
    page.wait_for_selector("#server-text:text('Not reachable')")
    title = page.text_content("#trouble-title")
    assert "not running" in title and "certificate" in title
    fixes = page.text_content("#trouble-fixes")
    assert "digisign-web serve" in fixes  # start the server
    assert "digisign-web trust install" in fixes  # trust its certificate
    assert f"{web_server.base}/" in fixes and "certificate warning" in fixes
    assert page.is_visible("#answer-trouble") and "no answer" in page.text_content("#received-code")
    screenshot(page, "playground-trouble")


def test_finnish_on_a_phone(browser_factory, trusted_home, web_server: WebServer) -> None:
    browser = browser_factory(trusted_home)
    context = browser.new_context(locale="fi-FI", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    open_playground(page, web_server)
    assert page.text_content("#tab-pdf") == "Allekirjoita PDF"
    assert page.text_content("#sign") == "Allekirjoita"
    assert "yritystä jäljellä" in page.text_content("#readers")
    assert page.evaluate("() => document.documentElement.lang") == "fi"

    def no_horizontal_overflow() -> None:
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390

    no_horizontal_overflow()
    screenshot(page, "playground-fi-phone")
    page.click("#sign")
    approve(page, web_server)
    wait_verified(page)
    assert "Kelvollinen" in page.text_content("#verify-badge")
    no_horizontal_overflow()
    screenshot(page, "playground-fi-phone-signed")
    for tab in ("pdf", "auth"):
        page.click(f"#tab-{tab}")
        no_horizontal_overflow()
    no_page_errors(page)


def test_language_setting_wins_over_the_browser(browser_factory, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("Language", "sv")  # a setting's name as an environment variable overrides DigiSign.conf
    server = start_web_server(tmp_path)
    try:
        browser = browser_factory(tmp_path)
        context = browser.new_context(locale="fi-FI", ignore_https_errors=True)
        page = context.new_page()
        page.goto(server.base + "/")
        page.wait_for_selector("#readers .cert")
        assert page.evaluate("() => document.documentElement.lang") == "sv"
        assert page.text_content("#tab-pdf") == "Signera en PDF"
        assert "försök kvar" in page.text_content("#readers")
    finally:
        stop(server.server)


def test_every_string_is_translated(page) -> None:
    missing = page.evaluate("""() => {
        const out = [];
        const pg = I18N.STRINGS, ts = SCSTroubleshoot.TEXT;
        for (const [tables, filter] of [[pg, (k) => k.startsWith("pg.")], [ts, () => true]]) {
            const keys = Object.keys(tables.en).filter(filter);
            for (const lang of ["fi", "sv"]) {
                for (const key of keys) if (!(key in tables[lang])) out.push(lang + " " + key);
                const extra = Object.keys(tables[lang]).filter(filter).filter((key) => !(key in tables.en));
                out.push(...extra.map((key) => "en " + key));
            }
        }
        for (const node of document.querySelectorAll("[data-i18n]")) {
            if (!(node.dataset.i18n in pg.en)) out.push("markup " + node.dataset.i18n);
        }
        return out;
    }""")
    assert missing == []
    script = (ROOT / "static" / "playground.js").read_text()
    used = set(re.findall(r'"(pg\.[A-Za-z0-9.]+)"', script))
    known = set(page.evaluate("() => Object.keys(I18N.STRINGS.en)"))
    assert used <= known, used - known
