"""WebSigner in a real headless Chromium: a relying-party site on another origin with a JavaScript-free
HTML form posts to /websigner; the dialog runs in that tab; the result comes back as a form POST to the
relying party's returnUrl and is checked with independent verifiers (cryptography, openssl, xmlsec1)."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from card import CardCertificate
from tests.support.browser import screenshot
from tests.support.cards import answer_chain
from tests.support.relying_party import RelyingParty, answer_dialog, form_fields
from tests.support.servers import WebServer


def chain_of(fields: dict[str, list[str]]) -> list[CardCertificate]:
    return answer_chain(fields)


def test_signature_through_a_plain_form(rp_page, relying_party: RelyingParty) -> None:
    content = b"Veroilmoitus 2026"
    form_fields(relying_party, content, "signature", info="Sign your tax return")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    rp_page.wait_for_selector("#request:not([hidden])")
    assert rp_page.text_content("#origin") == relying_party.origin  # the sender, from its Origin header
    assert rp_page.text_content("#info") == "Sign your tax return"
    screenshot(rp_page, "websigner-dialog")
    answer_dialog(rp_page)
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["status"] == ["ok"] and fields["reasonCode"] == ["200"] and fields["state"] == ["order-42"]
    leaf = chain_of(fields)[0]
    algorithm = getattr(hashes, fields["signatureAlgorithm"][0].split("with")[0])()
    leaf.public_key.verify(base64.b64decode(fields["signature"][0]), content, ec.ECDSA(algorithm))


def test_cms_from_a_file_upload(rp_page, relying_party: RelyingParty, tmp_path: Path) -> None:
    document = tmp_path / "contract.txt"
    document.write_bytes("Sopimus – liite 1\n".encode() * 50)
    form_fields(relying_party, b"", "cms")
    del relying_party.fields["content"]
    relying_party.upload = True
    rp_page.goto(relying_party.origin + "/")
    rp_page.set_input_files("#file", str(document))
    rp_page.click("#go")
    answer_dialog(rp_page)
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["status"] == ["ok"], fields
    (tmp_path / "s.p7s").write_bytes(base64.b64decode(fields["signature"][0]))
    (tmp_path / "root.pem").write_text(chain_of(fields)[-1].pem)
    result = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "s.p7s"),
                             "-CAfile", str(tmp_path / "root.pem"), "-purpose", "any", "-out", str(tmp_path / "out")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out").read_bytes() == document.read_bytes()  # the file went in with no base64


def test_xml_verified_by_xmlsec(rp_page, relying_party: RelyingParty, tmp_path: Path) -> None:
    form_fields(relying_party, b"<hakemus><nimi>Testi</nimi></hakemus>", "xml")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    answer_dialog(rp_page)
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["status"] == ["ok"], fields
    (tmp_path / "signed.xml").write_bytes(base64.b64decode(fields["signature"][0]))
    (tmp_path / "root.pem").write_text(chain_of(fields)[-1].pem)
    result = subprocess.run(["xmlsec1", "--verify", "--trusted-pem", str(tmp_path / "root.pem"),
                             str(tmp_path / "signed.xml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_cancel_is_delivered_too(rp_page, relying_party: RelyingParty) -> None:
    form_fields(relying_party, b"x", "signature")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    rp_page.wait_for_selector("#request:not([hidden])")
    rp_page.click("#cancel")
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["status"] == ["failed"] and fields["reasonCode"] == ["401"] and fields["state"] == ["order-42"]
    assert "signature" not in fields


def test_errors_before_the_dialog_are_delivered(rp_page, relying_party: RelyingParty) -> None:
    form_fields(relying_party, b"x", "cms", hashAlgorithm="SHA1")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["reasonCode"] == ["501"] and "SHA1" in fields["reasonText"][0]


def test_return_url_of_another_origin_is_refused(rp_page, relying_party: RelyingParty) -> None:
    form_fields(relying_party, b"x", "signature", returnUrl="https://attacker.example/collect")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    rp_page.wait_for_selector("text=Request refused")
    assert "same origin" in rp_page.text_content("main")
    assert relying_party.received == []


def test_post_message_mode(rp_page, relying_party: RelyingParty) -> None:
    form_fields(relying_party, b"popup", "signature-plain", responseMode="post_message")
    rp_page.goto(relying_party.origin + "/popup")
    with rp_page.expect_popup() as popup_info:
        rp_page.click("#go")
    popup = popup_info.value
    answer_dialog(popup)
    rp_page.wait_for_function("document.getElementById('out').textContent.length > 0")
    import json

    message = json.loads(rp_page.text_content("#out"))
    assert message["origin"].startswith("https://localhost:")
    data = message["data"]
    assert data["status"] == "ok" and data["state"] == "order-42"
    assert data["signatureAlgorithm"].endswith("PLAIN-ECDSA")
    assert len(base64.b64decode(data["signature"])) == 96


@pytest.mark.parametrize("signature_type", ["signature", "cms", "xml"])
def test_playground_websigner_tab(browser_factory, trusted_home, web_server: WebServer,
                                  signature_type: str) -> None:
    page = browser_factory(trusted_home).new_page()
    page.goto(web_server.base + "/#websigner")
    page.wait_for_selector("#view-websigner:not([hidden])")
    page.fill("#ws-text", "Playground WebSigner test")
    page.select_option("#ws-type", signature_type)
    page.click("#ws-submit")
    answer_dialog(page)
    page.wait_for_selector("text=WebSigner result")
    assert "ok" in page.get_attribute(".result", "class").split(), page.text_content(".result")
    assert "NOT" not in page.text_content(".result")
    assert "chain" in page.text_content("table") and "state" in page.text_content("table")  # all fields shown
    if signature_type == "signature":
        screenshot(page, "playground-websigner-result")


def test_the_form_tab_waits_for_the_card_then_shows_its_dialog(rp_page, relying_party: RelyingParty,
                                                                web_server: WebServer) -> None:
    """WebSigner shows its page first and queues for the card after: while another dialog is open the tab
    waits (its page is claimed, nothing else), and gets its own request as soon as the card is free."""
    import asyncio
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    first = pool.submit(lambda: asyncio.run(web_server.server.post(
        {"content": base64.b64encode(b"first").decode()}, origin="https://first.example")))
    first_page = rp_page.context.new_page()
    first_page.goto(web_server.next_dialog_url())
    first_page.wait_for_selector("#request:not([hidden])")

    form_fields(relying_party, b"second", "signature")
    rp_page.goto(relying_party.origin + "/")
    rp_page.click("#go")
    rp_page.wait_for_url("**/dialog/**")
    # The wait IS the test: longer than the 10 s in which a dialog must be shown, and the tab still waits.
    rp_page.wait_for_timeout(12000)
    assert rp_page.is_hidden("#request") and rp_page.is_visible("#loading")
    first_page.fill("#pin", "123456")
    first_page.click("#sign")
    assert first.result(timeout=30)["status"] == "ok"
    answer_dialog(rp_page)
    assert rp_page.text_content("#origin") == relying_party.origin
    rp_page.wait_for_selector("#thanks")
    (fields,) = relying_party.received
    assert fields["status"] == ["ok"] and fields["state"] == ["order-42"]
