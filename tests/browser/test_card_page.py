"""The "My card" page in Debian's Chromium against a real `digisign-web serve --virtual-card fineid-v4` process:
certificates and counters, changing PIN1, PIN2 blocked by five wrong tries through the page's API and unblocked
with the PUK in the page, the page's rules equal to the server's, and another site that can neither read the API
nor frame the page (D46-D48). Plain `def`: Playwright's sync API cannot run inside an asyncio loop."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from digisign_web.scs.pin_rules import PinPolicy, check
from tests.support.browser import make_home, screenshot
from tests.support.net import free_port
from tests.support.servers import WebServer, start_web_server, stop

WRONG = "000000"


@pytest.fixture
def page(browser_factory, trusted_home, web_server: WebServer):
    browser = browser_factory(trusted_home)
    page = browser.new_context(viewport={"width": 1000, "height": 1100}).new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.problems = problems
    response = page.goto(web_server.base + "/card")
    assert response.status == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    page.wait_for_selector(".one-card .counters tr")
    return page


def counters(page) -> dict[str, str]:
    return {row.get_attribute("data-pin"): row.inner_text().split("\t")[-1].strip()
            for row in page.query_selector_all(".one-card .counters tr")}


def api(page, path: str, body: dict) -> dict:
    """The page's own API, called from the page (its origin, its cookie, its CSRF token)."""
    return page.evaluate("""async ([path, body]) => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/card/api/' + path, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}, body: JSON.stringify(body)});
        return r.json();
    }""", [path, body])


def test_certificates_counters_change_block_and_unblock(page, web_server: WebServer) -> None:
    certs = page.query_selector_all(".one-card .certs li")
    assert len(certs) >= 2
    text = page.inner_text(".one-card .certs")
    assert "Signature (non-repudiation)" in text and "Authentication" in text and "valid until" in text
    assert counters(page) == {"pin1": "5 of 5 tries left", "pin2": "5 of 5 tries left", "puk": "5 of 5 tries left"}
    for form in page.query_selector_all("form.pin-form input[type=password]"):
        assert form.get_attribute("autocomplete") == "off"
    assert page.get_attribute('form[data-pin="pin2"] input[name=new]', "inputmode") == "numeric"

    # A rule broken in the page: shown at once, nothing sent.
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "/card/api/" in request.url else None)
    pin1 = 'form.change[data-pin="pin1"]'
    page.fill(f"{pin1} input[name=old]", "1234")
    page.fill(f"{pin1} input[name=new]", "12")
    page.fill(f"{pin1} input[name=again]", "13")
    page.click(f"{pin1} button[type=submit]")
    assert page.inner_text(f"{pin1} .broken") == ("New PIN: must have at least 4 characters\n"
                                                  "New PIN again: the two entries of the new PIN differ")
    assert sent == []

    # Change PIN1.
    page.fill(f"{pin1} input[name=old]", "1234")
    page.fill(f"{pin1} input[name=new]", "2580")
    page.fill(f"{pin1} input[name=again]", "2580")
    page.click(f"{pin1} button[type=submit]")
    page.wait_for_selector(f"{pin1} .outcome.ok:text('changed')")
    assert page.inner_text(f"{pin1} .outcome") == "PIN1 (basic PIN) changed."
    assert page.input_value(f"{pin1} input[name=old]") == ""  # the PINs leave the form once sent
    assert all("/card/api/" in url and "2580" not in url for url in sent)
    again = api(page, "change", {"pin": "pin1", "reader": "digisign-web virtual reader", "old": "1234",
                                 "new": "4826", "again": "4826"})
    assert (again["code"], again["triesLeft"]) == ("wrong-pin", 4)  # the old PIN1 is gone

    # Block PIN2 through the API: each wrong PIN costs exactly one try, nothing is retried.
    body = {"pin": "pin2", "reader": "digisign-web virtual reader", "old": WRONG, "new": "975319", "again": "975319"}
    seen = []
    for _ in range(5):
        result = api(page, "change", body)
        seen.append((result["code"], result["triesLeft"]))
    assert seen == [("wrong-pin", 4), ("wrong-pin", 3), ("wrong-pin", 2), ("wrong-pin", 1), ("blocked", 0)]
    assert api(page, "change", {**body, "old": "123456"})["code"] == "blocked"  # refused before the card
    page.click("#reload")
    page.wait_for_function("document.querySelector('.one-card .counters tr[data-pin=pin2] .blocked') !== null")
    assert counters(page)["pin2"] == "blocked"

    # Unblock with the PUK in the page; a wrong PUK first.
    unblock = "form.unblock"
    assert page.input_value(f"{unblock} select[name=pin]") == "pin2"
    page.fill(f"{unblock} input[name=puk]", "87654321")
    page.fill(f"{unblock} input[name=new]", "135790")
    page.fill(f"{unblock} input[name=again]", "135790")
    page.click(f"{unblock} button[type=submit]")
    page.wait_for_selector(f"{unblock} .outcome.bad")
    assert page.inner_text(f"{unblock} .outcome") == "Wrong PUK. 4 tries left. Nothing was changed."
    page.wait_for_function("document.querySelector('.one-card .counters tr[data-pin=puk]').innerText.includes('4 of')")
    page.fill(f"{unblock} input[name=puk]", "12345678")
    page.fill(f"{unblock} input[name=new]", "135790")
    page.fill(f"{unblock} input[name=again]", "135790")
    page.click(f"{unblock} button[type=submit]")
    page.wait_for_selector(f"{unblock} .outcome.ok:text('unblocked')")
    assert counters(page) == {"pin1": "4 of 5 tries left", "pin2": "5 of 5 tries left", "puk": "5 of 5 tries left"}
    # The new PIN2 is the card's now.
    check_new = api(page, "change", {**body, "old": "135790", "new": "135797", "again": "135797"})
    assert check_new["ok"], check_new
    screenshot(page, "card-page")
    assert page.problems == []


