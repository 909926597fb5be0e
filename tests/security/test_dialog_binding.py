"""The dialog is bound to a visible, top-level tab (issue 10, item 2), replayed in Chromium with a hostile page.

The attacks: a page on another site loads ``/websigner?…`` as an ``<img>``, a ``no-cors`` fetch, a script or a
frame, or posts a WebSigner form into a tiny pop-up. Before the fix each started an operation whose dialog
the subresource (or the invisible pop-up) bound, so the user never saw it while it held the card and the
one-at-a-time lock until ``dialogTimeout``. And a page that knew a dialog's address bound it the same way.

Now a subresource request is refused before anything starts, a dialog page is only served to a top-level
navigation and is claimed only by its script in a visible window of at least 300×300 CSS pixels, and a
WebSigner page takes no place at the card until it is claimed.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import html
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digisign_web.web import dialog as webdialog
from digisign_web.web.dialog import WebDialog
from tests.support.net import free_port
from tests.support.servers import WebServer

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4)
USER_SITE = "https://eservice.example"


class AttackSite:
    """A plain-HTTP site on 127.0.0.1 (Chromium is told it is a public address) serving one hostile page."""

    def __init__(self) -> None:
        self.port = free_port()
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = site.html.encode() if self.path.startswith("/attack") else b"<!doctype html><title>x</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def attacker() -> Iterator[AttackSite]:
    site = AttackSite()
    yield site
    site.server.shutdown()


@pytest.fixture
def browser(browser_factory, trusted_home, attacker: AttackSite):
    """The user's browser: the attacker's site is public, and the user once allowed it local network access
    (the worst case: the page's requests do reach the server)."""
    browser = browser_factory(trusted_home, [f"--ip-address-space-overrides=127.0.0.1:{attacker.port}=public"])
    context = browser.new_context(no_viewport=True)  # real windows: a pop-up gets the size it asks for
    context.grant_permissions(["local-network-access"], origin=attacker.origin)
    return context


class Traffic:
    """Every request the browser makes to our server, with the status it got."""

    def __init__(self, context, base: str) -> None:
        self.seen: list[tuple[str, str, str, int | None]] = []  # method, path, resource type, status
        self.base = base
        context.on("requestfinished", self._finished)
        context.on("requestfailed", lambda r: self._record(r, None))

    def _finished(self, request) -> None:
        response = request.response()
        self._record(request, response.status if response else None)

    def _record(self, request, status: int | None) -> None:
        if request.url.startswith(self.base):
            self.seen.append((request.method, urllib.parse.urlsplit(request.url).path, request.resource_type, status))

    def paths(self, prefix: str) -> list[tuple[str, str, str, int | None]]:
        return [entry for entry in self.seen if entry[1].startswith(prefix)]


def server_log(server: WebServer) -> str:
    return server.server.log(wait=0)


def websigner_query(attacker: AttackSite, state: str = "hostile") -> str:
    return urllib.parse.urlencode({"content": base64.b64encode(b"hostile").decode(), "signatureType": "signature",
                                   "keyusages": "nonrepudiation", "returnUrl": f"{attacker.origin}/return",
                                   "state": state})


def sign_later(server: WebServer, content: bytes) -> concurrent.futures.Future:
    return POOL.submit(lambda: asyncio.run(server.server.post(
        {"content": base64.b64encode(content).decode(), "selector": {"keyusages": ["nonrepudiation"]}},
        origin=USER_SITE)))


def user_signs(context, server: WebServer, launched: str, pending: concurrent.futures.Future) -> None:
    """The user's own tab opens what the server launched, sees the request and signs it."""
    page = context.new_page()
    page.goto(launched)
    page.wait_for_selector("#request:not([hidden])", timeout=15000)
    assert page.text_content("#origin") == USER_SITE
    page.fill("#pin", "123456")
    page.click("#sign")
    answer = pending.result(timeout=30)
    assert answer["status"] == "ok", answer
    page.close()


def legit_request_is_served_now(context, server: WebServer) -> None:
    """The card is free: a legitimate request gets its dialog at once, and the user signs it."""
    asked = time.monotonic()
    pending = sign_later(server, b"the user's own document")
    launched = server.next_dialog_url(timeout=20)
    waited = time.monotonic() - asked
    assert waited < 3.0, f"a legitimate request waited {waited:.1f} s for the card"
    user_signs(context, server, launched, pending)


SUBRESOURCES = {  # {attr}: the URL in an HTML attribute; {js}: as a JavaScript string
    "img": '<img src="{attr}">',
    "script": '<script src="{attr}"></script>',
    "iframe": '<iframe src="{attr}" width="1" height="1"></iframe>',
    "no-cors GET": '<script>fetch({js}, {{mode: "no-cors", credentials: "include"}})</script>',
    "no-cors POST": '<script>const [url, query] = {js}.split("?"); const f = new FormData(); '
                    'for (const [k, v] of new URLSearchParams(query)) f.append(k, v); '
                    'fetch(url, {{method: "POST", mode: "no-cors", credentials: "include", body: f}})</script>',
}


@pytest.mark.parametrize("kind", SUBRESOURCES)
def test_subresource_starts_no_websigner_operation(browser, web_server: WebServer,
                                                   attacker: AttackSite, kind: str) -> None:
    traffic = Traffic(browser, web_server.base)
    url = f"{web_server.base}/websigner?{websigner_query(attacker)}"
    attacker.html = "<!doctype html><title>Cute cats</title>" + SUBRESOURCES[kind].format(
        attr=html.escape(url), js=json.dumps(url))
    page = browser.new_page()
    page.goto(f"{attacker.origin}/attack")
    deadline = time.monotonic() + 10
    while not traffic.paths("/websigner") and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # a poll: Playwright delivers the request events while it waits
    page.wait_for_load_state("networkidle")  # whatever the attack's request led to has happened by now
    assert traffic.paths("/websigner"), "the attack never reached the server"
    log = server_log(web_server)
    assert f"WebSigner request from {attacker.origin}" not in log  # nothing started
    assert "WebSigner request refused: not a top-level navigation" in log  # refused for what it is
    assert not traffic.paths("/dialog/"), traffic.paths("/dialog/")  # so there is no dialog to bind
    legit_request_is_served_now(browser, web_server)


POPUP_PAGE = """<!doctype html><title>Win a prize</title>
<form id="f" method="post" target="tiny" action="{base}/websigner">{inputs}</form>
<button id="go">Claim your prize</button>
<script>
document.getElementById("go").addEventListener("click", () => {{
  window.open("about:blank", "tiny", "popup,width=1,height=1,left=0,top=0");
  document.getElementById("f").submit();
  window.focus();
}});
</script>"""


def test_form_into_a_tiny_popup_takes_no_dialog_and_no_card(browser, web_server: WebServer,
                                                             attacker: AttackSite) -> None:
    traffic = Traffic(browser, web_server.base)
    fields = urllib.parse.parse_qsl(websigner_query(attacker, "popup"))
    inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields)
    attacker.html = POPUP_PAGE.format(base=web_server.base, inputs=inputs)
    page = browser.new_page()
    page.goto(f"{attacker.origin}/attack")
    with page.expect_popup() as popup_info:
        page.click("#go")  # the user clicks something on the hostile page
    popup = popup_info.value
    popup.wait_for_url(re.compile(r".*/dialog/.*"), timeout=10000)
    size = popup.evaluate("[innerWidth, innerHeight]")
    assert size[0] < 300 and size[1] < 300, size  # Chromium's smallest pop-up: too small to show a dialog
    started = time.monotonic()

    # While the pop-up is open, the card is free: the user's own request is served at once.
    legit_request_is_served_now(browser, web_server)

    # The pop-up never claimed its dialog, never showed the request, and ended unseen.
    popup.wait_for_timeout(max(0.0, 11.0 - (time.monotonic() - started)) * 1000)  # past the 10 s show deadline
    assert popup.is_hidden("#request")
    claims = [entry for entry in traffic.paths("/dialog/") if entry[1].endswith("/claim")]
    assert len(claims) == 1, claims  # the user's own dialog only
    dialog_pages = [entry for entry in traffic.paths("/dialog/") if entry[2] == "document"]
    assert len(dialog_pages) == 2  # the pop-up's page and the user's


