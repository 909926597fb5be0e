"""The in-process reader source: the virtual card reached without pcscd, as ``make demo`` and fast tests do."""

from __future__ import annotations

import threading
from collections.abc import Callable

from card.errors import CardRemovedError, NoCardError, NoReaderError
from card.readers import ReaderEvent
from card.transport import Transport, atr_is_t0_only
from card.virtual.card import VirtualCard


class InProcessTransport(Transport):
    """Talks straight to a :class:`~card.virtual.card.VirtualCard` object: no pcscd, no reader."""

    @property
    def blocking(self) -> bool:  # type: ignore[override]
        """Each APDU is a function call on the card object; only an injected delay makes it wait."""
        return bool(self.card.faults.delay)

    def __init__(self, card: VirtualCard, reader: str = "digisign-web virtual reader"):
        super().__init__()
        self.card = card
        self.reader = reader
        if not card.present:
            raise NoCardError(f"no card in {reader}")
        self.atr = card.atr
        self.t0 = atr_is_t0_only(self.atr)
        card.power_on()

    def _exchange(self, raw: bytes) -> bytes:
        if not self.card.present:
            raise CardRemovedError(f"card removed from {self.reader}")
        return self.card.process(raw)

    def reset(self) -> None:
        self.card.power_on()


class VirtualReader:
    """A reader source holding one in-process virtual card: what ``make demo`` and fast tests use.

    There is no pcscd to report insertion and removal, so :meth:`insert` and :meth:`remove` do it.
    """

    def __init__(self, card: VirtualCard, name: str = "digisign-web virtual reader"):
        self.card = card
        self.name = name
        self._on_event: Callable[[ReaderEvent], None] | None = None
        self._lock = threading.Lock()

    def start(self, on_event: Callable[[ReaderEvent], None]) -> None:
        self._on_event = on_event

    def stop(self) -> None:
        self._on_event = None

    def state(self) -> dict[str, bytes | None]:
        with self._lock:
            return {self.name: self.card.atr if self.card.present else None}

    def wait_settled(self, timeout: float) -> bool:
        return True

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        return predicate(self.state())

    def connect(self, reader: str) -> InProcessTransport:
        if reader != self.name:
            raise NoReaderError(f"no reader {reader!r}")
        return InProcessTransport(self.card, reader)

    def remove(self) -> None:
        with self._lock:
            self.card.remove()
        self._emit(ReaderEvent("card-removed", self.name))

    def insert(self) -> None:
        with self._lock:
            self.card.insert()
        self._emit(ReaderEvent("card-inserted", self.name, self.card.atr))

    def _emit(self, event: ReaderEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)
