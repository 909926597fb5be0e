"""The cards that are present now, and a token for each, kept current by reader events.

This is what a long-running program (the server) holds: it answers "which cards and certificates are
there?" from memory, opens a token lazily on first use, and drops a token the moment its card is
removed, so nothing cached about a removed card survives. Where the readers come from is a
:class:`ReaderSource`: PC/SC (:class:`~card.readers.PcscReaders`) or the in-process virtual card
(``card.virtual.source``), so the manager has no "if virtual" branches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from card.cache import CardCache
from card.errors import CardError, UnsupportedCardError
from card.readers import PcscReaders, ReaderEvent
from card.token import CardToken, Token
from card.transport import Transport

if TYPE_CHECKING:
    from card.pkcs11 import Pkcs11Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardPolicy:
    """Which cards to use: the rules come from the caller (DigiSign's settings), as predicates."""

    exclude_reader: Callable[[str], bool] | None = None  # excludeReader
    allow_unknown_cards: bool = True  # allowUnknownCards
    label_filter: Callable[[str], bool] | None = None  # validTokenInfoLabel
    refresh_interval: float = 5.0  # buildReaderListTimer
    cache: CardCache | None = None  # SmartCardSNCache / SmartCardCachePath: known cards' certificates (D57)
    pkcs11_modules: tuple[str, ...] = ()  # pkcs11Module and --pkcs11-module: tokens through these modules too
    pkcs11_preferred: bool = False  # pkcs11Preferred: a card both see is offered through its module (D63)


class ReaderSource(Protocol):
    """Where readers and cards come from. Events go to the callback given to :meth:`start`."""

    def start(self, on_event: Callable[[ReaderEvent], None]) -> None: ...
    def stop(self) -> None: ...
    def state(self) -> dict[str, bytes | None]: ...
    def wait_settled(self, timeout: float) -> bool: ...
    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool: ...
    def connect(self, reader: str) -> Transport: ...


class CardManager:
    """Readers, present cards, and lazily opened tokens. Thread-safe."""

    def __init__(self, policy: CardPolicy | None = None, source: ReaderSource | None = None):
        self.policy = policy or CardPolicy()
        self.source: ReaderSource = source or PcscReaders(self.policy.exclude_reader, self.policy.refresh_interval)
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._errors: dict[str, str] = {}
        self._listeners: list[Callable[[ReaderEvent], None]] = []
        self._shadowed: dict[str, str] = {}  # reader -> the reader through which the same card is offered (D63)
        self.pkcs11: Pkcs11Source | None = None  # the PKCS#11 tokens beside the reader source (D60)
        if self.policy.pkcs11_modules:
            from card.pkcs11 import Pkcs11Source  # python-pkcs11 only for those who configured a module

            self.pkcs11 = Pkcs11Source(self.policy.pkcs11_modules, self.policy.refresh_interval)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.source.start(self._on_event)
        if self.pkcs11 is not None:
            self.pkcs11.start(self._on_event)

    def stop(self) -> None:
        self.source.stop()
        if self.pkcs11 is not None:
            self.pkcs11.stop()
        self.forget_tokens()

    def forget_tokens(self) -> None:
        """Drop every cached token (they are opened again on next use), e.g. after a transport error."""
        with self._lock:
            for reader in list(self._tokens):
                self._drop(reader)

    def _drop(self, reader: str) -> None:
        token = self._tokens.pop(reader, None)
        if token is not None:
            token.close()

    def add_listener(self, callback: Callable[[ReaderEvent], None]) -> None:
        self._listeners.append(callback)

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, event: ReaderEvent) -> None:
        with self._lock:
            if event.kind in ("card-removed", "card-inserted", "reader-removed", "service-lost"):
                stale = [event.reader] if event.reader else list(self._tokens)
                for reader in stale:
                    self._drop(reader)
                    self._errors.pop(reader, None)
                self._shadowed = {}  # which reader shows a card twice is found again from the new picture
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("card event listener failed")

    # -- queries ------------------------------------------------------------------------------
    def readers(self) -> dict[str, bytes | None]:
        """Reader name -> ATR of the card in it (None: empty; b"" for a PKCS#11 token). From memory, no APDU."""
        if self.pkcs11 is None:
            return self.source.state()
        return {**self.source.state(), **self.pkcs11.state()}

    def wait_settled(self, timeout: float = 5.0) -> bool:
        """Wait until the source knows every reader's state (immediately for the virtual card)."""
        settled = self.source.wait_settled(timeout)
        return self.pkcs11.wait_settled(timeout) and settled if self.pkcs11 is not None else settled

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        if self.pkcs11 is None:
            return self.source.wait_for(predicate, timeout)
        deadline = time.monotonic() + timeout
        while not predicate(self.readers()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def token(self, reader: str) -> CardToken:
        """The token in ``reader``, opened on first use and cached until the card leaves."""
        if self.pkcs11 is not None and self.pkcs11.owns(reader):
            return self.pkcs11.token(reader)
        with self._lock:
            token = self._tokens.get(reader)
            if token is not None and not token.removed:
                return token
            self._drop(reader)  # a token that went stale (removed, or its cache disproved): close its connection
            transport = self.source.connect(reader)
            try:
                token = Token.open(
                    transport,
                    allow_unknown_cards=self.policy.allow_unknown_cards,
                    label_filter=self.policy.label_filter,
                    cache=self.policy.cache,
                )
            except BaseException:
                transport.close()
                raise
            self._tokens[reader] = token
            return token

    def cached_tokens(self) -> list[CardToken] | None:
        """The usable tokens from memory, without any card I/O, or None when a present card has not been
        opened and read yet (or failed to be): then :meth:`tokens` must do the work."""
        with self._lock:
            out: list[CardToken] = []
            for reader, atr in self.readers().items():
                if atr is None:
                    continue
                token: CardToken | None = self._tokens.get(reader)
                if token is None and self.pkcs11 is not None and self.pkcs11.owns(reader):
                    try:
                        token = self.pkcs11.token(reader)
                    except CardError:
                        return None
                if token is None or token.removed or not token.loaded:
                    return None
                out.append(token)
            return self._one_per_card(out, read=False)

    def tokens(self) -> list[CardToken]:
        """Every usable token now present, each card once (D63); unusable cards are skipped, their reason kept."""
        out = []
        for reader, atr in self.readers().items():
            if atr is None:
                continue
            try:
                out.append(self.token(reader))
            except UnsupportedCardError as exc:
                self._note(reader, str(exc), logging.INFO)
            except CardError as exc:
                self._note(reader, str(exc), logging.WARNING)
        return self._one_per_card(out, read=True)

    def _one_per_card(self, tokens: list[CardToken], *, read: bool) -> list[CardToken]:
        """A card that both our driver and a PKCS#11 module (or two modules) see is offered once: through the
        preferred source (our driver, unless pkcs11Preferred; among modules, the first configured). Same card:
        the same serial number, or a certificate in common (D63). ``read``: certificates may be read for it."""
        if self.pkcs11 is None or len(tokens) < 2:
            with self._lock:
                self._shadowed = {}
            return tokens
        order = {path: index for index, path in enumerate(self.pkcs11.paths)}

        def rank(token: CardToken) -> int:
            module = getattr(token, "module", None)
            if module is None:  # our own driver
                return -1 if not self.policy.pkcs11_preferred else len(order)
            return order.get(module.path, len(order))

        kept: list[CardToken] = []
        shadowed: dict[str, str] = {}
        for token in sorted(tokens, key=rank):
            twin = next((k for k in kept if rank(k) != rank(token) and _same_card(k, token, read)), None)
            if twin is None:
                kept.append(token)
            else:
                shadowed[token.reader] = twin.reader
                log.debug("%s shows the card of %s again: offered once, through %s", token.reader, twin.reader,
                          twin.reader)
        with self._lock:
            self._shadowed = shadowed
        return [t for t in tokens if t.reader not in shadowed]

    def shadowed(self, reader: str) -> str | None:
        """The reader through which the card in ``reader`` is offered instead (as last found), else None."""
        with self._lock:
            return self._shadowed.get(reader)

    def _note(self, reader: str, reason: str, level: int) -> None:
        with self._lock:
            if self._errors.get(reader) != reason:
                log.log(level, "%s: %s", reader, reason)
            self._errors[reader] = reason

    def problems(self) -> dict[str, str]:
        """Why a present card is not offered, per reader, and why a PKCS#11 module is not used, per module path
        (for status pages and ``list``)."""
        with self._lock:
            errors = dict(self._errors)
        if self.pkcs11 is not None:
            errors.update(self.pkcs11.problems())
        return errors


def _serial_forms(serial: str) -> set[str]:
    """A serial as written, and decoded when it is the hex of printable ASCII (OpenSC's PKCS#11 serial of a
    FINEID card is the hex of the card serial's last 8 characters, F39)."""
    text = "".join(serial.split()).upper()
    forms = {text} if text else set()
    try:
        decoded = bytes.fromhex(text).decode("ascii")
    except ValueError:
        return forms
    if decoded.isprintable() and decoded.strip():
        forms.add(decoded.strip().upper())
    return forms


def _same_serial(a: str, b: str) -> str | None:
    """"equal", or "partial" when (a PKCS#11 serial holds 16 characters at most) one of 8 or more characters
    ends or starts the other, else None."""
    partial = None
    for x in _serial_forms(a):
        for y in _serial_forms(b):
            short, long = sorted((x, y), key=len)
            if short == long:
                return "equal"
            if len(short) >= 8 and (long.endswith(short) or long.startswith(short)):
                partial = "partial"
    return partial


def _same_card(a: CardToken, b: CardToken, read: bool) -> bool:
    """The same card: equal serial numbers, else a keyed certificate in common (read only when ``read``, or
    already loaded), else a serial that may be the other's cut short (:func:`_same_serial`)."""
    try:
        serial = _same_serial(a.serial, b.serial)
        if serial == "equal":
            return True
        if not read and not (a.loaded and b.loaded):
            return serial == "partial"
        ders = {c.der for c in a.certificates() if c.key is not None}
        return any(c.der in ders for c in b.certificates() if c.key is not None)
    except CardError as exc:
        log.debug("comparing %s and %s: %s", a.reader, b.reader, exc)
        return False
