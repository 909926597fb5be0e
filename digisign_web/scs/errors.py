"""SCS failures: one exception type with its reasonCode, the one map from everything below to it, and the
JSON failure answer.

Every failure is ``{"version", "status": "failed", "reasonCode", "reasonText"}`` with HTTP 200, because
that is what SCS clients read (D5); reasonText says which field or rule failed. The codes (README "Reason
codes"): 400 malformed, 401 user/PIN, 403 policy, 404 no card or no match, 413 too large, 500 card or
internal error, 501 not offered.
"""

from __future__ import annotations

import logging
from typing import Any

from card import (
    CardError,
    CardRemovedError,
    PinBlockedError,
    PinInvalidatedError,
    SecurityStatusNotSatisfied,
    WrongPinError,
)
from card.errors import PinpadError
from digisign_web.dialog.protocol import DialogRefused
from digisign_web.signing.names import FormatError

log = logging.getLogger(__name__)


class SelectorError(ValueError):
    """The selector is malformed; str(e) names the field (becomes an SCS 400 reasonText)."""


class ScsFailure(Exception):
    """Ends a request with an SCS failure answer."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text

    def answer(self, version: str) -> dict[str, Any]:
        """The JSON answer a client reads (HTTP 200, D5)."""
        return failure(version, self.code, self.text)


class Cancelled(ScsFailure):
    """The user cancelled (401); counted by the spam guard, and shown as such by the dialog."""

    def __init__(self) -> None:
        super().__init__(401, "cancelled by the user")


class TimedOut(ScsFailure):
    """The dialog was not shown, or not answered, in time (401); counted by the spam guard like a cancel."""

    def __init__(self, text: str = "the user did not answer the dialog in time"):
        super().__init__(401, text)


class PinBlocked(ScsFailure):
    """The PIN is blocked (401): only the PUK helps now."""

    def __init__(self, text: str = "the PIN is blocked; unblock it with the PUK"):
        super().__init__(401, text)


class WrongPin(ScsFailure):
    """A wrong PIN (401), with the tries the card says are left."""

    def __init__(self, text: str, tries_left: int | None):
        super().__init__(401, text)
        self.tries_left = tries_left


def failure(version: str, code: int, text: str) -> dict[str, Any]:
    return {"version": version, "status": "failed", "reasonCode": code, "reasonText": text}


def scs_failure_for(exc: BaseException, *, reading: bool = False) -> ScsFailure:
    """The SCS failure for anything a request can raise below the HTTP layer: the one place where card
    errors, format and selector errors, the dialog's refusals and timeouts get their reasonCode and text.

    ``reading``: the card failed while it was read to offer its certificates (before any PIN), where every
    card error is a 500 that says so. Anything unknown is a 500 "internal error" (the caller logs it).
    """
    if isinstance(exc, ScsFailure):
        return exc
    if isinstance(exc, SelectorError):
        return ScsFailure(400, f"invalid selector: {exc}")
    if isinstance(exc, FormatError):
        return ScsFailure(exc.code, exc.text)
    if isinstance(exc, DialogRefused):
        return ScsFailure(403, str(exc))
    if isinstance(exc, TimeoutError):  # the web dialog's DialogNotShown has its own text
        return TimedOut(str(exc) or "the user did not answer the dialog in time")
    if not isinstance(exc, CardError):
        return ScsFailure(500, "internal error; see the server log")
    if reading:
        return ScsFailure(500, f"card error while reading the card: {exc}")
    if isinstance(exc, WrongPinError):
        left = "unknown" if exc.tries_left is None else str(exc.tries_left)
        return WrongPin(f"wrong PIN; tries left: {left}", exc.tries_left)
    if isinstance(exc, PinBlockedError | PinInvalidatedError):
        return PinBlocked()
    if isinstance(exc, PinpadError):  # Cancel (or a timeout) on the reader's keypad: the user's answer (D62)
        return ScsFailure(401, "PIN entry on the reader was cancelled or timed out")
    if isinstance(exc, SecurityStatusNotSatisfied):
        # The card forgot a PIN we believed it still held (e.g. another program reset it): ask again.
        return ScsFailure(401, "the card asks for the PIN again; repeat the request")
    if isinstance(exc, CardRemovedError):
        return ScsFailure(500, "the card was removed during the operation")
    return ScsFailure(500, f"card error: {exc}")
