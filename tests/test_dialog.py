"""The dialogs: the automatic one's refusal of real cards, and the terminal one on a real pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from digisign_web.dialog import AutoDialog, Choice, DialogRefused, DialogRequest, TerminalDialog


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


def _typist(master: int, lines: list[bytes], seen: list[bytes]) -> None:
    """Type each line once its prompt is on the screen (as a person would), and keep the screen."""
    prompts = [b"Enter to cancel: ", b"(Enter to cancel): "]
    deadline = time.monotonic() + 10
    for line, prompt in zip(lines, prompts, strict=False):
        while prompt not in b"".join(seen).split(line)[-1] and time.monotonic() < deadline:
            try:
                seen.append(os.read(master, 4096))
            except BlockingIOError:
                time.sleep(0.02)
        os.write(master, line)
    time.sleep(0.3)
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
    typist = threading.Thread(target=_typist, args=(master, typed, seen))
    typist.start()
    try:
        answer = await asyncio.wait_for(TerminalDialog(os.ttyname(slave)).ask(
            request(choice(), choice("authentication", needs_pin=True))), 10)
    finally:
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
