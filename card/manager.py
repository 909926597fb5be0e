"""The cards that are present now, and a token for each, kept current by reader events.

This is what a long-running program (the server) holds: it answers "which cards and certificates are
there?" from memory, opens a token lazily on first use, and drops a token the moment its card is
removed, so nothing cached about a removed card survives. The same interface serves PC/SC readers and
the in-process virtual card.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .emulator import VirtualCard
from .errors import CardError, UnsupportedCardError
from .readers import ReaderEvent, ReaderMonitor
from .token import Token
from .transport import InProcessTransport, PcscTransport, Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardPolicy:
    """DigiSign's card settings that the card layer applies."""

    exclude_reader: str = ""  # excludeReader
    allow_unknown_cards: bool = True  # allowUnknownCards
    valid_token_info_label: str = ""  # validTokenInfoLabel
    refresh_interval: float = 5.0  # buildReaderListTimer


class CardManager:
    """Readers, present cards, and lazily opened tokens. Thread-safe."""

    def __init__(self, policy: CardPolicy | None = None, virtual: VirtualCard | None = None,
                 virtual_reader: str = "digisign-web virtual reader"):
        self.policy = policy or CardPolicy()
        self.virtual = virtual
        self.virtual_reader = virtual_reader
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._errors: dict[str, str] = {}
        self._listeners: list[Callable[[ReaderEvent], None]] = []
        self._monitor: ReaderMonitor | None = None
        self._virtual_state: dict[str, bytes | None] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.virtual is not None:
            self._virtual_state = {self.virtual_reader: self.virtual.atr if self.virtual.present else None}
            return
        self._monitor = ReaderMonitor(self._on_event, self.policy.exclude_reader,
                                      self.policy.refresh_interval)
        self._monitor.start()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None
        self.forget_tokens()

    def forget_tokens(self) -> None:
        """Drop every cached token (they are opened again on next use), e.g. after a transport error."""
        with self._lock:
            for reader in list(self._tokens):
                self._drop(reader)

    def _drop(self, reader: str) -> None:
        token = self._tokens.pop(reader, None)
        if token is not None:
            token.invalidate()
            token.transport.close()

    def add_listener(self, callback: Callable[[ReaderEvent], None]) -> None:
        self._listeners.append(callback)

    # -- virtual card presence (the in-process card has no pcscd to tell us) -------------------
    def remove_virtual(self) -> None:
        if self.virtual is None:
            raise RuntimeError("no virtual card")
        self.virtual.remove()
        self._virtual_state[self.virtual_reader] = None
        self._on_event(ReaderEvent("card-removed", self.virtual_reader))

    def insert_virtual(self) -> None:
        if self.virtual is None:
            raise RuntimeError("no virtual card")
        self.virtual.insert()
        self._virtual_state[self.virtual_reader] = self.virtual.atr
        self._on_event(ReaderEvent("card-inserted", self.virtual_reader, self.virtual.atr))

    # -- events -------------------------------------------------------------------------------
    def _on_event(self, event: ReaderEvent) -> None:
        with self._lock:
            if event.kind in ("card-removed", "card-inserted", "reader-removed", "service-lost"):
                stale = [event.reader] if event.reader else list(self._tokens)
                for reader in stale:
                    self._drop(reader)
                    self._errors.pop(reader, None)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("card event listener failed")

    # -- queries ------------------------------------------------------------------------------
    def readers(self) -> dict[str, bytes | None]:
        """Reader name -> ATR of the card in it (None: empty). Answered from memory, no APDU."""
        if self.virtual is not None:
            return dict(self._virtual_state)
        return self._monitor.state() if self._monitor else {}

    def wait_settled(self, timeout: float = 5.0) -> bool:
        """Wait until the reader monitor knows every reader's state (immediately for the virtual card)."""
        return True if self._monitor is None else self._monitor.wait_settled(timeout)

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        if self._monitor is None:
            return predicate(self.readers())
        return self._monitor.wait_for(predicate, timeout)

    def _connect(self, reader: str) -> Transport:
        if self.virtual is not None and reader == self.virtual_reader:
            return InProcessTransport(self.virtual, reader)
        return PcscTransport(reader)

    def token(self, reader: str) -> Token:
        """The token in ``reader``, opened on first use and cached until the card leaves."""
        with self._lock:
            token = self._tokens.get(reader)
            if token is not None and not token.removed:
                return token
            transport = self._connect(reader)
            try:
                token = Token.open(
                    transport,
                    allow_unknown_cards=self.policy.allow_unknown_cards,
                    valid_token_info_label=self.policy.valid_token_info_label,
                )
            except BaseException:
                transport.close()
                raise
            self._tokens[reader] = token
            return token

    def tokens(self) -> list[Token]:
        """Every usable token now present; unusable cards are skipped and their reason kept."""
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
        return out

    def _note(self, reader: str, reason: str, level: int) -> None:
        with self._lock:
            if self._errors.get(reader) != reason:
                log.log(level, "%s: %s", reader, reason)
            self._errors[reader] = reason

    def problems(self) -> dict[str, str]:
        """Why a present card is not offered, per reader (for status pages and ``list``)."""
        with self._lock:
            return dict(self._errors)
