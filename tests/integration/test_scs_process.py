"""`digisign-web serve` as a real process over real HTTPS, driven as a browser drives it (Origin, CORS
preflight, JSON), with the in-process virtual card and with pcscd + vpcd + the virtual card. Signatures
are checked with independent verifiers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.cards import check_ecdsa, openssl_recovers
from tests.support.net import free_port
from tests.support.servers import ORIGIN, RunningServer, start_server, stop
from tests.support.wait import async_wait_until


@pytest.fixture
def virtual_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", port=free_port())
    yield server
    stop(server)


async def test_real_process_in_process_card(virtual_server: RunningServer, tmp_path: Path) -> None:
    version = await virtual_server.version()
    assert version["hashAlgorithms"] and version["signatureAlgorithms"] == "ECDSA"
    content = b"signed by a real server process"
    answer = await virtual_server.post({"version": "1.1", "content": base64.b64encode(content).decode(),
                                        "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer["status"] == "ok", answer
    check_ecdsa(answer, content)

    cms_answer = await virtual_server.post({"content": base64.b64encode(content).decode(), "signatureType": "cms"})
    assert cms_answer["status"] == "ok", cms_answer
    assert openssl_recovers(cms_answer, tmp_path) == content

    auth_content = f"{ORIGIN};{'a' * 64}".encode()
    auth = await virtual_server.post({"content": base64.b64encode(auth_content).decode(),
                                      "selector": {"keyusages": ["digitalsignature"]}})
    assert auth["status"] == "ok", auth
    check_ecdsa(auth, auth_content)
    refused = await virtual_server.post({"content": base64.b64encode(b"not bound to an origin").decode(),
                                         "selector": {"keyusages": ["digitalsignature"]}})
    assert refused["reasonCode"] == 403
    bad = await virtual_server.post({"content": "%%%"})
    assert bad["reasonCode"] == 400
    async with aiohttp.ClientSession() as session, session.get(
            f"https://127.0.0.1:{virtual_server.port}/version", ssl=virtual_server.ssl(),
            server_hostname="localhost", headers={"Host": "rebind.attacker.example"}) as response:
        assert (await response.json())["reasonCode"] == 403


async def test_auto_cancel(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--virtual-card", "fineid-v3", "--dialog", "auto", "--auto-cancel",
                          port=free_port())
    try:
        answer = await server.post({"content": base64.b64encode(b"x").decode()})
        assert (answer["status"], answer["reasonCode"]) == ("failed", 401)
    finally:
        stop(server)


async def test_settings_file_is_read(tmp_path: Path) -> None:
    conf = tmp_path / "DigiSign.conf"
    http_port = free_port()
    conf.write_text("# local policy\nHTTPSignerDisabled=1\nunknownKey=3\nminidriverPinCache=1\n"
                    f"httpPorts={http_port}\n")
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", "--config", str(conf),
                          port=free_port())
    try:
        answer = await server.post({"content": base64.b64encode(b"x").decode()})
        assert answer["reasonCode"] == 403 and "HTTPSignerDisabled" in answer["reasonText"]
        # httpPorts turns plain HTTP on (off by default), with the same Host check.
        async with aiohttp.ClientSession() as session, session.get(f"http://localhost:{http_port}/version") as response:
            assert (await response.json())["version"] == "1.1"
    finally:
        stop(server)
    log = server.log()
    assert "unknownKey" in log and f"http://localhost:{http_port}/" in log


@pytest.mark.pcscd
async def test_real_process_over_pcscd(vpcd_card, tmp_path: Path) -> None:
    card = vpcd_card("fineid-v3", slow_ms=60)
    server = start_server(tmp_path, "--dialog", "auto", port=free_port())
    async def card_seen() -> bool:  # pages poll /version for the card, and so do we
        return bool((await server.version())["hashAlgorithms"])

    async def card_gone() -> bool:
        return not await card_seen()

    try:
        await async_wait_until(card_seen, 10, "the server to see the card")
        content = b"through pcscd"
        answer = await server.post({"content": base64.b64encode(content).decode(),
                                    "selector": {"keyusages": ["nonrepudiation"]}})
        assert answer["status"] == "ok", answer
        check_ecdsa(answer, content)

        # Pull the card while a request is under way (each APDU takes 60 ms): a clean failure ...
        pending = asyncio.create_task(server.post({"content": base64.b64encode(b"pulled").decode(),
                                                   "selector": {"keyusages": ["nonrepudiation"]}}))
        await asyncio.sleep(0.15)  # the pause IS the test: pull the card mid-request (404 if it was not yet asked)
        card.toggle()
        failed = await pending
        assert failed["status"] == "failed" and failed["reasonCode"] in (404, 500), failed
        await async_wait_until(card_gone, 10, "the server to see the card leave")
        # ... and once it is back, the next request works.
        card.toggle()
        await async_wait_until(card_seen, 10, "the server to see the card come back")
        again = await server.post({"content": base64.b64encode(b"again").decode(),
                                   "selector": {"keyusages": ["nonrepudiation"]}})
        assert again["status"] == "ok", again
        check_ecdsa(again, b"again")
    finally:
        stop(server)
