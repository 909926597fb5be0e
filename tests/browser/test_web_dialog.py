"""The web dialog in a real headless Chromium: what it shows, PIN handling (wrong, then right; blocked),
cancel, single use, CSRF, framing, and one dialog at a time across origins."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.browser import screenshot
from tests.support.cards import answer_chain
from tests.support.servers import WebServer

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4)


def sign_later(server: WebServer, body: dict, origin: str = "https://eservice.example") -> concurrent.futures.Future:
    """Send an SCS request as a page would, without waiting for the user's answer."""
    return POOL.submit(lambda: asyncio.run(server.server.post(body, origin=origin)))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def verify(answer: dict, content: bytes) -> None:
    leaf = answer_chain(answer)[0]
    algorithm = getattr(hashes, answer["signatureAlgorithm"].split("with")[0])()
    leaf.public_key.verify(base64.b64decode(answer["signature"]), content, ec.ECDSA(algorithm))


@pytest.fixture
def page(browser_factory, trusted_home):
    browser = browser_factory(trusted_home)
    context = browser.new_context(viewport={"width": 760, "height": 900})
    return context.new_page()


def open_dialog(page, web_server: WebServer):
    url = web_server.next_dialog_url()
    response = page.goto(url)
    assert response.status == 200
    page.wait_for_selector("#request:not([hidden])")
    return url


def test_sign_through_the_web_dialog(page, web_server: WebServer) -> None:
    content = "Vuokrasopimus 2026, Hämeentie 1 A 2"
    pending = sign_later(web_server, {"content": b64(content), "info": "Sign the rental agreement",
                                      "selector": {"keyusages": ["nonrepudiation"]}})
    open_dialog(page, web_server)
    assert page.text_content("#origin") == "https://eservice.example"
    assert page.text_content("#info") == "Sign the rental agreement"
    assert f"{len(content.encode())} bytes" in page.text_content("#what")
    assert "SPECIMEN-TESTINEN TIINA" in page.text_content("#choices")
    assert "5 tries left" in page.text_content("#tries")
    assert "6–12 digits" in page.text_content("#pin-hint")
    screenshot(page, "dialog")
    page.fill("#pin", "123456")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    assert "Signed" in page.text_content("#result")
    answer = pending.result(timeout=30)
    assert answer["status"] == "ok", answer
    verify(answer, content.encode())


