"""What the server knows about present cards, kept from reader events: ``/version`` answers from it (no APDU).

A card is read once when it arrives; each certificate that is expired, not yet valid, or expiring within
certExpirationWarningDays is logged then (D50). Validity itself is worked out again whenever it is asked
for (``/version``, the playground), because a card may stay in the reader past its certificate's notAfter.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from card import (
    CardError,
    CardManager,
    ReaderEvent,
)
from digisign_web.scs.expiry import Validity, expiry
from digisign_web.text import inert_line

log = logging.getLogger(__name__)

VIRTUAL_MANUFACTURER = "digisign-web virtual card"


@dataclass
class CardSummary:
    """What is known about one present card, read once when it arrived (never on a /version call)."""

    reader: str
    profile: str = ""
    serial: str = ""
    label: str = ""
    certificates: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""
    # (notBefore, notAfter) of each entry of ``certificates``, and (algorithm, notBefore, notAfter) of each key
    periods: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list, repr=False)
    keys: list[tuple[str, dt.datetime, dt.datetime]] = field(default_factory=list, repr=False)

    def certificates_now(self, warning_days: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
        """``certificates`` with each one's ``validity`` (valid, expiring, expired, not-yet-valid) and
        ``daysLeft`` as of ``now`` (copies: the stored entries keep what was true at insertion)."""
        out = []
        for entry, (not_before, not_after) in zip(self.certificates, self.periods, strict=True):
            state = expiry(not_before, not_after, warning_days, now)
            out.append({**entry, "validity": str(state.validity), "daysLeft": state.days_left})
        return out

    def usable_key_algorithms(self, now: dt.datetime | None = None) -> list[str]:
        """The algorithms of the keys whose certificates are valid at ``now``: what /version lists (D51)."""
        out: list[str] = []
        for algorithm, not_before, not_after in self.keys:
            if expiry(not_before, not_after, 0, now).validity.usable and algorithm not in out:
                out.append(algorithm)
        return out


class CardState:
    """Reader events in, summaries out. Summaries are built on a worker thread, never on a request."""

    def __init__(self, manager: CardManager, card_lock: threading.RLock | None = None, *, warning_days: int = 30):
        self.manager = manager
        self.warning_days = warning_days  # certExpirationWarningDays
        self.card_lock = card_lock or threading.RLock()  # held for every use of a token
        self._lock = threading.Lock()
        self._summaries: dict[str, CardSummary] = {}
        manager.add_listener(self._on_event)

    def _on_event(self, event: ReaderEvent) -> None:
        with self._lock:
            self._summaries.pop(event.reader, None)
            if event.kind == "service-lost":
                self._summaries.clear()
        if event.kind == "card-inserted":
            threading.Thread(target=self.refresh, args=(event.reader,), daemon=True).start()
        elif event.kind == "card-removed" and self.manager.pkcs11 is not None:
            # The card may have been summarised under its other driver's reader alone (D63): that one again.
            with self._lock:
                missing = [r for r, atr in self.manager.readers().items()
                           if atr is not None and r not in self._summaries]
            for reader in missing:
                threading.Thread(target=self.refresh, args=(reader,), daemon=True).start()

    def refresh(self, reader: str) -> None:
        summary = CardSummary(reader)
        try:
            with self.card_lock:
                token = self.manager.token(reader)
                summary.profile, summary.serial, summary.label = token.profile.name, token.serial, token.label
                now = dt.datetime.now(dt.UTC)
                for cert in token.certificates():
                    x509 = cert.certificate
                    state = expiry(x509.not_before, x509.not_after, self.warning_days, now)
                    entry: dict[str, Any] = {"role": cert.role, "subject": cert.subject, "issuer": cert.issuer,
                                             "notAfter": x509.not_after.date().isoformat(),
                                             "validity": str(state.validity), "daysLeft": state.days_left,
                                             "keyUsage": cert.key_usage,
                                             "key": cert.key_description}
                    summary.periods.append((x509.not_before, x509.not_after))
                    if cert.key is not None:
                        algo = "ECDSA" if cert.key_algorithm == "EC" else "RSA"
                        summary.keys.append((algo, x509.not_before, x509.not_after))
                        self._warn_expiry(reader, cert.role, x509.subject.get("2.5.4.3") or cert.subject, state)
                    if cert.pin is not None:
                        status = token.pin_status(cert.pin)
                        entry.update(pin=cert.pin.label, triesLeft=status.tries_left, blocked=status.blocked)
                    summary.certificates.append(entry)
        except CardError as exc:
            summary.problem = str(exc)
            log.warning("%s: %s", inert_line(reader), inert_line(str(exc), limit=1000))
        if self.manager.pkcs11 is not None:  # which reader shows a card another one shows too (D63)
            with self.card_lock:
                self.manager.tokens()
        with self._lock:
            if self.manager.readers().get(reader) is not None and self.manager.shadowed(reader) is None:
                self._summaries[reader] = summary
            for twin in [r for r in self._summaries if self.manager.shadowed(r)]:
                del self._summaries[twin]  # a card seen twice is summarised once, as it is offered once

    def _warn_expiry(self, reader: str, role: str, name: str, state: Any) -> None:
        """certExpirationWarningDays on insertion: one WARNING per key certificate that is expired, not yet
        valid, or expiring within the window (its holder's CN and the date; the CN is card data, made inert)."""
        if state.validity is Validity.VALID:
            return
        window = f"; certExpirationWarningDays={self.warning_days}" if state.validity is Validity.EXPIRING else ""
        usable = "" if state.validity.usable else "; it will not be offered for signing"
        log.warning("%s: the %s certificate of %s %s%s%s", inert_line(reader), role, inert_line(name, limit=200),
                    state.text(), window, usable)

    def summaries(self) -> list[CardSummary]:
        with self._lock:
            return list(self._summaries.values())

    def _pin_entries(self, reader: str, pin_label: str) -> list[dict[str, Any]]:
        """The certificate entries of ``reader``'s summary that show ``pin_label`` (call with the lock held)."""
        summary = self._summaries.get(reader)
        return [entry for entry in summary.certificates if entry.get("pin") == pin_label] if summary else []

    def known_pin(self, reader: str, pin_label: str) -> tuple[int | None, bool] | None:
        """(tries left, blocked) of a PIN as last learned (at insertion, or from the last VERIFY), else None."""
        with self._lock:
            for entry in self._pin_entries(reader, pin_label):
                if "triesLeft" in entry:
                    return entry["triesLeft"], bool(entry.get("blocked"))
        return None

    def note_pin(self, reader: str, pin_label: str, tries_left: int | None, blocked: bool) -> None:
        """Record what a signing attempt taught us about a PIN counter, so status pages stay current
        without spending APDUs on re-reading it."""
        with self._lock:
            for entry in self._pin_entries(reader, pin_label):
                entry.update(triesLeft=tries_left, blocked=blocked)
