"""What the server knows about present cards, kept from reader events: ``/version`` answers from it (no APDU)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from card import (
    CardError,
    CardManager,
    ReaderEvent,
)
from digisign_web.scs.request import HASH_LIST
from digisign_web.signing import formats

log = logging.getLogger(__name__)

VIRTUAL_MANUFACTURER = "digisign-web virtual card"


@dataclass
class CardSummary:
    """What is known about one present card, read once when it arrived (never on a /version call)."""

    reader: str
    profile: str = ""
    serial: str = ""
    label: str = ""
    key_algorithms: list[str] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    problem: str = ""


class CardState:
    """Reader events in, summaries out. Summaries are built on a worker thread, never on a request."""

    def __init__(self, manager: CardManager, card_lock: threading.RLock | None = None):
        self.manager = manager
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

    def refresh(self, reader: str) -> None:
        summary = CardSummary(reader)
        try:
            with self.card_lock:
                token = self.manager.token(reader)
                summary.profile, summary.serial, summary.label = token.profile.name, token.serial, token.label
                for cert in token.certificates():
                    entry: dict[str, Any] = {"role": cert.role, "subject": cert.subject, "issuer": cert.issuer,
                                             "notAfter": cert.certificate.not_after.date().isoformat(),
                                             "keyUsage": cert.key_usage,
                                             "key": cert.key_description}
                    if cert.key is not None:
                        algo = "ECDSA" if cert.key_algorithm == "EC" else "RSA"
                        if algo not in summary.key_algorithms:
                            summary.key_algorithms.append(algo)
                    if cert.pin is not None:
                        status = token.pin_status(cert.pin)
                        entry.update(pin=cert.pin.label, triesLeft=status.tries_left, blocked=status.blocked)
                    summary.certificates.append(entry)
        except CardError as exc:
            summary.problem = str(exc)
            log.warning("%s: %s", reader, exc)
        with self._lock:
            if self.manager.readers().get(reader) is not None:
                self._summaries[reader] = summary

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


def version_payload(summaries: list[CardSummary], version: str = "1.1") -> dict[str, object]:
    """The six mPollux fields (plus v1.2's signatureAlgorithms), from memory: no APDU."""
    algorithms: list[str] = []
    for summary in summaries:
        algorithms += [a for a in summary.key_algorithms if a not in algorithms]
    return {
        "version": version,
        "httpMethods": "GET, POST",
        "contentTypes": "data, digest",
        "signatureTypes": ",".join(formats.ADVERTISED_TYPES),
        "selectorAvailable": True,
        "hashAlgorithms": HASH_LIST if algorithms else "",
        "signatureAlgorithms": ",".join(algorithms),
    }


