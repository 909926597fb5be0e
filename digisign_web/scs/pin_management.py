"""PIN status, change and unblock, for the CLI (``digisign-web pin``) and the "My card" page alike (D46).

Each operation runs under the card lock that serialises every use of a token in the server
(:attr:`CardState.card_lock`), checks the PIN rules (:mod:`.pin_rules`) before any PIN reaches the card, sends
the one CHANGE REFERENCE DATA or RESET RETRY COUNTER, and is never repeated: a wrong PIN or PUK ends it with
the tries the card says are left. Afterwards the card is logged out (a PIN the change left verified is not
handed to the next signature, D28) and the fresh counters are read without spending a try and recorded in
:class:`CardState`, so the signing dialog shows them. ``disablePinUnblocking`` refuses unblocking outright.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from card import CardError, Token
from card.errors import (
    CardRemovedError,
    ConditionsNotSatisfiedError,
    InvalidPinFormatError,
    PinBlockedError,
    PinInvalidatedError,
    ReferenceNotFoundError,
    RetryableCardError,
    WrongLengthError,
    WrongParametersError,
    WrongPinError,
)
from card.pkcs15 import PinInfo
from digisign_web.scs.card_state import CardState
from digisign_web.scs.pin_rules import BrokenRule, PinPolicy, card_format, check, new_pin_policy
from digisign_web.scs.pin_sessions import PinSessions
from digisign_web.settings import Settings
from digisign_web.text import inert_line

log = logging.getLogger(__name__)

PIN_IDS = ("pin1", "pin2")
NAMES = {"pin1": "PIN1", "pin2": "PIN2", "puk": "PUK"}


@dataclass(frozen=True)
class PinCounter:
    """One PIN's counters as the card says them (read without spending a try)."""

    id: str  # "pin1", "pin2" or "puk"
    label: str
    tries_left: int | None
    max_tries: int | None
    blocked: bool
    must_change: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "triesLeft": self.tries_left, "maxTries": self.max_tries,
                "blocked": self.blocked, "mustChange": self.must_change}


class PinOperationError(Exception):
    """A PIN operation refused or failed; ``code`` is stable (the page translates it), ``str()`` is one line.

    Codes: ``rules`` (see ``rules``), ``wrong-pin``/``wrong-puk`` (``tries_left``), ``blocked``, ``puk-blocked``,
    ``unblocking-disabled``, ``no-pin``, ``not-activated``, ``card-refused``, ``removed``, ``card``."""

    def __init__(self, code: str, text: str, *, tries_left: int | None = None,
                 rules: list[BrokenRule] | None = None):
        super().__init__(text)
        self.code = code
        self.text = text
        self.tries_left = tries_left
        self.rules = rules or []

    def as_json(self) -> dict[str, Any]:
        return {"ok": False, "code": self.code, "text": self.text, "triesLeft": self.tries_left,
                "rules": [r.as_json() for r in self.rules]}


@dataclass
class CardPins:
    """A token's PIN objects by our ids, found through the certificates they guard."""

    pins: dict[str, PinInfo] = field(default_factory=dict)

    def get(self, which: str) -> PinInfo:
        pin = self.pins.get(which)
        if pin is None:
            raise PinOperationError("no-pin", f"this card has no {NAMES.get(which, which)}")
        return pin


def card_pins(token: Token) -> CardPins:
    """PIN1 guards the authentication key, PIN2 the signature key; the PUK is the unblocking PIN. Found by role,
    not by reference, so organisation cards (03/04/12) work as citizen cards (11/82/83) do."""
    found: dict[str, PinInfo] = {}
    for cert in token.certificates():
        if cert.pin is not None and cert.key is not None:
            which = {"authentication": "pin1", "signature": "pin2"}.get(cert.role)
            if which and which not in found:
                found[which] = cert.pin
    puk = token.puk()
    if puk is not None:
        found["puk"] = puk
    return CardPins(found)


