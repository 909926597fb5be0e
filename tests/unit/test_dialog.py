"""The dialogs: the automatic one's refusal of real cards, the terminal one on a real pseudo-terminal, and the
page-supplied text (origin, info) that every dialog shows only inert."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digisign_web.dialog.auto import AutoDialog
from digisign_web.dialog.protocol import Choice, DialogRefused, DialogRequest
from digisign_web.dialog.terminal import TerminalDialog
from digisign_web.text import INFO_LIMIT, INFO_LINES, LINE_LIMIT, inert, inert_line
from tests.support.wait import async_wait_until


def choice(role: str = "signature", virtual: bool = True, needs_pin: bool = True) -> Choice:
    return Choice(label="Signature certificate", subject="CN=SPECIMEN-TESTINEN TIINA", issuer="CN=CA", role=role,
                  key="EC secp384r1", not_after="2031-01-01", expiring_soon=False, pin_label="PIN2",
                  tries_left=5, blocked=False, needs_pin=needs_pin, reader="r", virtual=virtual)


def request(*choices: Choice) -> DialogRequest:
    return DialogRequest("https://eservice.example", "Sign the tax return", "cms", "data", "SHA256", 123,
                         "ab" * 32, choices)


async def test_auto_dialog() -> None:
    answer = await AutoDialog().ask(request(choice("authentication", needs_pin=True)))
    assert (answer.choice, answer.pin) == (0, "1234")
    answer = await AutoDialog(pin2="999999").ask(request(choice()))
    assert answer.pin == "999999"
    assert (await AutoDialog().ask(request(choice(needs_pin=False)))).pin is None
    assert (await AutoDialog(cancel=True).ask(request(choice()))).choice is None
    with pytest.raises(DialogRefused, match="virtual card"):
        await AutoDialog().ask(request(choice(virtual=False)))
    assert (await AutoDialog(allow_real_cards=True).ask(request(choice(virtual=False)))).choice == 0


def _typist(master: int, lines: list[bytes], seen: list[bytes], answered: threading.Event) -> None:
    """Type each line once its prompt is on the screen (as a person would), and keep the screen: everything
    the dialog wrote until it ``answered``."""
    prompts = [b"Enter to cancel: ", b"(Enter to cancel): "]
    deadline = time.monotonic() + 10
    for line, prompt in zip(lines, prompts, strict=False):
        while prompt not in b"".join(seen).split(line)[-1] and time.monotonic() < deadline:
            try:
                seen.append(os.read(master, 4096))
            except BlockingIOError:
                time.sleep(0.02)
        os.write(master, line)
    answered.wait(15)
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen.append(chunk)
    except OSError:
        pass


@pytest.mark.parametrize(("typed", "expected"), [([b"1\n", b"123456\n"], (0, "123456")),
                                                  ([b"\n"], (None, None)), ([b"2\n", b"\n"], (1, None))])
async def test_terminal_dialog_on_a_pty(typed: list[bytes], expected: tuple) -> None:
    master, slave = os.openpty()
    seen: list[bytes] = []
    os.set_blocking(master, False)
    answered = threading.Event()
    typist = threading.Thread(target=_typist, args=(master, typed, seen, answered))
    typist.start()
    try:
        answer = await asyncio.wait_for(TerminalDialog(os.ttyname(slave)).ask(
            request(choice(), choice("authentication", needs_pin=True))), 10)
    finally:
        answered.set()
        typist.join()
        os.close(slave)
        os.close(master)
    if expected == (1, None):
        assert answer.choice is None  # an empty PIN cancels
    else:
        assert (answer.choice, answer.pin) == expected
    screen = b"".join(seen).decode(errors="replace")
    assert "Signature request from https://eservice.example" in screen
    assert "The page says:\r\n  | Sign the tax return" in screen and "5 tries left" in screen
    assert "123456" not in screen  # the PIN is not echoed


# --- page-supplied text is inert (digisign_web/text.py) ------------------------------------------------------

HOSTILE = ("Sign the tax return\x1b[2K\x1b[1A\x1b[2K\rSignature request from https://bank.example\x07\x9b31m"
           "\u202emoc.elpmaxe.live\u202c\u2066\u2069\u200e\u200f\u061c\u202a\u202b\u202d" + "\n" * 1500 + "the end")


def test_inert_makes_controls_visible_and_drops_bidi_controls() -> None:
    shown = inert(HOSTILE)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown and "\r" not in shown
    assert "␛[2K␛[1A␛[2K" in shown and "␇" in shown and "\ufffd31m" in shown  # visible, not acted upon
    for bidi in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c":
        assert bidi not in inert(f"a{bidi}b") and inert(f"a{bidi}b") == "ab"
    assert shown.splitlines() == ["Sign the tax return␛[2K␛[1A␛[2K",
                                  "Signature request from https://bank.example␇\ufffd31mmoc.elpmaxe.live",
                                  "", "the end"]


def test_inert_keeps_ordinary_text() -> None:
    text = "Allekirjoita vuokrasopimus\n\nHämeentie 1 A 2 · 1 200 € / kk 👨\u200d👩\u200d👧 שלום"
    assert inert(text) == text
    assert inert("a\tb\r\nc\u2028d") == "a b\nc\nd"
    assert inert(None) == inert("") == inert(" \n\n ") == ""


def test_inert_caps_lines_and_length() -> None:
    many = "\n".join(f"line {n}" for n in range(100))
    lines = inert(many).split("\n")
    assert len(lines) == INFO_LINES
    assert lines[-1].startswith(f"line {INFO_LINES - 1} line {INFO_LINES}")  # the rest on one line, none lost ...
    long = inert("x" * 5000)
    assert len(long) == INFO_LIMIT and long.endswith("…")  # ... until the length cap
    assert inert_line("https://a.example\n\nSignature request from https://b.example") == \
        "https://a.example Signature request from https://b.example"
    assert len(inert_line("h" * 1000)) == LINE_LIMIT


def test_inert_survives_undecodable_header_bytes() -> None:
    # aiohttp hands a header's non-UTF-8 bytes over as lone surrogates; they must not break a terminal write.
    shown = inert_line("https://a\udc85b.example")
    assert shown == "https://a\ufffdb.example"
    shown.encode()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=3000))  # surrogates too
def test_inert_output_is_always_inert(text: str) -> None:
    shown = inert(text)
    assert inert(shown) == shown  # idempotent: the service and the dialog may both apply it
    assert len(shown) <= INFO_LIMIT and shown.count("\n") < INFO_LINES
    assert "\n\n\n" not in shown
    shown.encode()  # no lone surrogates left
    for ch in shown:
        category = unicodedata.category(ch)
        assert ch == "\n" or category not in ("Cc", "Cs"), repr(ch)
        assert category != "Cf" or ch in "\u200c\u200d", repr(ch)


def test_dialog_request_holds_page_text_inert() -> None:
    r = DialogRequest("https://eservice.example\u202e\u2066", HOSTILE, "cms", "data", "SHA256", 1, "ab" * 32,
                      (choice(),))
    assert r.origin == r.origin_text == "https://eservice.example"
    assert r.info == inert(HOSTILE)
    summary = r.summary().split("\n")
    assert summary[0] == "Signature request from https://eservice.example"
    # Every line of the page's text is marked as the page's: none reads as a line of the dialog.
    assert [line for line in summary if "Signature request from" in line][1:] == \
        ["  | Signature request from https://bank.example␇\ufffd31mmoc.elpmaxe.live"]
    assert DialogRequest(None, " ", "cms", "data", "SHA256", 1, "ab", ()).info is None


async def test_auto_dialog_logs_page_text_inert(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="digisign_web.dialog.auto")
    await AutoDialog().ask(DialogRequest("https://eservice.example", HOSTILE, "cms", "data", "SHA256", 1, "ab" * 32,
                                         (choice(),)))
    [record] = [r for r in caplog.records if r.getMessage().startswith("auto dialog:")]
    message = record.getMessage()
    assert "\n" not in message and "\x1b" not in message and "\u202e" not in message
    assert message.startswith("auto dialog: Signature request from https://eservice.example ")


async def test_terminal_dialog_shows_hostile_info_inert_on_a_pty() -> None:
    master, slave = os.openpty()
    seen: list[bytes] = []
    os.set_blocking(master, False)
    answered = threading.Event()
    typist = threading.Thread(target=_typist, args=(master, [b"1\n", b"\n"], seen, answered))
    typist.start()
    try:
        hostile = DialogRequest("https://eservice.example", HOSTILE, "cms", "data", "SHA256", 1, "ab" * 32,
                                (choice(),))
        answer = await asyncio.wait_for(TerminalDialog(os.ttyname(slave)).ask(hostile), 10)
    finally:
        answered.set()
        typist.join()
        os.close(slave)
        os.close(master)
    assert answer.choice is None  # the empty PIN cancelled
    screen = b"".join(seen)
    assert b"\x1b" not in screen and b"\x07" not in screen and "\u202e".encode() not in screen
    lines = screen.decode().split("\r\n")
    assert lines[1] == "Signature request from https://eservice.example"
    assert not [line for line in lines[2:] if line.startswith("Signature request from")]
    # The origin is repeated in the prompts, right where the user types.
    assert "Request from https://eservice.example. Choose a certificate" in screen.decode()
    assert "PIN2 for https://eservice.example (Enter to cancel): " in screen.decode()
    assert len(lines) < 30  # 1500 newlines from the page did not scroll the origin away


def test_confined_browsers_are_recognised(monkeypatch, tmp_path) -> None:
    """A snap/flatpak browser cannot open our private launch file, so it must be told apart."""
    from digisign_web.web import dialog as webdialog

    detect = webdialog.default_browser_is_confined.__wrapped__
    monkeypatch.setenv("BROWSER", "/snap/bin/firefox")
    assert detect()
    monkeypatch.setenv("BROWSER", "")
    fake = tmp_path / "xdg-settings"
    fake.write_text("#!/bin/sh\necho firefox.desktop\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert not detect()  # a packaged Debian browser reads the private directory


async def test_a_confined_browser_is_handed_the_dialog_address_itself() -> None:
    from digisign_web.dialog.protocol import DialogRequest
    from digisign_web.web.dialog import WebDialog

    opened: list[str] = []
    dialog = WebDialog("https://localhost:53952", timeout=5, open_url=opened.append, confined_browser=lambda: True)
    request = DialogRequest("https://rp.example", None, "signature", "data", "SHA256", 3, "ab" * 32, (), False)
    task = asyncio.create_task(dialog.ask(request))
    await async_wait_until(lambda: opened, 10, "the dialog address to be handed to the browser")
    task.cancel()
    assert opened and opened[0].startswith("https://localhost:53952/dialog/") and "#" in opened[0]


def test_every_dialog_declares_the_protocol() -> None:
    """The service picks WebSigner's show-first path by ``isinstance(dialog, TabDialog)`` and reads
    ``shows_pin_status``: a dialog that only happens to have the methods would silently lose both."""
    from digisign_web.dialog.auto import AutoDialog
    from digisign_web.dialog.protocol import Dialog, TabDialog
    from digisign_web.dialog.terminal import TerminalDialog
    from digisign_web.web.dialog import WebDialog

    web_dialog = WebDialog("https://localhost:53952")
    assert isinstance(web_dialog, TabDialog) and web_dialog.shows_pin_status
    assert not isinstance(AutoDialog(), TabDialog) and not AutoDialog().shows_pin_status
    assert Dialog in TerminalDialog.__mro__ and TerminalDialog().shows_pin_status
