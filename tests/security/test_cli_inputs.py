"""Bad paths and bad files on the command line: every command answers with one line on stderr and exit code 2,
never a traceback, and before it starts serving, touches a card or asks for a PIN.

Each command is run as a real process (``python -m digisign_web``). "Unreadable" and "not writable" need a
user that permissions apply to: when the suite runs as root, those cases run as ``nobody`` (setpriv), in a
world-readable scratch directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import cli_env
from tests.support.net import free_port
from tests.support.paths import ROOT

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if os.geteuid() == 0 else []


@dataclass
class Case:
    args: list[str]
    says: str  # a part of the one-line message: names the option, the path, or the problem
    unprivileged: bool = False  # run as nobody when the suite is root (permissions are the point)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory every user can enter, holding one of each kind of bad input."""
    if AS_NOBODY and shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to test permissions as root", pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="cli-inputs-"))
    base.chmod(0o755)
    (base / "a-directory").mkdir()
    (base / "text.txt").write_text("hello, not a signature\n")
    (base / "unreadable.txt").write_text("secret\n")
    (base / "unreadable.txt").chmod(0o000)
    (base / "binary.conf").write_bytes(b"%PDF-1.7\n\x00\x01\x02 not a settings file")
    (base / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<<")
    (base / "broken.xml").write_bytes(b"<Signature xmlns=")
    (base / "broken-cert.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    (base / "recording.json").write_text("{not json")
    (base / "readonly").mkdir()
    (base / "readonly").chmod(0o555)
    (base / "state").mkdir()  # a writable state directory for the cases that need one
    (base / "state").chmod(0o777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def run(case: Case, home: Path) -> subprocess.CompletedProcess[str] | str:
    """The finished process, or a description of why it did not finish (a server that started serving)."""
    prefix = AS_NOBODY if case.unprivileged else []
    env = {**cli_env(), "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config")}
    env.pop("DIGISIGN_CONF", None)
    try:
        return subprocess.run([*prefix, sys.executable, "-m", "digisign_web", *case.args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return f"still running after 30 s (it went ahead with the bad input): {out[-300:]}"


def check(cases: list[Case], scratch: Path) -> None:
    """Run every case and report all that do not end in one error line with exit code 2."""
    failures = []
    for case in cases:
        result = run(case, scratch)
        if isinstance(result, str):
            failures.append(f"{case.args}: {result}")
            continue
        lines = result.stderr.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1 or "Traceback" in result.stderr + result.stdout \
                or "error: " not in lines[0] or case.says not in lines[0] or result.stdout:
            failures.append(f"{case.args}: exit {result.returncode}, stdout {result.stdout[-200:]!r}, "
                            f"stderr {result.stderr[-400:]!r}")
    assert not failures, "\n".join(failures)


def test_serve_refuses_a_bad_config_or_state_dir(scratch: Path) -> None:
    port = str(free_port())
    serve = ["serve", "--virtual-card", "fineid-v4", "--dialog", "auto", "--port", port]
    state = ["--state-dir", str(scratch / "state")]
    check([
        Case([*serve, *state, "--config", str(scratch / "missing.conf")], "missing.conf"),
        Case([*serve, *state, "--config", str(scratch / "a-directory")], "--config"),
        Case([*serve, *state, "--config", str(scratch / "unreadable.txt")], "--config", unprivileged=True),
        Case([*serve, *state, "--config", str(scratch / "binary.conf")], "not a DigiSign.conf-style settings file"),
        Case([*serve, "--state-dir", str(scratch / "text.txt")], "not a directory"),
        Case([*serve, "--state-dir", str(scratch / "text.txt" / "sub")], "--state-dir"),
        Case([*serve, "--state-dir", str(scratch / "readonly")], "not writable", unprivileged=True),
        Case([*serve, "--state-dir", str(scratch / "readonly" / "new")], "cannot create", unprivileged=True),
        Case([*serve, *state, "--port", "70000"], "a port is 1 to 65535"),
    ], scratch)


def test_sign_refuses_bad_input_and_output_before_the_pin(scratch: Path) -> None:
    sign = ["sign", "--virtual-card", "fineid-v4", "--state-dir", str(scratch / "state"), "--pin-stdin"]
    out = ["--out", str(scratch / "state" / "out.p7s")]
    text = ["--in", str(scratch / "text.txt")]
    check([
        Case([*sign, "--type", "cms", "--in", str(scratch / "missing.txt"), *out], "--in"),
        Case([*sign, "--type", "cms", "--in", str(scratch / "a-directory"), *out], "--in"),
        Case([*sign, "--type", "cms", "--in", str(scratch / "unreadable.txt"), *out], "--in", unprivileged=True),
        Case([*sign, "--type", "cms", *text, "--out", str(scratch / "no-such-dir" / "out.p7s")], "does not exist"),
        Case([*sign, "--type", "cms", *text, "--out", str(scratch / "text.txt" / "out.p7s")], "not a directory"),
        Case([*sign, "--type", "cms", *text, "--out", str(scratch / "a-directory")], "is a directory"),
        Case([*sign, "--type", "cms", *text, "--out", str(scratch / "readonly" / "out.p7s")], "not writable",
             unprivileged=True),
        Case([*sign, "--type", "pades", *text, *out], "not a PDF"),
        Case(["sign", "--virtual-card", "fineid-v4", "--type", "cms", *text, *out, "--state-dir",
              str(scratch / "readonly")], "not writable", unprivileged=True),
    ], scratch)
    assert not (scratch / "state" / "out.p7s").exists()


def test_verify_refuses_bad_files(scratch: Path) -> None:
    text = str(scratch / "text.txt")
    check([
        Case(["verify", str(scratch / "missing.p7s")], "missing.p7s"),
        Case(["verify", str(scratch / "a-directory")], "a-directory"),
        Case(["verify", str(scratch / "unreadable.txt")], "unreadable.txt", unprivileged=True),
        Case(["verify", text], "not a PDF, an XML signature or a CMS SignedData"),
        Case(["verify", str(scratch / "broken.pdf")], "broken.pdf"),
        Case(["verify", str(scratch / "broken.xml")], "broken.xml"),
        Case(["verify", text, "--detached", str(scratch / "missing.txt")], "--detached"),
        Case(["verify", text, "--detached", str(scratch / "a-directory")], "--detached"),
        Case(["verify", text, "--trust", str(scratch / "missing.pem")], "--trust"),
        Case(["verify", text, "--trust", str(scratch / "a-directory")], "--trust"),
        Case(["verify", text, "--trust", str(scratch / "unreadable.txt")], "--trust", unprivileged=True),
        Case(["verify", text, "--trust", text], "no PEM certificate"),
        Case(["verify", text, "--trust", str(scratch / "broken-cert.pem")], "broken-cert.pem"),
    ], scratch)


def test_virtual_card_list_and_trust_refuse_bad_paths(scratch: Path) -> None:
    # The virtual card would plug into vpcd on --port: a free port, never the suite's pcscd.
    card = ["virtual-card", "--port", str(free_port())]
    check([
        Case([*card, "--replay", str(scratch / "missing.json")], "missing.json"),
        Case([*card, "--replay", str(scratch / "a-directory")], "a-directory"),
        Case([*card, "--replay", str(scratch / "recording.json")], "not a usable card recording"),
        Case([*card, "--state-dir", str(scratch / "text.txt")], "not a directory"),
        Case([*card, "--state-dir", str(scratch / "readonly")], "not writable", unprivileged=True),
        Case([*card, "--atr", "not-hex"], "--atr"),
        Case(["list", "--virtual-card", "fineid-v4", "--state-dir", str(scratch / "text.txt")], "not a directory"),
        Case(["list", "--virtual-card", "fineid-v4", "--state-dir", str(scratch / "readonly")], "not writable",
             unprivileged=True),
        Case(["trust", "install", "--state-dir", str(scratch / "readonly")], "not writable", unprivileged=True),
        Case(["trust", "install", "--state-dir", str(scratch / "text.txt")], "not a directory"),
        Case(["trust", "status", "--state-dir", str(scratch / "text.txt")], "not a directory"),
    ], scratch)


@pytest.mark.parametrize("pin_stdin", [False, True])
def test_sign_with_no_pin_to_read_is_one_line(scratch: Path, pin_stdin: bool) -> None:
    """Standard input at its end (Ctrl-D, `< /dev/null`): no traceback, and no empty PIN sent to the card."""
    (scratch / "in.txt").write_bytes(b"x")
    args = [sys.executable, "-m", "digisign_web", "sign", "--type", "signature", "--in", str(scratch / "in.txt"),
            "--out", str(scratch / "out.sig"), "--virtual-card", "fineid-v4", "--state-dir", str(scratch / "state")]
    result = subprocess.run(args + (["--pin-stdin"] if pin_stdin else []), cwd=ROOT, env=cli_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]  # after getpass's prompt, which has no newline
    expected = "error: --pin-stdin: line 1 (PIN2" if pin_stdin else "error: no PIN2"
    assert expected in last and last.endswith(("missing", "entered")), result.stderr
    assert not (scratch / "out.sig").exists()