class PinManagement:
    """Status, change and unblock of one token's PINs; blocking calls (run them on a worker thread)."""

    def __init__(self, settings: Settings | None = None, *,
                 state: CardState | None = None, sessions: PinSessions | None = None):
        self.settings = settings or Settings()
        self.lock = state.card_lock if state is not None else threading.RLock()
        self.state = state
        self.sessions = sessions

    # -- what a page or prompt needs before asking ----------------------------------------------
    def policies(self, token: Token) -> dict[str, dict[str, PinPolicy]]:
        """Per PIN id: ``current`` (the card's format, for the old PIN or the PUK) and ``new`` (with overrides)."""
        with self.lock:
            pins = card_pins(token).pins
        return {which: {"current": card_format(pin), "new": new_pin_policy(pin, self.settings)}
                for which, pin in pins.items()}

    def status(self, token: Token) -> list[PinCounter]:
        """PIN1, PIN2 and the PUK: tries left and blocked, read without spending a try."""
        with self.lock:
            try:
                pins = card_pins(token).pins
                counters = [self._counter(token, which, pin) for which, pin in pins.items()]
            except CardError as exc:
                raise _mapped(exc, "status", "") from None
        return counters

    # -- operations ------------------------------------------------------------------------------
    def change(self, token: Token, which: str, old: str, new: str, again: str | None = None) -> list[PinCounter]:
        """CHANGE REFERENCE DATA of PIN1 or PIN2, once. Returns the fresh counters."""
        if which not in PIN_IDS:
            raise PinOperationError("no-pin", f"unknown PIN {which!r} (pin1 or pin2)")
        with self.lock:
            pin = self._pins(token).get(which)
            broken = check(card_format(pin), old, "old") + check(new_pin_policy(pin, self.settings), new, "new", again)
            if broken:
                raise _rules_error(which, broken)
            self.refuse_blocked(token, which, pin)
            return self._run(token, which, "change", lambda: token.change_pin(pin, old, new))

    def check_unblocking_allowed(self) -> None:
        """disablePinUnblocking=1 refuses every unblock (callers may ask before they prompt for the PUK)."""
        if self.settings.disable_pin_unblocking:
            raise PinOperationError("unblocking-disabled",
                                    "unblocking a PIN is turned off on this computer (disablePinUnblocking=1)")

    def unblock(self, token: Token, which: str, puk: str, new: str, again: str | None = None) -> list[PinCounter]:
        """RESET RETRY COUNTER of PIN1 or PIN2 with the PUK and a new PIN, once. Returns the fresh counters."""
        self.check_unblocking_allowed()
        if which not in PIN_IDS:
            raise PinOperationError("no-pin", f"unknown PIN {which!r} (pin1 or pin2)")
        with self.lock:
            pins = self._pins(token)
            pin, puk_info = pins.get(which), pins.get("puk")
            broken = check(card_format(puk_info), puk, "puk") + check(new_pin_policy(pin, self.settings), new, "new",
                                                                      again)
            if broken:
                raise _rules_error(which, broken)
            self.refuse_blocked(token, "puk", puk_info)
            return self._run(token, which, "unblock", lambda: token.unblock_pin(pin, puk, new))

    # -- helpers ---------------------------------------------------------------------------------
    def _pins(self, token: Token) -> CardPins:
        try:
            return card_pins(token)
        except CardError as exc:
            raise _mapped(exc, "read", "") from None

    def _counter(self, token: Token, which: str, pin: PinInfo) -> PinCounter:
        status = token.pin_status(pin)
        if self.state is not None and which != "puk":
            self.state.note_pin(token.reader, pin.label, status.tries_left, status.blocked)
        return PinCounter(which, pin.label, status.tries_left, status.max_tries, status.blocked, status.must_change)

    def refuse_blocked(self, token: Token, which: str, pin: PinInfo) -> None:
        """Raise the one message for a blocked PIN (or PUK), read without spending a try."""
        try:
            counter = self._counter(token, which, pin)
        except CardError as exc:
            raise _mapped(exc, "read", which) from None
        if counter.blocked:
            if which == "puk":
                raise PinOperationError("puk-blocked", "the PUK is blocked: this card's PINs can no longer be "
                                                       "unblocked (ask the card's issuer for a new card)")
            raise PinOperationError("blocked", f"{NAMES[which]} is blocked: unblock it with the PUK "
                                               f"(digisign-web pin unblock --{which}, or the My card page)",
                                    tries_left=0)

    def _run(self, token: Token, which: str, action: str, operation: Any) -> list[PinCounter]:
        """The one card operation; then log out, and read and record the counters, whatever it answered."""
        error: PinOperationError | None = None
        try:
            operation()
            log.info("%s %s on the card in %s", NAMES[which], "changed" if action == "change" else "unblocked",
                     inert_line(token.reader))
        except CardError as exc:
            error = _mapped(exc, action, which)
        finally:
            self._log_out(token)
        try:
            counters = [self._counter(token, w, p) for w, p in card_pins(token).pins.items()]
        except CardError as exc:
            log.info("could not read the PIN counters after the %s (%s)", action, exc)
            counters = []
        if error is not None:
            if error.code in ("wrong-pin", "wrong-puk"):
                # The card's own count, as read now (the answer's 63Cx says the same).
                for c in counters:
                    if c.id == ("puk" if action == "unblock" else which) and c.tries_left is not None:
                        error.tries_left = c.tries_left
            raise error
        return counters

    def _log_out(self, token: Token) -> None:
        """A changed PIN stays verified on the card: forget it, and whose session it was (D28)."""
        try:
            if self.sessions is not None:
                self.sessions.drop(token)
            else:
                token.logout()
        except CardError as exc:
            log.info("could not log the card out after a PIN operation (%s)", exc)


