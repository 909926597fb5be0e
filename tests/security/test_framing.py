"""No page of this server renders inside another site's frame, and another site's script reads nothing
(issue 10, items 1 and 5), replayed in Debian's Chromium with the server's CA trusted.

The attack: ``/static/playground.html`` and ``/static/dialog.html`` were served raw, without CSP or
``X-Frame-Options``, so they ran inside a cross-origin frame (where a page can overlay and clickjack
them); and a cross-site ``fetch`` of ``/playground/status`` read the cardholder's identity. The attacker
here is a page on another origin (http://127.0.0.1:<port>) that frames our pages and fetches the status.

Plain ``def`` tests: Playwright's sync API cannot run inside an asyncio loop.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.net import free_port
from tests.support.servers import WebServer

FRAMED = ("/", "/static/playground.html", "/static/dialog.html", "/playground/status", "/no/such/page")
# Text that only our pages contain (titles, the playground's tabs, the status JSON, the 403 and 404 texts).
OURS = ("Signing playground", "Signature request", "digisign-web", "Request builder", '"readers"', "404: Not Found",
        "{{lang}}", "{{csrf}}", "answer only its own pages")


def attacker_page(target: str) -> bytes:
    frames = "".join(f'<iframe name="f{i}" src="{target}{path}" width="400" height="300"></iframe>'
                     for i, path in enumerate(FRAMED))
    return (f"""<!doctype html><html><head><meta charset="utf-8"><title>evil</title></head><body>
<h1>A page of another site</h1>{frames}<pre id="status">pending</pre>
<script>
fetch("{target}/playground/status").then(r => r.text())
  .then(t => document.getElementById("status").textContent = "READ " + t)
  .catch(e => document.getElementById("status").textContent = "BLOCKED " + e);
</script></body></html>""").encode()


@pytest.fixture
def attacker(web_server: WebServer) -> Iterator[str]:
    page = attacker_page(web_server.base)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def frame_text(frame) -> str:
    try:
        return frame.evaluate("() => document.documentElement ? document.documentElement.outerHTML : ''")
    except Exception as exc:  # an error page that scripts cannot enter
        return f"<unreadable: {exc}>"


def test_framed_pages_and_cross_site_status_read(browser_factory, trusted_home, web_server: WebServer,
                                                 attacker: str) -> None:
    page = browser_factory(trusted_home).new_page()
    # Sanity: this browser trusts the server, so a refusal below is the server's doing, not TLS.
    assert page.goto(web_server.base + "/").status == 200
    assert "Signing playground" in page.title()
    page.goto(attacker)
    page.wait_for_function("document.getElementById('status').textContent !== 'pending'", timeout=15_000)
    page.wait_for_load_state("load")  # the page's load event comes after every frame has loaded (or failed)
    page.wait_for_load_state("networkidle")
    status = page.text_content("#status")
    assert status.startswith("BLOCKED"), status  # the script read nothing
    children = [frame for frame in page.frames if frame is not page.main_frame]
    assert len(children) == len(FRAMED)
    rendered = {}
    for frame in children:
        text = frame_text(frame)
        rendered[frame.name] = (frame.url, [marker for marker in OURS if marker in text])
    # Chromium shows its own error page in each frame: none of ours was rendered there.
    assert all(not markers and not url.startswith(web_server.base) for url, markers in rendered.values()), rendered
