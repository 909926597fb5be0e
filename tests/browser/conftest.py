"""Real-browser fixtures: Debian's Chromium driven by Playwright (never `playwright install`), a real
`digisign-web serve` process with the web dialog, its CA trusted through `digisign-web trust install` in a
temporary HOME, and a relying-party site on another origin."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli_env
from tests.integration.test_scs_process import RunningServer, start_server, stop

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.urls.read_text().splitlines() if self.urls.exists() else []
            if len(lines) > self.seen:
                self.seen += 1
                return lines[self.seen - 1]
            time.sleep(0.05)
        raise AssertionError("the server did not open a dialog")


def start_web_server(tmp: Path, *args: str) -> WebServer:
    urls = tmp / "dialog-urls.txt"
    os.environ["BROWSER"] = f"{sys.executable} {ROOT / 'tests' / 'browser' / 'record_url.py'} {urls} %s"
    try:
        server = start_server(tmp, "--virtual-card", "fineid-v4", "--dialog", "web", *args, port=free_port())
    finally:
        os.environ.pop("BROWSER", None)
    return WebServer(server, urls, tmp / "state")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing (scripts/test-deps.sh installs it)", pytrace=False)
    return CHROMIUM


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[WebServer]:
    server = start_web_server(tmp_path)
    yield server
    stop(server.server)


@pytest.fixture
def trusted_home(web_server: WebServer, tmp_path: Path) -> Path:
    """A HOME whose NSS database trusts the server's CA, set up by `digisign-web trust install`."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**cli_env(), "HOME": str(home)}
    if shutil.which("certutil") is None:
        pytest.fail("certutil is missing (libnss3-tools; scripts/test-deps.sh installs it)", pytrace=False)
    result = subprocess.run([sys.executable, "-m", "digisign_web", "trust", "install", "--state-dir",
                             str(web_server.state_dir)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return home


@pytest.fixture
def browser_factory(chromium_path: str):
    """launch(home, extra_args) -> a Playwright Browser on Debian's Chromium, closed at teardown."""
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    browsers = []

    def launch(home: Path, extra_args: list[str] | None = None):
        browser = manager.chromium.launch(executable_path=chromium_path, headless=True,
                                          args=CHROMIUM_ARGS + (extra_args or []),
                                          env={**os.environ, "HOME": str(home)})
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()
    manager.stop()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
