"""The cross-origin surface is exactly the SCS and WebSigner interfaces (issue 10, item 1).

The attack: any website read ``GET /playground/status`` (every certificate subject with the personal
identity code, the card serial, the PIN counters) with a cross-site ``fetch``, because the middleware
echoed any ``Origin`` into ``Access-Control-Allow-Origin`` on every path. It held over plain HTTP and with
``allowedOrigins`` or ``HTTPSignerDisabled`` set. A cross-site form could also make
``/playground/websigner-result`` render its fields on https://localhost.

Each request below carries what Chromium sends for that attack (``Origin``, ``Sec-Fetch-*``), against a
real ``serve`` process; the browser itself replays the status read and the framing in test_framing.py.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.support.net import free_port
from tests.support.servers import RunningServer
from tests.support.wait import wait_until

EVIL = "https://evil.example"
ALLOWED = "https://eservice.example"
CROSS_SITE_FETCH = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
SAME_ORIGIN_FETCH = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}


def config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "DigiSign.conf"
    path.write_text(text)
    return str(path)


async def fetch(server: RunningServer, method: str, path: str, headers: dict[str, str], base: str | None = None,
                data: object = None) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as session, session.request(
            method, (base or server.base) + path, ssl=server.ssl(), headers=headers, data=data,
            allow_redirects=False) as response:
        return response.status, dict(response.headers), await response.text()


def wait_for_port(port: int, timeout: float = 15) -> None:
    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout, f"something to listen on port {port}")


@pytest.mark.parametrize("setting", ["default", "allowedOrigins=*", "HTTPSignerDisabled=1", "httpPorts"])
def test_cross_site_status_read(served: Callable[..., RunningServer], tmp_path: Path, setting: str) -> None:
    http_port = free_port()
    text = {"default": "", "httpPorts": f"httpPorts={http_port}\n"}.get(setting, setting + "\n")
    server = served("--config", config(tmp_path, text))
    base = server.base
    if setting == "httpPorts":
        wait_for_port(http_port)
        base = f"http://localhost:{http_port}"
    own = asyncio.run(fetch(server, "GET", "/playground/status", SAME_ORIGIN_FETCH, base))
    assert own[0] == 200 and "readers" in own[2]  # the playground itself still reads it
    serial = own[2].split('"serial": "', 1)[1].split('"', 1)[0] if '"serial": "' in own[2] else "readers"
    attacks = [
        CROSS_SITE_FETCH,
        {"Origin": EVIL},  # a browser that sends no Sec-Fetch-* headers
        {"Origin": "https://localhost:1", "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"},  # another port
        {"Origin": "null", "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"},  # a sandboxed frame
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script"},  # <script src>
    ]
    for headers in attacks:
        status, response_headers, body = asyncio.run(fetch(server, "GET", "/playground/status", headers, base))
        assert status == 403, (headers, status)
        assert "readers" not in body and serial not in body
        assert "Access-Control-Allow-Origin" not in response_headers
    # Nor does a preflight open the door.
    status, response_headers, _ = asyncio.run(fetch(server, "OPTIONS", "/playground/status", {
        **CROSS_SITE_FETCH, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Private-Network": "true"}, base))
    assert status >= 400 and not any(h.startswith("Access-Control-Allow") for h in response_headers)


def test_cors_only_on_scs_for_allowed_origins(served: Callable[..., RunningServer], tmp_path: Path) -> None:
    server = served("--config", config(tmp_path, f"allowedOrigins={ALLOWED}\n"))
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type",
                 "Access-Control-Request-Private-Network": "true", "Sec-Fetch-Mode": "cors",
                 "Sec-Fetch-Site": "cross-site"}
    for path in ("/version", "/sign"):
        status, headers, _ = asyncio.run(fetch(server, "OPTIONS", path, {"Origin": ALLOWED, **preflight}))
        assert status == 204 and headers["Access-Control-Allow-Origin"] == ALLOWED
        assert headers["Access-Control-Allow-Private-Network"] == "true"
        assert "Access-Control-Allow-Credentials" not in headers
        status, headers, _ = asyncio.run(fetch(server, "OPTIONS", path, {"Origin": EVIL, **preflight}))
        assert status == 403 and not any(h.startswith("Access-Control-Allow") for h in headers)
    status, headers, body = asyncio.run(fetch(server, "GET", "/version", {"Origin": ALLOWED}))
    assert headers["Access-Control-Allow-Origin"] == ALLOWED and "hashAlgorithms" in body
    status, headers, _ = asyncio.run(fetch(server, "GET", "/version", {"Origin": EVIL}))
    assert "Access-Control-Allow-Origin" not in headers  # the page cannot read it, not even the card's presence
    # No other route answers a preflight or carries CORS headers, whatever the origin.
    for method, path in (("OPTIONS", "/playground/verify"), ("OPTIONS", "/websigner"), ("OPTIONS", "/"),
                         ("OPTIONS", "/dialog/x/answer"), ("GET", "/"), ("POST", "/websigner"),
                         ("GET", "/static/playground.js")):
        status, headers, _ = asyncio.run(fetch(server, method, path, {"Origin": ALLOWED, **preflight}))
        assert headers.get("Access-Control-Allow-Origin") in (None, "*"), (method, path)
        assert "Access-Control-Allow-Private-Network" not in headers, (method, path)
        if method == "OPTIONS":
            assert status >= 400, (method, path, status)


def test_static_scripts_for_anyone_html_never_raw(served: Callable[..., RunningServer]) -> None:
    server = served()
    for name in ("scs.mjs", "scs.js", "ui.css"):
        status, headers, body = asyncio.run(fetch(server, "GET", f"/static/{name}", CROSS_SITE_FETCH))
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "*", name
        assert headers["Content-Type"].startswith("text/css" if name.endswith(".css") else "text/javascript")
        assert headers["X-Content-Type-Options"] == "nosniff"
    for name in ("playground.html", "dialog.html", "__init__.py", "../pyproject.toml", "%2e%2e/pyproject.toml"):
        status, headers, body = asyncio.run(fetch(server, "GET", f"/static/{name}", {}))
        assert status == 404, name
        assert "<script" not in body and headers["X-Frame-Options"] == "DENY"


def test_unknown_paths_are_404(served: Callable[..., RunningServer]) -> None:
    server = served()
    for method in ("GET", "POST", "OPTIONS", "PUT"):
        status, headers, _ = asyncio.run(fetch(server, method, "/no/such/page", {}))
        assert status == 404, method
        assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]


def test_cross_site_form_to_websigner_result(served: Callable[..., RunningServer]) -> None:
    server = served()
    form = {"status": "ok", "state": "MARKER-planted-by-evil", "signature": "AAAA"}
    navigation = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
                  "Sec-Fetch-Dest": "document", "Content-Type": "application/x-www-form-urlencoded"}
    status, headers, body = asyncio.run(fetch(server, "POST", "/playground/websigner-result", navigation, data=form))
    assert status == 403 and "MARKER" not in body
    # The result page's own form post (same-origin; Origin null under its no-referrer policy) still renders.
    own = {"Origin": "null", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
           "Sec-Fetch-Dest": "document"}
    status, headers, body = asyncio.run(fetch(server, "POST", "/playground/websigner-result", own, data=form))
    assert status == 200 and "MARKER" in body and headers["X-Frame-Options"] == "DENY"


def test_pages_open_from_a_link_but_helpers_and_dialog_api_refuse(served: Callable[..., RunningServer]) -> None:
    """A link on another site may open the playground in a tab (a top-level navigation); a frame, a
    subresource or a fetch from another site reaches no route but the SCS and WebSigner ones."""
    server = served("--dialog", "web")
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document",
            "Sec-Fetch-User": "?1"}
    status, headers, body = asyncio.run(fetch(server, "GET", "/", link))
    assert status == 200 and "Signing playground" in body and headers["X-Frame-Options"] == "DENY"
    frame = {**link, "Sec-Fetch-Dest": "iframe"}
    for path in ("/", "/playground/status", "/dialog/sometoken", "/websigner/result/somekey"):
        status, _, _ = asyncio.run(fetch(server, "GET", path, frame))
        assert status == 403, path
    for path in ("/dialog/sometoken/request", "/websigner/result/somekey"):
        status, _, _ = asyncio.run(fetch(server, "GET", path, CROSS_SITE_FETCH))
        assert status == 403, path
    status, _, _ = asyncio.run(fetch(server, "POST", "/dialog/sometoken/answer",
                                     {**CROSS_SITE_FETCH, "Content-Type": "application/json"}, data='{"cancel": true}'))
    assert status == 403
