"""Typed card errors, and the one place where status words become exceptions.

Callers (the HTTP layer above all) need to tell "wrong PIN, 2 tries left" from "card pulled out" without
looking at status words, so every SW the card layer understands maps to a class here.

Every error is a :class:`CardError`, in one of two trees that tell a caller what to do next:

* :class:`RetryableCardError`: the same operation may succeed if tried again once the user has acted:
  the reader or PC/SC service failed (:class:`TransportError`), no reader (:class:`NoReaderError`), no card
  (:class:`NoCardError`), or the card was removed or reset (:class:`CardRemovedError`);
* :class:`FatalCardError`: trying again with the same card and input gives the same answer: a status
  word (:class:`StatusWordError` and its PIN errors: wrong, blocked, invalid format), a response that does
  not parse (:class:`MalformedResponseError`), a card we cannot use (:class:`UnsupportedCardError`), or a
  key the card cannot sign with.

A wrong PIN is fatal in this sense: the operation needs a different PIN, not another try of the same one.
"""

from __future__ import annotations


class CardError(Exception):
    """Base class for everything the card layer raises."""


class RetryableCardError(CardError):
    """The operation may succeed if tried again after the user acts (attaches a reader, inserts the card)."""


class FatalCardError(CardError):
    """Trying again unchanged gives the same answer: the card refused, answered nonsense, or is unusable."""


class TransportError(RetryableCardError):
    """The reader or the PC/SC service failed (no reader, service down, protocol error)."""


class NoReaderError(TransportError):
    """No reader is available, or the named reader does not exist."""


class NoCardError(TransportError):
    """The reader has no card in it."""


class CardRemovedError(TransportError):
    """The card was removed (or reset) during or since the last operation; all cached state is void."""


class MalformedResponseError(FatalCardError):
    """The card answered something that does not parse (broken or malicious card)."""


class UnsupportedCardError(FatalCardError):
    """The card is not one we can use (unknown ATR and no PKCS#15 application, or filtered out)."""


class StatusWordError(FatalCardError):
    """The card answered with a status word other than success."""

    def __init__(self, sw: int, message: str | None = None, command: str | None = None):
        self.sw = sw
        self.command = command
        text = message or "card returned status"
        where = f" to {command}" if command else ""
        super().__init__(f"{text}{where} (SW {sw:04X})")


class SecurityStatusNotSatisfied(StatusWordError):
    """6982: the operation needs a PIN that is not verified."""


class PinError(StatusWordError):
    """Base for PIN outcomes."""


class WrongPinError(PinError):
    """63Cx: the PIN (or PUK) was wrong; ``tries_left`` says how many tries remain."""

    def __init__(self, sw: int, tries_left: int | None, command: str | None = None):
        self.tries_left = tries_left
        left = "unknown" if tries_left is None else str(tries_left)
        super().__init__(sw, f"wrong PIN, tries left: {left}", command)


class PinBlockedError(PinError):
    """6983 (or 63C0): the PIN is blocked; unblock it with the PUK."""


class PinInvalidatedError(PinError):
    """6984: the reference data is invalidated (for example a PIN that was never activated)."""


class InvalidPinFormatError(PinError):
    """The PIN is not acceptable before it reaches the card (length, characters), or the card said 6700/6A80."""

    def __init__(self, message: str, sw: int = 0x6A80, command: str | None = None):
        super().__init__(sw, message, command)


class FileNotFoundOnCardError(StatusWordError):
    """6A82: file or application not found."""


class ReferenceNotFoundError(StatusWordError):
    """6A88: referenced data (a key or PIN reference) not found."""


class ConditionsNotSatisfiedError(StatusWordError):
    """6985: conditions of use not satisfied."""


class WrongLengthError(StatusWordError):
    """6700: wrong length."""


class WrongParametersError(StatusWordError):
    """6A86/6B00/6A80 and friends: the card rejected the command's parameters or data."""


class UnsupportedInstructionError(StatusWordError):
    """6D00/6E00: instruction or class not supported."""


class PinpadError(PinError):
    """64xx from a pinpad reader: timeout (6400), cancel (6401), and so on."""


_SIMPLE: dict[int, tuple[type[StatusWordError], str]] = {
    0x6982: (SecurityStatusNotSatisfied, "security status not satisfied"),
    0x6983: (PinBlockedError, "PIN blocked"),
    0x6984: (PinInvalidatedError, "reference data invalidated"),
    0x6985: (ConditionsNotSatisfiedError, "conditions of use not satisfied"),
    0x6A82: (FileNotFoundOnCardError, "file or application not found"),
    0x6A88: (ReferenceNotFoundError, "referenced data not found"),
    0x6700: (WrongLengthError, "wrong length"),
    0x6A80: (WrongParametersError, "incorrect data"),
    0x6A81: (UnsupportedInstructionError, "function not supported"),
    0x6A86: (WrongParametersError, "incorrect P1/P2"),
    0x6B00: (WrongParametersError, "wrong parameters (offset outside the file)"),
    0x6D00: (UnsupportedInstructionError, "instruction not supported"),
    0x6E00: (UnsupportedInstructionError, "class not supported"),
    0x6400: (PinpadError, "pinpad timeout"),
    0x6401: (PinpadError, "PIN entry cancelled on the pinpad"),
    0x6403: (PinpadError, "PIN length wrong on the pinpad"),
    0x6404: (PinpadError, "PIN entry disabled on the pinpad"),
}


def error_for_sw(sw: int, command: str | None = None) -> StatusWordError:
    """Build the typed exception for a non-success status word.

    ``63Cx`` carries the try counter; ``63C0`` means the counter reached zero, which the
    caller sees as a blocked PIN, because that is what it is.
    """
    if 0x63C0 <= sw <= 0x63CF:
        tries = sw & 0x0F
        if tries == 0:
            return PinBlockedError(sw, "PIN blocked", command)
        return WrongPinError(sw, tries, command)
    if sw == 0x6300:
        return WrongPinError(sw, None, command)
    if sw in _SIMPLE:
        cls, text = _SIMPLE[sw]
        return cls(sw, text, command)
    return StatusWordError(sw, None, command)
