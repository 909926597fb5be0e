"""`digisign-web serve` as a real subprocess over real HTTPS (the `process` lane): start it on a free port,
talk to it as a browser does, read its log, stop it. Also the web-dialog variant whose "browser" only records
the dialog URLs it is asked to open (support/record_url.py), for Playwright to open instead."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.support.cli import cli_env
from tests.support.net import free_port
from tests.support.paths import ROOT, TESTS

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
    """`digisign-web serve --port PORT ARGS...` with its state under ``tmp_path``, once it listens and has
    loaded its signing service and read the cards present (its "ready:" log line; D69)."""
    env = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("DIGISIGN_CONF", None)
    process = subprocess.Popen([sys.executable, "-m", "digisign_web", "serve", "--state-dir", str(tmp_path / "state"),
                                "--port", str(port), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    fd = process.stdout.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            # os.read, not readline: readline would keep what follows the line in its own buffer, which log()
            # (reading the descriptor) never sees, so a line logged right after "listening" went missing.
            output.append(os.read(fd, 1 << 16).decode(errors="replace"))
            match = re.search(r"listening on https://localhost:(\d+)/", "".join(output))
            if match and "ready: the signing service is loaded" in "".join(output):
                # Keep draining the log so that a full pipe never blocks the server.
                os.set_blocking(process.stdout.fileno(), False)
                return RunningServer(process, int(match.group(1)), tmp_path / "state" / "tls" / "ca.pem", output)
        if process.poll() is not None:
            break
    process.kill()
    raise AssertionError("server did not start:\n" + "".join(output))


def stop(server: RunningServer) -> None:
    """SIGINT, as Ctrl-C would; killed if it has not exited within 10 s."""
    server.process.send_signal(signal.SIGINT)
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``served("--dialog", "web")`` -> a running server on a free port (defaults: in-process virtual
    card fineid-v4, automatic dialog), stopped at teardown."""
    servers: list[RunningServer] = []

    def start(*args: str, virtual_card: str | None = "fineid-v4") -> RunningServer:
        options = list(args)
        if virtual_card and "--virtual-card" not in options:
            options += ["--virtual-card", virtual_card]
        if "--dialog" not in options:
            options += ["--dialog", "auto"]
        server = start_server(tmp_path / f"s{len(servers)}", *options, port=free_port())
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop(server)


# --- the web dialog ---------------------------------------------------------------------------------------


@dataclass
class WebServer:
    """The SCS server process plus the file where its 'browser' (record_url.py) writes dialog URLs."""

    server: RunningServer
    urls: Path
    state_dir: Path
    seen: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def base(self) -> str:
        return self.server.base

    def next_dialog_url(self, timeout: float = 15) -> str:
        """The next dialog URL the server asked its browser to open (waits for it, at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.urls.read_text().splitlines() if self.urls.exists() else []
            if len(lines) > self.seen:
                self.seen += 1
                return lines[self.seen - 1]
            time.sleep(0.05)
        raise AssertionError("the server did not open a dialog")


def start_web_server(tmp: Path, *args: str) -> WebServer:
    """`serve --virtual-card fineid-v4 --dialog web ARGS...` whose $BROWSER records the URLs it opens."""
    urls = tmp / "dialog-urls.txt"
    os.environ["BROWSER"] = f"{sys.executable} {TESTS / 'support' / 'record_url.py'} {urls} %s"
    try:
        server = start_server(tmp, "--virtual-card", "fineid-v4", "--dialog", "web", *args, port=free_port())
    finally:
        os.environ.pop("BROWSER", None)
    return WebServer(server, urls, tmp / "state")


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[WebServer]:
    """A web-dialog server for one test."""
    server = start_web_server(tmp_path)
    yield server
    stop(server.server)
