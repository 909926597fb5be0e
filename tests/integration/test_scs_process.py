"""`digisign-web serve` as a real process over real HTTPS, driven as a browser drives it (Origin, CORS
preflight, JSON), with the in-process virtual card and with pcscd + vpcd + the virtual card. Signatures
are checked with independent verifiers."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import ROOT, answer_chain, cli_env, openssl_recovers

ORIGIN = "https://eservice.example"


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    port: int
    ca: Path
    output: list[str]

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def log(self, wait: float = 0.2) -> str:
        """Everything the server has printed so far (its stdout is non-blocking once it listens)."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while select.select([fd], [], [], wait)[0]:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.output.append(chunk.decode(errors="replace"))
        return "".join(self.output)

    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    async def post(self, body: dict, origin: str = ORIGIN) -> dict:
        async with aiohttp.ClientSession() as session:
            # What a browser does for a cross-origin JSON POST: preflight, then the request.
            async with session.options(f"{self.base}/sign", ssl=self.ssl(), headers={
                    "Origin": origin, "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type"}) as pre:
                assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == origin
            async with session.post(f"{self.base}/sign", ssl=self.ssl(), data=json.dumps(body),
                                    headers={"Origin": origin, "Content-Type": "application/json"}) as response:
                assert response.status == 200
                assert response.headers["Access-Control-Allow-Origin"] == origin
                return await response.json()

    async def version(self) -> dict:
        async with aiohttp.ClientSession() as session, session.get(f"{self.base}/version", ssl=self.ssl(),
                                                                   headers={"Origin": ORIGIN}) as response:
            return await response.json()


def start_server(tmp_path: Path, *args: str, port: int) -> RunningServer:
    env = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("DIGISIGN_CONF", None)
    process = subprocess.Popen([sys.executable, "-m", "digisign_web", "serve", "--state-dir", str(tmp_path / "state"),
                                "--port", str(port), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline()
            output.append(line)
            match = re.search(r"listening on https://localhost:(\d+)/", line)
            if match:
                # Keep draining the log so that a full pipe never blocks the server.
                os.set_blocking(process.stdout.fileno(), False)
                return RunningServer(process, int(match.group(1)), tmp_path / "state" / "tls" / "ca.pem", output)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(output))


def stop(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def virtual_server(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", port=54210)
    yield server
    stop(server)


def check_ecdsa(answer: dict, content: bytes) -> None:
    public = answer_chain(answer)[0].public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = getattr(hashes, answer["signatureAlgorithm"].split("with")[0])()
    public.verify(base64.b64decode(answer["signature"]), content, ec.ECDSA(algorithm))


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
    server = start_server(tmp_path, "--virtual-card", "fineid-v3", "--dialog", "auto", "--auto-cancel", port=54220)
    try:
        answer = await server.post({"content": base64.b64encode(b"x").decode()})
        assert (answer["status"], answer["reasonCode"]) == ("failed", 401)
    finally:
        stop(server)


async def test_settings_file_is_read(tmp_path: Path) -> None:
    conf = tmp_path / "DigiSign.conf"
    conf.write_text("# local policy\nHTTPSignerDisabled=1\nunknownKey=3\nminidriverPinCache=1\nhttpPorts=54238\n")
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", "--config", str(conf),
                          port=54230)
    try:
        answer = await server.post({"content": base64.b64encode(b"x").decode()})
        assert answer["reasonCode"] == 403 and "HTTPSignerDisabled" in answer["reasonText"]
        # httpPorts turns plain HTTP on (off by default), with the same Host check.
        async with aiohttp.ClientSession() as session, session.get("http://localhost:54238/version") as response:
            assert (await response.json())["version"] == "1.1"
    finally:
        stop(server)
    log = server.log()
    assert "unknownKey" in log and "http://localhost:54238/" in log


@pytest.mark.pcscd
async def test_real_process_over_pcscd(vpcd_card, tmp_path: Path) -> None:
    card = vpcd_card("fineid-v3", slow_ms=60)
    server = start_server(tmp_path, "--dialog", "auto", port=54240)
    try:
        deadline = time.monotonic() + 10
        while not (await server.version())["hashAlgorithms"]:
            assert time.monotonic() < deadline, "the server never saw the card"
            await asyncio.sleep(0.1)
        content = b"through pcscd"
        answer = await server.post({"content": base64.b64encode(content).decode(),
                                    "selector": {"keyusages": ["nonrepudiation"]}})
        assert answer["status"] == "ok", answer
        check_ecdsa(answer, content)

        # Pull the card while a request is under way (each APDU takes 60 ms): a clean failure ...
        pending = asyncio.create_task(server.post({"content": base64.b64encode(b"pulled").decode(),
                                                   "selector": {"keyusages": ["nonrepudiation"]}}))
        await asyncio.sleep(0.15)
        card.toggle()
        failed = await pending
        assert failed["status"] == "failed" and failed["reasonCode"] in (404, 500), failed
        deadline = time.monotonic() + 10
        while (await server.version())["hashAlgorithms"]:  # pages poll /version: the card is gone
            assert time.monotonic() < deadline, "the server never saw the card leave"
            await asyncio.sleep(0.1)
        # ... and once it is back, the next request works.
        card.toggle()
        deadline = time.monotonic() + 10
        while not (await server.version())["hashAlgorithms"]:
            assert time.monotonic() < deadline, "the server never saw the card come back"
            await asyncio.sleep(0.1)
        again = await server.post({"content": base64.b64encode(b"again").decode(),
                                   "selector": {"keyusages": ["nonrepudiation"]}})
        assert again["status"] == "ok", again
        check_ecdsa(again, b"again")
    finally:
        stop(server)