def test_the_pages_rules_are_the_servers(page) -> None:
    """static/card.rules.mjs and scs/pin_rules.py give the same codes for the same PINs and policies."""
    policies = [PinPolicy(6, 12, True, 0), PinPolicy(4, 8, False, 31), PinPolicy(4, 12, True, 7),
                PinPolicy(14, 12, True, 0), PinPolicy(4, 12, False, 24), PinPolicy(4, 12, False, 4)]
    values = ["", "1", "12345", "123456", "111111", "654321", "191919", "0404", "0405", "abcD12", "Abc",
              "12a4", "ab\u00e4c", "1234567890123", "7890", "aaaa", "abcd", "\U0001F600\U0001F600\U0001F600\U0001F600"]
    cases = [(p.as_json(), v, v[::-1]) for p in policies for v in values]
    expected = [[(r.code, r.field) for r in check(PinPolicy(p["min"], p["max"], p["digitsOnly"], p["complexity"]),
                                                   v, "new", again)] for p, v, again in cases]
    got = page.evaluate("""async (cases) => {
        const { checkPin } = await import('/static/card.rules.mjs');
        return cases.map(([policy, value, again]) => checkPin(policy, value, 'new', again).map(r => [r.code, r.field]));
    }""", cases)
    assert [[tuple(x) for x in codes] for codes in got] == expected
    assert any(expected)  # the vectors do break rules


def attacker_page(target: str) -> bytes:
    return (f"""<!doctype html><html><head><meta charset="utf-8"><title>evil</title></head><body>
<iframe name="card" src="{target}/card" width="600" height="400"></iframe>
<pre id="status">pending</pre><pre id="post">pending</pre>
<script>
fetch("{target}/card/api/status", {{method: "POST", credentials: "include",
    headers: {{"Content-Type": "application/json"}}, body: "{{}}"}})
  .then(r => r.text()).then(t => document.getElementById("status").textContent = "READ " + t)
  .catch(e => document.getElementById("status").textContent = "BLOCKED " + e);
fetch("{target}/card/api/change", {{method: "POST", mode: "no-cors", credentials: "include",
    headers: {{"Content-Type": "text/plain"}},
    body: JSON.stringify({{pin: "pin2", reader: "digisign-web virtual reader", old: "000000", new: "975319",
                          again: "975319"}})}})
  .then(r => document.getElementById("post").textContent = "SENT " + r.type)
  .catch(e => document.getElementById("post").textContent = "BLOCKED " + e);
</script></body></html>""").encode()


