"""SCS failures: one exception type with its reasonCode, and the JSON failure answer.

Every failure is ``{"version", "status": "failed", "reasonCode", "reasonText"}`` with HTTP 200, because
that is what SCS clients read (D5); reasonText says which field or rule failed. The codes (README "Reason
codes"): 400 malformed, 401 user/PIN, 403 policy, 404 no card or no match, 413 too large, 500 card or
internal error, 501 not offered.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class SelectorError(ValueError):
    """The selector is malformed; str(e) names the field (becomes an SCS 400 reasonText)."""


class ScsFailure(Exception):
    """Ends a request with an SCS failure answer."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text


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