def _rules_error(which: str, broken: list[BrokenRule]) -> PinOperationError:
    fields = {"old": f"current {NAMES[which]}", "puk": "PUK", "new": f"new {NAMES[which]}", "again": "repeated entry"}
    text = "; ".join(f"{fields[r.field]}: {r.text}" for r in broken)
    return PinOperationError("rules", text, rules=broken)


def _mapped(exc: CardError, action: str, which: str) -> PinOperationError:
    """One clear message per card answer. Never names a PIN value."""
    name = NAMES.get(which, "PIN")
    done = "nothing was changed"
    if isinstance(exc, WrongPinError):
        if action == "unblock":
            return PinOperationError("wrong-puk", f"wrong PUK ({_left(exc.tries_left)}); {done}",
                                     tries_left=exc.tries_left)
        return PinOperationError("wrong-pin", f"wrong current {name} ({_left(exc.tries_left)}); {done}",
                                 tries_left=exc.tries_left)
    if isinstance(exc, PinBlockedError):
        if action == "unblock":
            return PinOperationError("puk-blocked", "wrong PUK, and the PUK is now blocked: this card's PINs can no "
                                                    "longer be unblocked", tries_left=0)
        return PinOperationError("blocked", f"wrong current {name}, and {name} is now blocked: unblock it with the "
                                            f"PUK (digisign-web pin unblock --{which or 'pin2'})", tries_left=0)
    if isinstance(exc, PinInvalidatedError):
        return PinOperationError("not-activated", f"{name} is not activated on this card")
    if isinstance(exc, InvalidPinFormatError | WrongParametersError | WrongLengthError):
        return PinOperationError("card-refused", f"the card refused the PIN's format or length; {done}")
    if isinstance(exc, ConditionsNotSatisfiedError):
        return PinOperationError("card-refused", f"the card refused the new {name} (for example the same as the "
                                                 f"old one); {done}")
    if isinstance(exc, ReferenceNotFoundError):
        return PinOperationError("no-pin", f"the card does not know this {name}")
    if isinstance(exc, CardRemovedError):
        return PinOperationError("removed", "the card was removed" + (
            "; check the PIN status before trying again" if action in ("change", "unblock") else ""))
    if isinstance(exc, RetryableCardError):
        return PinOperationError("no-card", f"no card: {exc}")
    return PinOperationError("card", f"the card failed: {exc}")


def _left(tries: int | None) -> str:
    if tries is None:
        return "tries left unknown"
    return "1 try left" if tries == 1 else f"{tries} tries left"


__all__ = ["PIN_IDS", "CardPins", "PinCounter", "PinManagement", "PinOperationError", "card_pins"]
