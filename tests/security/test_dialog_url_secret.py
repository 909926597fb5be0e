"""Dialog addresses are no bearer secrets for other local accounts (issue 10, item 3).

The attack: once PIN1 was verified, another local account read the dialog's URL from the browser launcher's
command line (``/proc/<pid>/cmdline`` is world-readable), loaded it before the user's browser did, answered
the dialog and got an authentication signature.

Now the launcher gets only the path of a bootstrap page that its own account can read (0600 in a 0700
directory); the dialog's key travels in that page's URL fragment, and only a tab that presents the key claims
the dialog. Replayed against a real ``serve`` process with the web dialog: a second party that knows exactly
what the launcher was given (the URL in its command line) tries, before, during and after the user's own tab,
to obtain the dialog or to answer it. Reading the bootstrap page is tried as the real second account
``nobody`` where the test runs as root; the HTTP attempts run as the server's own account, so that this
defence is tested alone, without the server's refusal of other accounts' connections.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import re
import stat
import subprocess
import sys
import urllib.parse
from pathlib import Path

import aiohttp

from tests.support.servers import WebServer

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}


def read_as_nobody(path: str) -> str:
    """What the account ``nobody`` gets when it reads ``path``: the text, or the error."""
    code = ("import sys\ntry:\n    print(open(sys.argv[1]).read())\nexcept OSError as e:\n"
            "    print(type(e).__name__)\n")
    result = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                             code, path], capture_output=True, text=True, timeout=30)
    return result.stdout.strip() or result.stderr.strip()


async def second_party(server: WebServer, known: str) -> list[str]:
    """Everything a party that knows only ``known`` (a URL) can get from the server; what it got is returned."""
    got: list[str] = []
    parts = urllib.parse.urlsplit(known)
    if parts.scheme == "https":
        candidates = [(parts.path.rsplit("/", 1)[-1], parts.fragment)]
    else:  # a local file: try every token-like piece of its address as a dialog id and as a key
        pieces = re.findall(r"[A-Za-z0-9_-]{12,}", known)
        candidates = [(a, b) for a in pieces for b in pieces]
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        for token, key in candidates:
            page_url = f"{server.base}/dialog/{token}"
            async with session.get(page_url, ssl=server.server.ssl(), headers=NAVIGATE) as response:
                text = await response.text()
            match = re.search(r'name="csrf-token" content="([^"]+)"', text)
            if response.status != 200 or not match:
                continue
            csrf = {"X-CSRF-Token": match.group(1), "Origin": server.base, "Sec-Fetch-Site": "same-origin"}
            async with session.post(f"{page_url}/claim", json={"key": key}, ssl=server.server.ssl(),
                                    headers=csrf) as response:
                if response.status == 200:
                    got.append(f"claimed {token}")
            async with session.get(f"{page_url}/request", ssl=server.server.ssl(), headers=csrf) as response:
                if response.status == 200 and "choices" in await response.text():
                    got.append(f"details of {token}")
            async with session.post(f"{page_url}/answer", json={"cancel": True}, ssl=server.server.ssl(),
                                    headers=csrf) as response:
                if response.status == 200:
                    got.append(f"answered {token}: {await response.text()}")
    return got


def attack(server: WebServer, known: str) -> list[str]:
    return POOL.submit(lambda: asyncio.run(second_party(server, known))).result(timeout=60)


def test_the_launched_address_is_useless_to_another_account(browser_factory, trusted_home,
                                                            web_server: WebServer) -> None:
    content = b"the user's contract"
    pending = POOL.submit(lambda: asyncio.run(web_server.server.post(
        {"content": base64.b64encode(content).decode(), "selector": {"keyusages": ["nonrepudiation"]}})))
    launched = web_server.next_dialog_url()  # exactly what the launcher's command line holds

    if launched.startswith("file:"):
        path = Path(urllib.parse.urlsplit(launched).path)
        for item, mode in ((path, 0o600), (path.parent, 0o700)):
            info = item.stat()
            assert info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == mode, (item, oct(info.st_mode))
        if os.geteuid() == 0:  # a real second account tries to read it
            assert read_as_nobody(str(path)) == "PermissionError"

    # Before the user's browser: the second party gets nothing.
    assert attack(web_server, launched) == []

    # The user's browser opens what was launched, and sees the request.
    page = browser_factory(trusted_home).new_page()
    page.goto(launched)
    page.wait_for_selector("#request:not([hidden])")
    dialog_url = page.url
    # While the dialog is open: nothing, not even knowing the dialog's id (as if it leaked from history).
    assert attack(web_server, launched) == []
    assert attack(web_server, dialog_url) == []
    page.fill("#pin", "123456")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    answer = pending.result(timeout=30)
    assert answer["status"] == "ok", answer
    # After: still nothing.
    assert attack(web_server, launched) == []
    assert attack(web_server, dialog_url) == []