ATTACK_ON_A_KNOWN_URL = """<!doctype html><title>Nothing to see</title>
<img src="{attr}"><iframe src="{attr}" width="1" height="1"></iframe><script src="{attr}"></script>
<link rel="prefetch" href="{attr}">
<script>fetch({js}, {{mode: "no-cors", credentials: "include"}});
fetch({js}.split("#")[0] + "/claim", {{method: "POST", mode: "no-cors", credentials: "include", body: "{{}}"}});
</script>"""


def test_a_known_dialog_address_is_not_bound_by_subresources(browser, web_server: WebServer,
                                                             attacker: AttackSite) -> None:
    pending = sign_later(web_server, b"the user's own document")
    launched = web_server.next_dialog_url()
    # The worst case: the page knows the dialog's full address (what the user's tab is about to open).
    if launched.startswith("file:"):
        text = Path(urllib.parse.urlsplit(launched).path).read_text()
        url = html.unescape(re.search(r'url=([^"]+)"', text).group(1))
    else:
        url = launched
    traffic = Traffic(browser, web_server.base)
    attacker.html = ATTACK_ON_A_KNOWN_URL.format(attr=html.escape(url), js=json.dumps(url))
    page = browser.new_page()
    page.goto(f"{attacker.origin}/attack")
    page.wait_for_load_state("networkidle")  # every subresource and fetch of the attack has been sent
    assert traffic.paths("/dialog/"), "the attack never reached the server"
    # The user's own tab still gets the dialog, sees the request and signs.
    user_signs(browser, web_server, launched, pending)


async def test_unshown_dialogs_end_soon_and_count_in_the_spam_guard(
        make_server, monkeypatch, unused_tcp_port_factory) -> None:
    """In-process, with the show deadline shortened: a dialog that no tab claims ends long before dialogTimeout,
    frees the card, and counts like a cancel, so a page cannot keep re-sending requests nobody sees."""
    monkeypatch.setattr(webdialog, "SHOW_TIMEOUT", 0.3, raising=False)
    launched: list[str] = []
    port = unused_tcp_port_factory()
    dialog = WebDialog(f"https://localhost:{port}", timeout=2.0, open_url=launched.append)
    server = await make_server(dialog=dialog, port=port, dialog_timeout=2.0, spam_cancel_limit=2)
    started = time.monotonic()
    for _ in range(2):
        answer = await server.sign({"content": base64.b64encode(b"unseen").decode()})
        assert answer["reasonCode"] == 401 and "not shown" in answer["reasonText"], answer
    assert time.monotonic() - started < 1.5  # 2 x 0.3 s, not 2 x dialogTimeout
    assert len(launched) == 2 and all(url.startswith("file://") for url in launched)
    assert not any(Path(urllib.parse.urlsplit(url).path).exists() for url in launched)  # bootstrap pages gone
    answer = await server.sign({"content": base64.b64encode(b"again").decode()})
    assert answer["reasonCode"] == 403 and "too many" in answer["reasonText"], answer
    other = await server.sign({"content": base64.b64encode(b"x").decode()}, origin="https://other.example")
    assert other["reasonCode"] == 401  # another origin is not punished
