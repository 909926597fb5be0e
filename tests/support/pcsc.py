"""Virtual cards plugged into the real pcscd through vpcd (the `pcscd` lane).

The pcscd suites need a running pcscd with vsmartcard-vpcd; ``make test`` and ``.ci/run`` start one. If it is
missing the tests FAIL with the fix in the message: they are never skipped silently. vpcd listens on the fixed
ports 35963 and 35964 (its driver configuration), so those two are not free-port material."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from card.readers import reader_atr
from card.virtual.vpcd import listening as vpcd_listening
from tests.support.cli import cli_env
from tests.support.paths import ROOT
from tests.support.wait import wait_until

VPCD_PORTS = {35963: "Virtual PCD 00 00", 35964: "Virtual PCD 00 01"}


@pytest.fixture(scope="session")
def pcscd() -> None:
    """A running pcscd with the vpcd driver, or a failure that says how to get one."""
    if not os.path.exists("/run/pcscd/pcscd.comm") or not vpcd_listening(35963):
        pytest.fail(
            "pcscd with vsmartcard-vpcd is not running (no /run/pcscd/pcscd.comm or nothing on TCP "
            "35963). Run the suite with `make test` (it installs and starts pcscd as root), or start "
            "it yourself: `sudo scripts/pcscd.sh start`.",
            pytrace=False,
        )





@dataclass
class VpcdCard:
    """A ``digisign-web virtual-card`` process plugged into one vpcd slot."""

    process: subprocess.Popen[str]
    reader: str
    profile: str
    atr: bytes

    def toggle(self) -> None:
        """SIGUSR1: pull the card out, or push it back in (the process keeps running)."""
        self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        wait_until(lambda: reader_atr(self.reader) is None, 10, f"card removal from {self.reader}")


@pytest.fixture
def vpcd_card(pcscd: None, state_dir: Path) -> Iterator[Callable[..., VpcdCard]]:
    """Factory: ``vpcd_card("fineid-v4", port=35963, atr=None, label=None)`` -> a card in pcscd."""
    started: list[VpcdCard] = []

    def start(profile: str = "fineid-v4", port: int = 35963, atr: str | None = None,
              label: str | None = None, slow_ms: float = 0) -> VpcdCard:
        reader = VPCD_PORTS[port]
        wait_until(lambda: reader_atr(reader) is None, 10, f"{reader} to be empty")
        args = [sys.executable, "-m", "digisign_web", "virtual-card", "--profile", profile,
                "--port", str(port), "--state-dir", str(state_dir)]
        if atr:
            args += ["--atr", atr]
        if label:
            args += ["--label", label]
        if slow_ms:
            args += ["--slow-ms", str(slow_ms)]
        log = tempfile.TemporaryFile("w+")  # not a pipe: a full pipe would stall the card
        process = subprocess.Popen(args, cwd=ROOT, env=cli_env(), stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: reader_atr(reader) is not None or process.poll() is not None, 15,
                       f"the virtual card in {reader}")
        except AssertionError:
            process.kill()
            raise
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"virtual card process died: {log.read()}")
        card = VpcdCard(process, reader, profile, reader_atr(reader) or b"")
        started.append(card)
        return card

    yield start
    for card in started:
        card.stop()
