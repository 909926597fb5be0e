"""The whole user journey in a real browser: an e-service page on another origin calls scs.js, the server
opens the web dialog, the user enters the PIN and signs, and the page gets a signature that verifies."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.browser import make_home, screenshot
from tests.support.cards import answer_chain
from tests.support.paths import ROOT
from tests.support.servers import WebServer


def test_page_signs_through_the_web_dialog(open_page, trusted_home, web_server: WebServer) -> None:
    rp = open_page(trusted_home)
    rp.page.evaluate("(base) => { SCS.setBase(base); window.pending = window.runSignText("
                     "'Hakemus 2026', {selector: {keyusages: ['nonrepudiation']}, info: 'Sign the application'}); }",
                     web_server.base)
    dialog = rp.page.context.new_page()  # the tab the server asked the browser to open
    dialog.goto(web_server.next_dialog_url())
    dialog.wait_for_selector("#request:not([hidden])")
    assert dialog.text_content("#origin") == rp.page.evaluate("location.origin")
    dialog.fill("#pin", "000000")  # a wrong PIN first: the dialog stays and says so
    dialog.click("#sign")
    dialog.wait_for_selector("text=Wrong PIN. 4 tries left.")
    dialog.fill("#pin", "123456")
    dialog.click("#sign")
    outcome = rp.page.evaluate("() => window.pending")
    assert outcome["ok"], outcome
    answer = outcome["value"]
    leaf = answer_chain(answer)[0]
    algorithm = getattr(hashes, answer["signatureAlgorithm"].split("with")[0])()
    leaf.public_key.verify(base64.b64decode(answer["signature"]), b"Hakemus 2026", ec.ECDSA(algorithm))
    screenshot(rp.page, "relying-party-signed")


def test_page_sees_cancel_as_401(open_page, trusted_home, web_server: WebServer) -> None:
    rp = open_page(trusted_home)
    rp.page.evaluate("(base) => { SCS.setBase(base); window.pending = window.runSignText('x'); }", web_server.base)
    dialog = rp.page.context.new_page()
    dialog.goto(web_server.next_dialog_url())
    dialog.wait_for_selector("#request:not([hidden])")
    dialog.click("#cancel")
    outcome = rp.page.evaluate("() => window.pending")
    assert not outcome["ok"] and outcome["error"]["reasonCode"] == 401
    assert "401" in rp.text("error")


def test_troubleshooting_when_the_ca_is_not_trusted(open_page, web_server: WebServer, tmp_path) -> None:
    """An e-service page whose browser does not trust the local CA: scs.js fails with a network error, and
    troubleshoot.js explains the likely layers and names the fix (trust install), not a generic error."""
    rp = open_page(make_home(tmp_path / "untrusted", None))
    rp.page.add_script_tag(path=str(ROOT / "static" / "troubleshoot.js"))
    diagnosis = rp.page.evaluate("""async (base) => {
        try { await SCS.discover({urls: [base], timeout: 3000}); return null; }
        catch (error) { return await SCSTroubleshoot.diagnose(error, {lang: "en", base}); } }""", web_server.base)
    assert diagnosis is not None, "discovery must fail while the CA is not trusted"
    text = diagnosis["title"] + " " + " ".join(str(f) for f in diagnosis["fixes"])
    assert "certificate" in text and "digisign-web trust install" in text
