"""The relying-party sites the browser tests sign from, on another origin than the SCS server (plain HTTP on
127.0.0.1, a free port):

* the scs.js site: tests/browser/relying_party/ plus /scs.js and /scs.mjs straight from static/, and fake
  '/version' endpoints to exercise discovery (``site``, ``open_page``);
* the WebSigner site: JavaScript-free HTML forms that post to /websigner, and a /return that records what it is
  posted (``relying_party``, ``rp_page``)."""

from __future__ import annotations

import base64
import html
import json
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.net import free_port
from tests.support.paths import STATIC, TESTS
from tests.support.servers import WebServer

SITE = TESTS / "browser" / "relying_party"  # the scs.js site's pages


# --- the scs.js site --------------------------------------------------------------------------------------

FAKE_VERSION = {"version": "1.1", "httpMethods": "GET, POST", "contentTypes": "data, digest",
                "signatureTypes": "signature", "selectorAvailable": True, "hashAlgorithms": "SHA256"}


class _SiteHandler(BaseHTTPRequestHandler):
    """The test site's pages, /scs.js and /scs.mjs straight from static/ (not copied), and a few fake
    '/version' endpoints on the page's own origin to exercise discovery's ordering and diagnosis."""

    FILES: ClassVar[dict[str, Path]] = {
        "/": SITE / "index.html", "/index.html": SITE / "index.html", "/module.html": SITE / "module.html",
        "/rp.js": SITE / "rp.js", "/style.css": SITE / "style.css",
        "/scs.js": STATIC / "scs.js", "/scs.mjs": STATIC / "scs.mjs",
    }
    TYPES: ClassVar[dict[str, str]] = {
        ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in self.FILES:
                file = self.FILES[path]
                self._send(200, self.TYPES[file.suffix], file.read_bytes())
            elif path == "/slow-scs/version":  # a valid SCS answer, but later than the real server's
                time.sleep(0.7)  # the delay IS the test: discovery must still prefer this earlier base
                self._send(200, "application/json", json.dumps(FAKE_VERSION).encode())
            elif path == "/not-scs/version":
                self._send(200, "application/json", b'{"hello": "world"}')
            elif path == "/hang/version":
                time.sleep(3)  # the delay IS the test: longer than the page's discovery timeout (400 ms)
                self._send(200, "application/json", json.dumps(FAKE_VERSION).encode())
            else:
                self._send(404, "text/plain", b"not found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser gave up (timeouts, losers of a discovery)

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Site:
    port: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), _SiteHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="relying-party", daemon=True)
    thread.start()
    yield Site(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@dataclass
class RelyingPartyPage:
    page: object
    console: list[str]

    def call(self, function: str, *args: object) -> dict:
        """window.<function>(...args) in the page; returns its {ok, value|error} outcome."""
        return self.page.evaluate(f"(args) => window.{function}(...args)", list(args))

    def text(self, element_id: str) -> str:
        return self.page.locator(f"#{element_id}").inner_text()


OpenPage = Callable[..., RelyingPartyPage]


@pytest.fixture
def open_page(browser_factory, site: Site) -> OpenPage:
    def open_(home: Path, path: str = "/", public: bool = True, grant: bool = True) -> RelyingPartyPage:
        # "public" makes the test site an Internet page for Local Network Access, as a real e-service is.
        args = [f"--ip-address-space-overrides=127.0.0.1:{site.port}=public"] if public else []
        browser = browser_factory(home, args)
        context = browser.new_context()
        if grant:
            context.grant_permissions(["local-network-access"], origin=site.origin)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.goto(site.origin + path)
        page.wait_for_function("document.body && document.body.dataset.ready === '1'", timeout=10_000)
        return RelyingPartyPage(page, console)

    return open_


# --- the WebSigner site -----------------------------------------------------------------------------------


@dataclass
class RelyingParty:
    """A plain-HTTP site on 127.0.0.1:<port> whose pages hold JavaScript-free forms (the /popup page is
    the post_message variant and uses JS on purpose), and whose /return records what it is posted."""

    port: int
    scs_port: int
    received: list[dict[str, list[str]]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    upload: bool = False

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def form_page(self) -> str:
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in self.fields.items())
        file_input = '<input type="file" name="file" id="file">' if self.upload else ""
        enctype = ' enctype="multipart/form-data"' if self.upload else ""
        return (f'<!doctype html><meta charset=utf-8><title>Relying party</title><h1>Tax office (test)</h1>'
                f'<form method="post" action="https://localhost:{self.scs_port}/websigner"{enctype}>'
                f'{inputs}{file_input}<button id="go" type="submit">Sign with your ID card</button></form>')

    def popup_page(self) -> str:
        return (f'<!doctype html><meta charset=utf-8><title>Relying party (popup)</title>'
                f'<form id="f" method="post" target="websigner" action="https://localhost:{self.scs_port}/websigner">'
                + "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                          for k, v in self.fields.items())
                + '</form><button id="go">Sign</button><pre id="out"></pre>'
                '<script src="/popup.js"></script>')


POPUP_JS = b"""
document.getElementById("go").addEventListener("click", () => {
  window.open("about:blank", "websigner");
  document.getElementById("f").submit();
});
window.addEventListener("message", (event) => {
  document.getElementById("out").textContent = JSON.stringify({origin: event.origin, data: event.data});
});
"""


@pytest.fixture
def relying_party(web_server: WebServer) -> Iterator[RelyingParty]:
    rp = RelyingParty(free_port(), web_server.server.port)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, body: bytes, kind: str = "text/html; charset=utf-8") -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/popup":
                self._send(rp.popup_page().encode())
            elif self.path == "/popup.js":
                self._send(POPUP_JS, "text/javascript")
            else:
                self._send(rp.form_page().encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            rp.received.append(urllib.parse.parse_qs(body, keep_blank_values=True))
            self._send(b"<!doctype html><title>Thanks</title><h1 id=thanks>Thank you</h1>")

    server = ThreadingHTTPServer(("127.0.0.1", rp.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rp
    server.shutdown()


@pytest.fixture
def rp_page(browser_factory, trusted_home, relying_party: RelyingParty):
    # The relying party plays a public web site; the user has allowed it local network access.
    browser = browser_factory(trusted_home, [f"--ip-address-space-overrides=127.0.0.1:{relying_party.port}=public"])
    context = browser.new_context()
    context.grant_permissions(["local-network-access"], origin=relying_party.origin)
    return context.new_page()


def answer_dialog(page, pin: str = "123456") -> None:
    page.wait_for_selector("#request:not([hidden])")
    page.fill("#pin", pin)
    page.click("#sign")


def form_fields(rp: RelyingParty, content: bytes, signature_type: str, **extra: str) -> None:
    rp.fields = {"content": base64.b64encode(content).decode(), "signatureType": signature_type,
                 "returnUrl": f"{rp.origin}/return", "state": "order-42", "keyusages": "nonrepudiation", **extra}
