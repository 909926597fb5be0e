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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from card.errors import CardError, UnsupportedCardError
from card.readers import PcscReaders, ReaderEvent
from card.token import Token
from card.transport import Transport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CardPolicy:
    """Which cards to use: the rules come from the caller (DigiSign's settings), as predicates."""

    exclude_reader: Callable[[str], bool] | None = None  # excludeReader
    allow_unknown_cards: bool = True  # allowUnknownCards
    label_filter: Callable[[str], bool] | None = None  # validTokenInfoLabel
    refresh_interval: float = 5.0  # buildReaderListTimer


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

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.source.start(self._on_event)

    def stop(self) -> None:
        self.source.stop()
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
        return self.source.state()

    def wait_settled(self, timeout: float = 5.0) -> bool:
        """Wait until the source knows every reader's state (immediately for the virtual card)."""
        return self.source.wait_settled(timeout)

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        return self.source.wait_for(predicate, timeout)

    def token(self, reader: str) -> Token:
        """The token in ``reader``, opened on first use and cached until the card leaves."""
        with self._lock:
            token = self._tokens.get(reader)
            if token is not None and not token.removed:
                return token
            transport = self.source.connect(reader)
            try:
                token = Token.open(
                    transport,
                    allow_unknown_cards=self.policy.allow_unknown_cards,
                    label_filter=self.policy.label_filter,
                )
            except BaseException:
                transport.close()
                raise
            self._tokens[reader] = token
            return token

    def cached_tokens(self) -> list[Token] | None:
        """The usable tokens from memory, without any card I/O, or None when a present card has not been
        opened and read yet (or failed to be): then :meth:`tokens` must do the work."""
        with self._lock:
            out = []
            for reader, atr in self.readers().items():
                if atr is None:
                    continue
                token = self._tokens.get(reader)
                if token is None or token.removed or not token.loaded:
                    return None
                out.append(token)
            return out

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
