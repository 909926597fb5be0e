"""`digisign-web pin` through the real stack: the CLI -> pyscard -> pcscd -> vpcd -> the virtual card in another
process, whose PIN state lives across the commands (D46, D47, D49). Status; change PIN2 and sign with the new
one; PIN2 blocked by five wrong PINs, one try per command and none spent behind the user's back, then unblocked
with the PUK and used; rule violations refused with the card unchanged; disablePinUnblocking from --config.

Run with `flock /tmp/vpcd.lock` (the vpcd ports are shared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env
from tests.support.paths import ROOT

pytestmark = pytest.mark.pcscd

PIN2, PUK = "123456", "12345678"


@pytest.fixture
def card(vpcd_card):
    return vpcd_card("fineid-v4")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A config home without the user's DigiSign.conf, so only --config speaks."""
    (tmp_path / "config").mkdir()
    return tmp_path


def cli(home: Path, card, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "XDG_CONFIG_HOME": str(home / "config")}
    env.pop("DIGISIGN_CONF", None)
    return subprocess.run([sys.executable, "-m", "digisign_web", *args, "--reader", card.reader], cwd=ROOT,
                          env=env, input=stdin, capture_output=True, text=True, timeout=60)


def counters(home: Path, card) -> dict[str, tuple[int | None, bool]]:
    result = cli(home, card, "pin", "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reader"] == card.reader
    return {p["id"]: (p["triesLeft"], p["blocked"]) for p in report["pins"]}


def sign(home: Path, card, pin: str) -> subprocess.CompletedProcess[str]:
    document = home / "doc.txt"
    document.write_text("hello")
    out = home / "doc.sig"
    out.unlink(missing_ok=True)
    return cli(home, card, "sign", "--type", "signature", "--in", str(document), "--out", str(out), "--pin-stdin",
               stdin=pin + "\n")


def config(home: Path, text: str) -> str:
    path = home / "DigiSign.conf"
    path.write_text(text)
    return str(path)


def no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    assert not any(s in result.stdout + result.stderr for s in secrets)


def test_status_change_and_sign_with_the_new_pin(card, home: Path) -> None:
    assert counters(home, card) == {"pin1": (5, False), "pin2": (5, False), "puk": (5, False)}
    text = cli(home, card, "pin", "status")
    assert text.returncode == 0
    assert "PIN2  PIN2 (signature PIN): 5 of 5 tries left" in text.stdout and "PUK" in text.stdout

    changed = cli(home, card, "pin", "change", "--stdin", stdin=f"{PIN2}\n246813\n246813\n")
    assert changed.returncode == 0, changed.stderr
    assert "PIN2 changed." in changed.stderr
    no_secret(changed, PIN2, "246813")

    signed = sign(home, card, "246813")
    assert signed.returncode == 0, signed.stderr
    assert (home / "doc.sig").stat().st_size > 0
    old = sign(home, card, PIN2)
    assert old.returncode == 3 and "wrong PIN" in old.stderr  # the old PIN is gone
    assert counters(home, card)["pin2"] == (4, False)


def test_block_with_five_wrong_pins_then_unblock_with_the_puk_and_sign(card, home: Path) -> None:
    for left in (4, 3, 2, 1):
        wrong = cli(home, card, "pin", "change", "--pin2", "--stdin", stdin="000000\n975319\n975319\n")
        assert wrong.returncode == 3, wrong.stderr
        assert wrong.stderr.strip().splitlines()[-1] == (
            f"error: wrong current PIN2 ({left} {'try' if left == 1 else 'tries'} left); nothing was changed")
        # exactly one try per command: nothing retried, and status reading spends none
        assert counters(home, card)["pin2"] == (left, False)
    last = cli(home, card, "pin", "change", "--stdin", stdin="000000\n975319\n975319\n")
    assert last.returncode == 2 and "now blocked" in last.stderr
    assert counters(home, card) == {"pin1": (5, False), "pin2": (0, True), "puk": (5, False)}

    # Blocked: refused before any PIN is asked (stdin is empty), and sign refuses too.
    again = cli(home, card, "pin", "change", "--stdin")
    assert again.returncode == 2 and "PIN2 is blocked: unblock it with the PUK" in again.stderr
    refused = sign(home, card, PIN2)
    assert refused.returncode != 0 and "blocked" in refused.stderr
    assert counters(home, card)["pin2"] == (0, True)

    wrong_puk = cli(home, card, "pin", "unblock", "--stdin", stdin="87654321\n864213\n864213\n")
    assert wrong_puk.returncode == 3 and "wrong PUK (4 tries left)" in wrong_puk.stderr
    unblocked = cli(home, card, "pin", "unblock", "--pin2", "--stdin", stdin=f"{PUK}\n864213\n864213\n")
    assert unblocked.returncode == 0, unblocked.stderr
    no_secret(unblocked, PUK, "864213")
    assert counters(home, card) == {"pin1": (5, False), "pin2": (5, False), "puk": (5, False)}
    signed = sign(home, card, "864213")
    assert signed.returncode == 0, signed.stderr


