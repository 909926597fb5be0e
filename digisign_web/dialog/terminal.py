"""The terminal dialog: asks on the controlling terminal, and repeats the requesting origin in every prompt."""

from __future__ import annotations

import asyncio
import logging
import os
import termios

from digisign_web.dialog.protocol import Choice, Dialog, DialogAnswer, DialogRefused, DialogRequest
from digisign_web.text import inert_line

log = logging.getLogger(__name__)


class TerminalDialog(Dialog):
    """Prompts on the controlling terminal (/dev/tty), so it works while stdout is a log."""

    def __init__(self, tty: str = "/dev/tty"):
        self.tty = tty
        self._lock = asyncio.Lock()  # one prompt at a time, even if requests overlap

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        async with self._lock:
            return await asyncio.to_thread(self._ask, request)

    def _ask(self, request: DialogRequest) -> DialogAnswer:
        try:
            fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            log.error("terminal dialog: no terminal (%s); cancelling the request", exc)
            raise DialogRefused("no terminal is available for the PIN dialog (use --dialog web or auto)") from exc
        try:
            _write(fd, "\n" + request.summary() + "\n")
            for number, choice in enumerate(request.choices, 1):
                tries = f"BLOCKED (unblock it with the PUK: {_unblock_command(choice)})" if choice.blocked else (
                    f"{choice.tries_left} tries left" if choice.tries_left is not None else "")
                warn = "  (expires soon)" if choice.expiring_soon else ""
                _write(fd, f"  [{number}] {inert_line(choice.subject)}  [{choice.role}, {choice.key}] "
                           f"{inert_line(choice.pin_label)} {tries}{warn}\n")
            # The origin again next to every question: however long the page's text, it is on screen.
            origin = request.origin_text
            _write(fd, f"Request from {origin}. Choose a certificate (number), or press Enter to cancel: ")
            line = _readline(fd).strip()
            if not line.isdigit() or not 1 <= int(line) <= len(request.choices):
                _write(fd, "Cancelled.\n")
                return DialogAnswer.cancel()
            index = int(line) - 1
            choice = request.choices[index]
            if choice.blocked:  # the service refuses it: no PIN to ask, but where the PUK helps
                _write(fd, f"{inert_line(choice.pin_label)} is blocked: unblock it with the PUK "
                           f"({_unblock_command(choice)}, or the My card page).\n")
                return DialogAnswer(index)
            if not choice.needs_pin or choice.pin_on_reader:
                if choice.needs_pin:  # D62: the reader asks; the PIN never crosses this computer
                    _write(fd, f"After you answer y, enter {inert_line(choice.pin_label)} on the reader.\n")
                _write(fd, f"Sign for {origin}? [y/N] ")
                yes = _readline(fd).strip().lower() in ("y", "yes", "k", "kyllä", "j", "ja")
                return DialogAnswer(index) if yes else DialogAnswer.cancel()
            pin = _read_secret(fd, f"{inert_line(choice.pin_label)} for {origin} (Enter to cancel): ")
            return DialogAnswer(index, pin) if pin else DialogAnswer.cancel()
        finally:
            os.close(fd)


def _unblock_command(choice: Choice) -> str:
    """The command that unblocks the choice's PIN (the My card page does it too)."""
    return f"digisign-web pin unblock --{'pin1' if choice.role == 'authentication' else 'pin2'}"


def _write(fd: int, text: str) -> None:
    os.write(fd, text.encode(errors="replace"))


def _readline(fd: int, limit: int = 256) -> str:
    """One line from a terminal fd (unbuffered: nothing typed later is swallowed)."""
    data = bytearray()
    while len(data) < limit:
        byte = os.read(fd, 1)
        if not byte or byte == b"\n":
            break
        data += byte
    return data.decode(errors="replace").rstrip("\r")


def _read_secret(fd: int, prompt: str) -> str:
    """Read a line from *this* terminal with echo off (getpass would pick its own /dev/tty)."""
    old = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSADRAIN, quiet)  # before the prompt: a PIN typed at once is not echoed
    try:
        _write(fd, prompt)
        return _readline(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
        _write(fd, "\n")
