"""Asking the user: one interface, several faces (terminal, automatic for tests, web in the browser).

Every request is shown with the requesting origin, the page's ``info`` text, what is being signed (type,
size, digest) and the matching certificates with their PIN tries left. The user picks one, enters the PIN
when the card needs it, or cancels. Nothing is signed without an answer, and the PIN goes straight to the
card: no dialog keeps it.

The origin and ``info`` come from the page: a :class:`DialogRequest` holds them only as :func:`text.inert`
made them, so no face (terminal, log, web page) can be steered by control characters, bidi overrides or a
wall of newlines, and the terminal repeats the origin in every prompt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import termios
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from digisign_web.text import inert, inert_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """One certificate the request may use."""

    label: str
    subject: str
    issuer: str
    role: str  # "authentication" or "signature"
    key: str  # e.g. "EC secp384r1", "RSA 2048"
    not_after: str
    expiring_soon: bool
    pin_label: str
    tries_left: int | None
    blocked: bool
    needs_pin: bool  # False when PIN1 is still verified on the card and PIN-always is off
    reader: str
    virtual: bool  # the token is digisign-web's virtual card
    key_usage: tuple[str, ...] = ()
    pin_min: int = 4
    pin_max: int = 12
    pin_digits: bool = True  # ascii-numeric PIN: the dialog can refuse letters before the card sees them


@dataclass(frozen=True)
class DialogRequest:
    """What the user is asked. ``origin`` and ``info`` are stored inert (see :mod:`text`): they are for showing."""

    origin: str | None
    info: str | None
    signature_type: str
    content_type: str
    hash_algorithm: str
    content_size: int
    digest_hex: str
    choices: tuple[Choice, ...]
    relaxed_algorithm: bool = False  # the page preferred a key algorithm the card does not have
    # WebSigner: the dialog is shown in the tab the request came in (present receives the dialog URL
    # instead of a new browser tab opening), and the tab goes on to ``after`` when the dialog is done.
    present: Callable[[str], None] | None = field(default=None, compare=False, repr=False)
    after: str | None = None
    # Names this request across ask / ask_again / finish (dataclasses.replace keeps it): an id() could be reused.
    key: str = field(default_factory=lambda: secrets.token_hex(8), compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", None if self.origin is None else inert_line(self.origin) or None)
        object.__setattr__(self, "info", inert(self.info) or None)

    @property
    def origin_text(self) -> str:
        return self.origin or "a local program (no Origin header)"

    @property
    def digest_short(self) -> str:
        d = self.digest_hex
        return d if len(d) <= 24 else f"{d[:12]}…{d[-12:]}"

    def summary(self) -> str:
        """What the user must see, as text (no content, no PIN)."""
        what = "a digest" if self.content_type == "digest" else f"{self.content_size} bytes"
        lines = [f"Signature request from {self.origin_text}",
                 f"  Sign {what} as '{self.signature_type}' ({self.hash_algorithm} {self.digest_short})"]
        if self.info:  # each line marked as the page's own words, so none can pass for a line of ours
            lines.append("  The page says:")
            lines += [f"  | {line}" for line in self.info.split("\n")]
        if self.relaxed_algorithm:
            lines.append("  Note: the page preferred another key algorithm; the card has none, so these are offered")
        return "\n".join(lines)


@dataclass(frozen=True)
class DialogAnswer:
    choice: int | None  # index into DialogRequest.choices; None means cancel
    pin: str | None = None

    @classmethod
    def cancel(cls) -> DialogAnswer:
        return cls(None, None)


class DialogRefused(Exception):
    """The dialog will not serve this request at all (e.g. the automatic dialog and a real card)."""


class Dialog(Protocol):
    async def ask(self, request: DialogRequest) -> DialogAnswer: ...


class AutoDialog:
    """For automated tests of e-services: approves with the first choice and fixed PINs, or cancels all.

    It serves the virtual card only, unless ``allow_real_cards`` (the loudly named command-line flag):
    approving real signatures without a human is exactly what the dialog exists to prevent.
    """

    def __init__(self, pin1: str = "1234", pin2: str = "123456", cancel: bool = False,
                 allow_real_cards: bool = False):
        self.pins = {"authentication": pin1, "signature": pin2}
        self.cancel = cancel
        self.allow_real_cards = allow_real_cards

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        log.info("auto dialog: %s", request.summary().replace("\n", " "))
        if self.cancel:
            return DialogAnswer.cancel()
        for index, choice in enumerate(request.choices):
            if choice.virtual or self.allow_real_cards:
                return DialogAnswer(index, self.pins.get(choice.role) if choice.needs_pin else None)
        raise DialogRefused("the automatic dialog only approves the virtual card "
                            "(start with --auto-approve-real-cards to change that)")


class TerminalDialog:
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
                tries = "BLOCKED" if choice.blocked else (
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
            if not choice.needs_pin:
                _write(fd, f"Sign for {origin}? [y/N] ")
                yes = _readline(fd).strip().lower() in ("y", "yes", "k", "kyllä", "j", "ja")
                return DialogAnswer(index) if yes else DialogAnswer.cancel()
            pin = _read_secret(fd, f"{inert_line(choice.pin_label)} for {origin} (Enter to cancel): ")
            return DialogAnswer(index, pin) if pin else DialogAnswer.cancel()
        finally:
            os.close(fd)


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
