"""PIN rules in one home: the card's own PIN format plus DigiSign's overrides, as stable codes and texts.

The CLI (``digisign-web pin``) and the "My card" page (server and its script, ``static/card.rules.mjs``) show
the same rules with the same codes; the page translates the codes, the English texts here are the ones in
``static/i18n.js`` (a unit test keeps them equal). A new PIN (change, unblock) must pass the card's format
and the settings' overrides (D47); the current PIN or the PUK is checked only against the card's format, so a
rule added later never locks a user out of a PIN they already have.

Overrides (the vendor's settings table; our reading is D47):

* ``pinMinLength``: the minimum length of a new PIN instead of the card's (0 = the card's). The card's own
  minimum stays the floor: the card layer refuses shorter PINs anyway, and a card would answer 6A80.
* ``pinNumericValuesOnly``: a new PIN must be digits even where the card's PIN type allows letters.
* ``pinIgnorePinTypeCheck``: type rules are not checked here (neither the card's digits-only type nor
  ``pinNumericValuesOnly``); what the card cannot encode is still refused by the card layer.
* ``pinComplexityCheck`` bits: 0 ``repeated`` (the whole PIN one character, 1111), 1 ``sequence`` (the whole
  PIN one run of +1 or -1 steps, 1234 or 4321), 2 ``large-steps`` (the average absolute difference of
  neighbouring characters must be at most 4: 1919 is refused, 1357 passes), 3 ``not-digits`` (digits only),
  4 ``needs-mixed`` (a lower-case letter, an upper-case letter and a digit).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Any

from card.pkcs15 import PinInfo
from digisign_web.settings import Settings

DIGITS = frozenset("0123456789")
LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

REPEATED, SEQUENCE, LARGE_STEPS, ONLY_DIGITS, MIXED = 1, 2, 4, 8, 16  # pinComplexityCheck bits 0..4
MAX_AVERAGE_STEP = 4

# code -> English text; {min} and {max} are filled in. static/i18n.js has these as "card.rule.<code>".
MESSAGES: dict[str, str] = {
    "too-short": "must have at least {min} characters",
    "too-long": "must have at most {max} characters",
    "impossible-length": "no PIN can be set: pinMinLength ({min}) is more than the card allows ({max})",
    "not-digits": "must be digits only",
    "bad-characters": "may use only plain ASCII letters, digits and symbols",
    "repeated": "must not be one digit repeated (like 1111)",
    "sequence": "must not be a run of consecutive digits (like 1234 or 4321)",
    "large-steps": "neighbouring digits must differ by at most 4 on average",
    "needs-mixed": "must contain a lower-case letter, an upper-case letter and a digit",
    "mismatch": "the two entries of the new PIN differ",
}


@dataclass(frozen=True)
class PinPolicy:
    """What a PIN value must be: the card's format, and for a new PIN the settings' overrides."""

    min_length: int
    max_length: int
    digits_only: bool
    complexity: int = 0  # pinComplexityCheck bits (new PINs only)

    def as_json(self) -> dict[str, Any]:
        """For the page's script, which runs the same checks (static/card.rules.mjs)."""
        return {"min": self.min_length, "max": self.max_length, "digitsOnly": self.digits_only,
                "complexity": self.complexity}


@dataclass(frozen=True)
class BrokenRule:
    """One rule a value breaks: a stable ``code``, the input it concerns, and the English text."""

    code: str
    field: str = "new"  # "old", "puk", "new" or "again"
    params: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def text(self) -> str:
        return MESSAGES[self.code].format(**self.params)

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "params": dict(self.params), "text": self.text}


def card_format(pin: PinInfo) -> PinPolicy:
    """The card's own rules for ``pin``: its length range and, for a numeric PIN type, digits only."""
    return PinPolicy(pin.min_length, pin.max_length, pin.numeric)


def new_pin_policy(pin: PinInfo, settings: Settings | None = None) -> PinPolicy:
    """The rules for a new value of ``pin``: the card's format with DigiSign's overrides applied (D47)."""
    settings = settings or Settings()
    minimum = max(pin.min_length, settings.pin_min_length) if settings.pin_min_length else pin.min_length
    if settings.pin_ignore_pin_type_check:
        digits = False
    else:
        digits = pin.numeric or settings.pin_numeric_values_only
    return PinPolicy(minimum, pin.max_length, digits, settings.pin_complexity_check)


def check(policy: PinPolicy, value: str, field: str = "new", again: str | None = None) -> list[BrokenRule]:
    """Every rule ``value`` breaks under ``policy`` (empty: acceptable); ``again`` is the repeated entry of
    a new PIN. Nothing here touches the card: a broken rule costs no try."""
    broken: list[BrokenRule] = []
    lo, hi = policy.min_length, policy.max_length
    if lo > hi:
        broken.append(BrokenRule("impossible-length", field, {"min": lo, "max": hi}))
    elif len(value) < lo:
        broken.append(BrokenRule("too-short", field, {"min": lo}))
    elif len(value) > hi:
        broken.append(BrokenRule("too-long", field, {"max": hi}))
    if not all(" " <= ch <= "~" for ch in value):
        broken.append(BrokenRule("bad-characters", field))
    bits = policy.complexity
    if (policy.digits_only or bits & ONLY_DIGITS) and not set(value) <= DIGITS:
        broken.append(BrokenRule("not-digits", field))
    if len(value) >= 2:
        codes = [ord(ch) for ch in value]
        steps = [b - a for a, b in itertools.pairwise(codes)]
        if bits & REPEATED and len(set(value)) == 1:
            broken.append(BrokenRule("repeated", field))
        if bits & SEQUENCE and (all(s == 1 for s in steps) or all(s == -1 for s in steps)):
            broken.append(BrokenRule("sequence", field))
        if bits & LARGE_STEPS and sum(abs(s) for s in steps) > MAX_AVERAGE_STEP * len(steps):
            broken.append(BrokenRule("large-steps", field))
    if bits & MIXED and not (set(value) & LOWER and set(value) & UPPER and set(value) & DIGITS):
        broken.append(BrokenRule("needs-mixed", field))
    if again is not None and again != value:
        broken.append(BrokenRule("mismatch", "again"))
    return broken


def describe(policy: PinPolicy) -> str:
    """One line for a prompt: "6-12 digits", "4-12 characters"."""
    kind = "digits" if policy.digits_only or policy.complexity & ONLY_DIGITS else "characters"
    return f"{policy.min_length}-{policy.max_length} {kind}"


__all__ = ["MESSAGES", "BrokenRule", "PinPolicy", "card_format", "check", "describe", "new_pin_policy"]
