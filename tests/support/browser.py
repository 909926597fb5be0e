"""Real-browser fixtures (the `browser` lane): Debian's Chromium driven by Playwright (never `playwright
install`), a HOME whose NSS database trusts a server's CA, and screenshots for a human to look at.

Playwright's sync API cannot run inside the asyncio loop pytest-asyncio gives `async def` tests, so the
browser tests are plain `def`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env
from tests.support.paths import ARTIFACTS, ROOT
from tests.support.servers import WebServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium, or a failure that says how to get it."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is missing (scripts/test-deps.sh installs it)", pytrace=False)
    return CHROMIUM


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


def make_home(home: Path, ca: Path | None) -> Path:
    """A HOME for Chromium; with `ca`, its NSS database ($HOME/.pki/nssdb) trusts that CA for TLS servers."""
    home.mkdir(parents=True, exist_ok=True)
    if ca is None:
        return home
    if shutil.which("certutil") is None:
        pytest.fail("certutil is missing (libnss3-tools; scripts/test-deps.sh installs it)", pytrace=False)
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    for command in (["certutil", "-N", "-d", f"sql:{db}", "--empty-password"],
                    ["certutil", "-A", "-d", f"sql:{db}", "-n", "digisign-web-test", "-t", "C,,", "-i", str(ca)]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return home


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot as tests/artifacts/<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