@pytest.fixture
def attacker(web_server: WebServer) -> Iterator[str]:
    body = attacker_page(web_server.base)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_another_site_can_neither_read_the_api_nor_frame_the_page(page, web_server: WebServer, attacker: str) -> None:
    # `page` has visited /card, so this browser holds the page's cookie: the refusals below are not for its lack.
    evil = page.context.new_page()
    evil.goto(attacker)
    evil.wait_for_function("document.getElementById('status').textContent !== 'pending' && "
                           "document.getElementById('post').textContent !== 'pending'", timeout=15_000)
    evil.wait_for_load_state("load")
    assert evil.text_content("#status").startswith("BLOCKED"), evil.text_content("#status")
    frame = next(f for f in evil.frames if f.name == "card")
    try:
        html = frame.evaluate("() => document.documentElement.outerHTML")
    except Exception as exc:  # Chromium's own error page
        html = f"<unreadable: {exc}>"
    assert "My card" not in html and "csrf-token" not in html
    # The blind no-cors post changed nothing: PIN2 still has all its tries.
    result = api(page, "status", {})
    assert {p["id"]: p["triesLeft"] for p in result["cards"][0]["pins"]}["pin2"] == 5
    log = web_server.server.log()
    assert "refused" in log and WRONG not in log and "975319" not in log


def test_the_signing_dialog_links_a_blocked_pin_to_my_card(page, web_server: WebServer) -> None:
    body = {"pin": "pin2", "reader": "digisign-web virtual reader", "old": WRONG, "new": "975319", "again": "975319"}
    assert [api(page, "change", body)["code"] for _ in range(5)][-1] == "blocked"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pending = pool.submit(lambda: asyncio.run(web_server.server.post(
            {"content": base64.b64encode(b"x").decode(), "selector": {"keyusages": ["nonrepudiation"]}})))
        dialog = page.context.new_page()
        assert dialog.goto(web_server.next_dialog_url()).status == 200
        dialog.wait_for_selector("#request:not([hidden])")
        assert "My card" in dialog.text_content("#error") and dialog.is_disabled("#sign")
        link = dialog.wait_for_selector("#error a.my-card-link")
        assert link.get_attribute("href") == "/card" and link.inner_text() == "Open My card"
        with page.context.expect_page() as opened:
            link.click()
        card = opened.value
        card.wait_for_selector(".one-card .counters tr[data-pin=pin2] .blocked")  # the page opened, same origin
        assert card.url == web_server.base + "/card"
        dialog.click("#cancel")
        assert pending.result(timeout=30)["reasonCode"] == 401


def test_unblocking_off_and_the_page_in_finnish(browser_factory, chromium_path, tmp_path) -> None:
    """disablePinUnblocking=1 removes the unblock form (the API refuses it too); Language=fi translates the page,
    the rule texts included; pinComplexityCheck=1 is enforced in the page."""
    conf = tmp_path / "DigiSign.conf"
    conf.write_text("disablePinUnblocking=1\nLanguage=fi\npinComplexityCheck=1\n")
    (tmp_path / "fi").mkdir()
    server = start_web_server(tmp_path / "fi", "--config", str(conf))
    try:
        page = browser_factory(make_home(tmp_path / "home", server.server.ca)).new_page()
        assert page.goto(server.base + "/card").status == 200
        page.wait_for_selector(".one-card .counters tr")
        assert page.inner_text("h1") == "Korttini"
        assert page.query_selector("form.unblock") is None
        assert page.is_visible(".unblock-disabled") and "disablePinUnblocking" in page.inner_text(".unblock-disabled")
        assert "5/5 yritystä jäljellä" in page.inner_text(".counters")
        pin2 = 'form.change[data-pin="pin2"]'
        for name, value in (("old", "123456"), ("new", "111111"), ("again", "111111")):
            page.fill(f"{pin2} input[name={name}]", value)
        page.click(f"{pin2} button[type=submit]")
        assert page.inner_text(f"{pin2} .broken") == ("Uusi PIN-koodi: ei saa olla yhtä toistettua numeroa "
                                                      "(kuten 1111)")
    finally:
        stop(server.server)
