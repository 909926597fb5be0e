"""Page-supplied text is inert (issue 10 item 5): a page's ``info`` cannot fake the origin in the terminal
dialog, nor write raw control characters into the log.

The attack: ``info`` carries ANSI escapes that erase the lines above (the real origin) and print another
origin, a bidi override that reverses an address, and a wall of newlines. Replayed against a real ``serve``
process: once with ``--dialog terminal`` running on a pseudo-terminal (its controlling terminal), once with
``--dialog auto``, whose log line carries the text.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fcntl
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.cli import cli_env
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.servers import RunningServer, stop

REAL = "https://eservice.example"
FAKE = "https://bank.example"
# Erase the line, go up, erase, return: on a raw terminal the real origin line is gone and FAKE is printed
# in its place; then a right-to-left override, and enough newlines to scroll anything off the screen.
HOSTILE_INFO = ("Log in\x1b[2K\x1b[1A\x1b[2K\x1b[1A\x1b[2K\r" + f"Signature request from {FAKE}\x1b[0m"
                + "\u202eelpmaxe.knab//:sptth\u202c \u2066x\u2069" + "\n" * 1900)


def hostile_request() -> dict:
    content = base64.b64encode(f"{REAL};{'n' * 64}".encode()).decode()
    return {"content": content, "info": HOSTILE_INFO, "selector": {"keyusages": ["digitalsignature"]}}


class TerminalServer:
    """`digisign-web serve --dialog terminal` whose controlling terminal is a pty we read and type into."""

    def __init__(self, tmp_path: Path):
        self.master, slave = os.openpty()
        env = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
        env.pop("DIGISIGN_CONF", None)

        def take_terminal() -> None:  # in the child, after setsid: the pty becomes its /dev/tty
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.process = subprocess.Popen(
            [sys.executable, "-m", "digisign_web", "serve", "--state-dir", str(tmp_path / "state"),
             "--port", str(free_port()), "--virtual-card", "fineid-v4", "--dialog", "terminal"],
            cwd=ROOT, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            preexec_fn=take_terminal)
        os.close(slave)
        self.screen = b""
        match = self.read_until(rb"listening on https://localhost:(\d+)/", 30)
        self.server = RunningServer(self.process, int(match.group(1)), tmp_path / "state" / "tls" / "ca.pem", [])

    def read_until(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.screen)
            if match:
                return match
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
        raise AssertionError(f"{pattern!r} never appeared on the terminal:\n{self.screen.decode(errors='replace')}")

    def close(self) -> None:
        stop(self.server)
        os.close(self.master)


@pytest.fixture
def terminal_server(tmp_path: Path) -> Iterator[TerminalServer]:
    server = TerminalServer(tmp_path)
    yield server
    server.close()


def test_ansi_info_cannot_fake_the_origin_in_the_terminal_dialog(terminal_server: TerminalServer) -> None:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(lambda: asyncio.run(terminal_server.server.post(hostile_request(), origin=REAL)))
    start = len(terminal_server.screen)
    terminal_server.read_until(rb"press Enter to cancel: ", 30)
    os.write(terminal_server.master, b"\n")  # the user reads the dialog and cancels
    answer = pending.result(timeout=30)
    assert answer["reasonCode"] == 401, answer
    dialog = terminal_server.screen[start:]
    assert b"\x1b" not in dialog, "the page's escape sequences reached the terminal"
    assert "\u202e".encode() not in dialog and "\u2066".encode() not in dialog
    lines = dialog.decode().split("\r\n")
    shown = [line for line in lines if "Signature request from" in line]
    assert shown[0] == f"Signature request from {REAL}"
    assert all(line.startswith("  | ") for line in shown[1:]), shown  # the fake is quoted as the page's words
    assert f"Request from {REAL}. Choose a certificate" in lines[-1]  # the origin right at the prompt
    assert len(lines) < 40  # 1900 newlines did not scroll the origin away


def test_ansi_and_bidi_info_are_not_logged_raw(served: Callable[..., RunningServer]) -> None:
    server = served()  # --dialog auto: the dialog's text goes to the log
    answer = asyncio.run(server.post(hostile_request(), origin=REAL))
    assert answer["status"] == "ok", answer
    server.process.send_signal(signal.SIGINT)
    server.process.wait(10)
    assert server.process.stdout is not None
    log = server.log()
    dialog_lines = [line for line in log.splitlines() if "auto dialog:" in line]
    assert len(dialog_lines) == 1 and f"Signature request from {REAL}" in dialog_lines[0]
    assert "\x1b" not in log and "\u202e" not in log and "\u2066" not in log
    assert not [line for line in log.splitlines() if line.startswith(f"Signature request from {FAKE}")]


def test_bidi_origin_header_is_not_logged_raw(served: Callable[..., RunningServer]) -> None:
    """The origin comes from a header: a local client can put a right-to-left override (or bytes that are
    not UTF-8) into it. Whatever the policy then answers, the log shows it inert."""
    server = served()
    spoof = "https://evil.example\u202elp.knab".encode() + b"\xff"
    connection = http.client.HTTPSConnection("localhost", server.port, context=server.ssl(), timeout=30)
    connection.putrequest("POST", "/sign")
    connection.putheader("Origin", spoof)
    connection.putheader("Content-Type", "application/json")
    body = json.dumps({"content": base64.b64encode(b"x").decode(), "info": "x"}).encode()
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    assert connection.getresponse().status in (200, 403)
    connection.close()
    server.process.send_signal(signal.SIGINT)
    server.process.wait(10)
    assert server.process.stdout is not None
    log = server.log()
    assert "evil.example" in log  # the request was logged ...
    # ... with the override gone and the bad byte shown as U+FFFD (not as an escape sequence of the stream)
    assert "\u202e" not in log and "\udcff" not in log and "\\udcff" not in log
    assert "https://evil.examplelp.knab\ufffd" in log