def test_rule_violations_are_refused_and_leave_the_card_alone(card, home: Path) -> None:
    conf = config(home, "pinComplexityCheck=3\npinMinLength=8\n")
    for new, code in (("11111111", "must not be one digit repeated"), ("12345678", "run of consecutive digits"),
                      ("1357", "at least 8 characters")):
        refused = cli(home, card, "pin", "change", "--stdin", "--config", conf, stdin=f"{PIN2}\n{new}\n{new}\n")
        assert refused.returncode == 2, refused.stderr
        assert code in refused.stderr and refused.stderr.count("error:") == 1
        no_secret(refused, PIN2, new)
    mismatch = cli(home, card, "pin", "change", "--pin1", "--stdin", stdin="1234\n2580\n2581\n")
    assert mismatch.returncode == 2 and "two entries of the new PIN differ" in mismatch.stderr
    short_old = cli(home, card, "pin", "change", "--stdin", stdin="12\n246813\n246813\n")
    assert short_old.returncode == 2 and "current PIN2: must have at least 6 characters" in short_old.stderr
    # Nothing reached the card: every counter is full and the old PIN2 still signs.
    assert counters(home, card) == {"pin1": (5, False), "pin2": (5, False), "puk": (5, False)}
    assert sign(home, card, PIN2).returncode == 0
    ok = cli(home, card, "pin", "change", "--stdin", "--config", conf, stdin=f"{PIN2}\n24681357\n24681357\n")
    assert ok.returncode == 0, ok.stderr


def test_disable_pin_unblocking_from_config(card, home: Path) -> None:
    conf = config(home, "disablePinUnblocking=1\n")
    refused = cli(home, card, "pin", "unblock", "--stdin", "--config", conf)  # no PIN needed to be refused
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("error: unblocking a PIN is turned off on this computer "
                                      "(disablePinUnblocking=1)")
    assert counters(home, card)["puk"] == (5, False)
    allowed = cli(home, card, "pin", "unblock", "--stdin", stdin=f"{PUK}\n864213\n864213\n")
    assert allowed.returncode == 0, allowed.stderr


def test_no_card_and_bad_config_are_one_line(pcscd: None, home: Path) -> None:
    class Nowhere:
        reader = "No Such Reader 99"

    missing = cli(home, Nowhere(), "pin", "status")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no usable card in No Such Reader 99")
    assert "Traceback" not in missing.stderr
    bad = cli(home, Nowhere(), "pin", "status", "--config", str(home / "nope.conf"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert os.path.exists(home / "config")


def test_pins_are_asked_on_the_terminal_without_echo_and_twice(tmp_path: Path) -> None:
    """No --stdin: getpass on the controlling terminal (a pty here), echo off, the new PIN asked twice; the
    in-process virtual card, so no pcscd is involved."""
    import fcntl
    import re
    import select
    import termios
    import time

    master, slave = os.openpty()
    env = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("DIGISIGN_CONF", None)

    def take_terminal() -> None:  # in the child, after setsid: the pty becomes its /dev/tty
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen([sys.executable, "-m", "digisign_web", "pin", "change", "--pin1", "--virtual-card",
                                "fineid-v4", "--state-dir", str(tmp_path / "state")], cwd=ROOT, env=env,
                               stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                               preexec_fn=take_terminal)
    os.close(slave)
    screen = b""

    def until(pattern: bytes) -> None:
        nonlocal screen
        deadline = time.monotonic() + 30
        while not re.search(pattern, screen) and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        assert re.search(pattern, screen), screen.decode(errors="replace")

    try:
        for prompt, typed in ((rb"Current PIN1, 5 tries left: ", b"1234\n"),
                              (rb"New PIN1 \(4-12 digits\): ", b"7395\n"), (rb"New PIN1 again: ", b"7395\n")):
            until(prompt)
            os.write(master, typed)
        until(rb"PIN1 changed\.")
        assert process.wait(30) == 0
        until(rb"PUK: 5 of 5 tries left")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    text = screen.decode(errors="replace")
    assert "1234" not in text and "7395" not in text  # never echoed, never printed