def test_security_headers_and_single_use(page, web_server: WebServer) -> None:
    pending = sign_later(web_server, {"content": b64("x")})
    launched = web_server.next_dialog_url()
    assert launched.startswith("file://")  # the launcher never sees the dialog's address (webdialog.py)
    with page.expect_response(lambda r: "/dialog/" in r.url and r.request.resource_type == "document") as info:
        page.goto(launched)
    response = info.value
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    page.wait_for_selector("#request:not([hidden])")
    url = page.url
    assert "#" not in url  # the page took the key out of the address bar
    assert not Path(urllib.parse.urlsplit(launched).path).exists()  # the bootstrap page is gone once used
    second = page.context.new_page()
    assert second.goto(url).status == 410  # the dialog is taken once
    # The dialog's API refuses anyone without the page's cookie and CSRF token.
    context = ssl.create_default_context(cafile=str(web_server.server.ca))
    forged = urllib.request.Request(url + "/answer", data=json.dumps({"choice": 0, "pin": "123456"}).encode(),
                                    headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(forged, context=context, timeout=10)
    assert info.value.code == 403
    page.click("#cancel")
    page.wait_for_selector("#done:not([hidden])")
    assert "Cancelled" in page.text_content("#result")
    answer = pending.result(timeout=30)
    assert (answer["status"], answer["reasonCode"]) == ("failed", 401)


def test_wrong_pin_then_right_pin(page, web_server: WebServer) -> None:
    pending = sign_later(web_server, {"content": b64("retry"), "selector": {"keyusages": ["nonrepudiation"]}})
    open_dialog(page, web_server)
    page.fill("#pin", "12345")  # too short: refused in the page, the card never sees it
    page.click("#sign")
    assert "6–12 digits" in page.text_content("#error")
    page.fill("#pin", "654321")
    page.click("#sign")
    page.wait_for_selector("text=Wrong PIN. 4 tries left.")
    assert "4 tries left" in page.text_content("#tries")
    screenshot(page, "dialog-wrong-pin")
    page.fill("#pin", "123456")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    answer = pending.result(timeout=30)
    assert answer["status"] == "ok", answer
    verify(answer, b"retry")


def test_blocked_pin_explains_the_puk(page, web_server: WebServer) -> None:
    pending = sign_later(web_server, {"content": b64("x"), "selector": {"keyusages": ["nonrepudiation"]}})
    open_dialog(page, web_server)
    for left in (4, 3, 2, 1):  # the user keeps typing wrong PINs into the same dialog
        page.fill("#pin", "000000")
        page.click("#sign")
        page.wait_for_selector(f"text=Wrong PIN. {left} tries left.")
    assert "after that the PIN is blocked" in page.text_content("#tries")
    page.fill("#pin", "000000")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    assert "blocked" in page.text_content("#result") and "PUK" in page.text_content("#result")
    answer = pending.result(timeout=30)
    assert answer["reasonCode"] == 401 and "blocked" in answer["reasonText"]

    pending = sign_later(web_server, {"content": b64("x"), "selector": {"keyusages": ["nonrepudiation"]}})
    page = page.context.new_page()
    open_dialog(page, web_server)
    assert "PUK" in page.text_content("#error")
    assert page.is_disabled("#sign")
    screenshot(page, "dialog-blocked")
    page.click("#cancel")
    assert pending.result(timeout=30)["reasonCode"] == 401


def test_second_origin_waits_for_the_first_dialog(page, web_server: WebServer) -> None:
    first = sign_later(web_server, {"content": b64("first")}, origin="https://first.example")
    open_dialog(page, web_server)
    second = sign_later(web_server, {"content": b64("second")}, origin="https://second.example")
    with pytest.raises(concurrent.futures.TimeoutError):
        second.result(timeout=1.0)  # queued behind the open dialog, not shown meanwhile
    assert not web_server.urls.read_text().splitlines()[web_server.seen:]
    page.fill("#pin", "123456")
    page.click("#sign")
    assert first.result(timeout=30)["status"] == "ok"
    second_page = page.context.new_page()
    open_dialog(second_page, web_server)
    assert second_page.text_content("#origin") == "https://second.example"
    second_page.fill("#pin", "123456")
    second_page.click("#sign")
    assert second.result(timeout=30)["status"] == "ok"


def test_dialog_in_finnish_on_a_phone(browser_factory, trusted_home, web_server: WebServer) -> None:
    browser = browser_factory(trusted_home)
    context = browser.new_context(locale="fi-FI", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    pending = sign_later(web_server, {"content": b64("puhelin"), "info": "Allekirjoita sopimus"})
    open_dialog(page, web_server)
    assert page.text_content("#sign") == "Allekirjoita"
    assert "yritystä jäljellä" in page.text_content("#tries")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390  # no horizontal scrolling on a phone-sized screen
    screenshot(page, "dialog-fi-phone")
    page.click("#cancel")
    assert pending.result(timeout=30)["reasonCode"] == 401


def test_closing_the_dialog_cancels_at_once(page, web_server: WebServer) -> None:
    pending = sign_later(web_server, {"content": b64("closed")})
    open_dialog(page, web_server)
    page.close(run_before_unload=True)
    answer = pending.result(timeout=5)  # not after dialogTimeout (120 s)
    assert (answer["status"], answer["reasonCode"]) == ("failed", 401) and "cancel" in answer["reasonText"]


def test_a_dialog_nobody_shows_ends_after_ten_seconds(web_server: WebServer) -> None:
    """The launcher opened nothing (no browser, a hidden tab): the request ends, and the card is free again."""
    pending = sign_later(web_server, {"content": b64("unseen")})
    web_server.next_dialog_url()
    answer = pending.result(timeout=20)
    assert answer["reasonCode"] == 401 and "not shown" in answer["reasonText"]
