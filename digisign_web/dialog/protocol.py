"""The dialog's interface: what the signing service shows the user, what it gets back, and the :class:`Dialog`
protocol every face implements (automatic and terminal in this package, the browser page in
``digisign_web.web.dialog``).

Every request is shown with the requesting origin, the page's ``info`` text, what is being signed (type,
size, digest) and the matching certificates with their PIN tries left. The user picks one, enters the PIN
when the card needs it, or cancels. Nothing is signed without an answer, and the PIN goes straight to the
card: no dialog keeps it.

The origin and ``info`` come from the page: a :class:`DialogRequest` holds them only as :func:`text.inert`
made them, so no face (terminal, log, web page) can be steered by control characters, bidi overrides or a
wall of newlines.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from digisign_web.text import inert, inert_line

Outcome = Literal["signed", "cancelled", "failed"]


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
    pin_on_reader: bool = False  # the PIN is entered on the reader (PKCS#11 protected path, D62): no PIN field


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
    """What the signing service asks of a dialog, for one request: :meth:`ask`, maybe :meth:`ask_again` after
    a wrong PIN, then always :meth:`finish`.

    A dialog that subclasses this protocol inherits the defaults below (no second question, nothing to show
    at the end); :meth:`ask` it must implement.
    """

    # Whether the dialog shows PIN counters: when it does not, the service never reads them from the card
    # just to fill in a question (a read costs APDUs); what it already knows is passed on either way.
    shows_pin_status: bool = True

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        """The user's choice and PIN, or :meth:`DialogAnswer.cancel`. Raises :class:`DialogRefused` when
        this dialog will not serve the request, TimeoutError when it could not be shown in time."""
        ...

    async def ask_again(self, request: DialogRequest, problem: str, tries_left: int | None) -> DialogAnswer | None:
        """After a wrong PIN (``problem`` says so, ``tries_left`` > 0): the user's next answer, or None when
        this dialog cannot ask again, and the request then fails with the wrong PIN. We never retry a PIN."""
        return None

    async def finish(self, request: DialogRequest, outcome: Outcome, text: str) -> None:
        """How the request ended, for the dialog to show; called once per request that reached :meth:`ask`."""
        return None


@runtime_checkable
class TabDialog(Dialog, Protocol):
    """A dialog that can show itself in the requesting tab (WebSigner) before the request queues for the card,
    so a page that is never shown never holds the card."""

    async def reserve(self, present: Callable[[str], None], after: str | None) -> None:
        """Show the dialog page through ``present``; returns once it is on screen, TimeoutError if it is not in
        time. :meth:`Dialog.ask` then fills in the details."""
        ...

    def release(self, present: Callable[[str], None]) -> None:
        """End a reserved page that never got its details (the operation ended first); harmless otherwise."""
        ...
