"""PC/SC readers: listing, filtering by the caller's rule, and card insertion/removal events.

Events come from a thread blocked in ``SCardGetStatusChange`` (no busy polling): it wakes when pcscd
reports a change, and at the latest every ``refresh_interval`` seconds (DigiSign's
``buildReaderListTimer``, default 5) to rebuild the reader list, because readers can be plugged in too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from card.errors import TransportError
from card.pcsc import (
    SCARD_E_CANCELLED,
    SCARD_E_NO_READERS_AVAILABLE,
    SCARD_E_NO_SERVICE,
    SCARD_E_SERVICE_STOPPED,
    SCARD_E_TIMEOUT,
    SCARD_S_SUCCESS,
    PcscTransport,
    pcsc_error,
)

log = logging.getLogger(__name__)


def filter_readers(readers: list[str], exclude: Callable[[str], bool] | None = None) -> list[str]:
    """The readers ``exclude`` does not reject, in their order (the caller's rule, e.g. ``excludeReader``)."""
    if exclude is None:
        return list(readers)
    kept = []
    for r in readers:
        if exclude(r):
            log.debug("reader %r excluded", r)
        else:
            kept.append(r)
    return kept


def _establish() -> int:
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != SCARD_S_SUCCESS:
        raise pcsc_error(hresult, "cannot reach the PC/SC service")
    return context


def _list(context: int) -> list[str]:
    from smartcard import scard

    hresult, readers = scard.SCardListReaders(context, [])
    if hresult in (SCARD_E_NO_READERS_AVAILABLE,) or (hresult == SCARD_S_SUCCESS and not readers):
        return []
    if hresult != SCARD_S_SUCCESS:
        raise pcsc_error(hresult, "cannot list readers")
    return list(readers)


def list_readers(exclude: Callable[[str], bool] | None = None) -> list[str]:
    """The PC/SC readers, minus the excluded ones. An empty list is not an error."""
    from smartcard import scard

    context = _establish()
    try:
        return filter_readers(_list(context), exclude)
    finally:
        scard.SCardReleaseContext(context)


@dataclass(frozen=True)
class ReaderEvent:
    kind: str  # "reader-added", "reader-removed", "card-inserted", "card-removed", "service-lost"
    reader: str
    atr: bytes = b""


class ReaderMonitor:
    """Watches readers in a background thread and calls ``callback(event)`` from that thread.

    ``state()`` gives the current picture (reader -> ATR or None) without touching the card, which
    is what an endpoint that is polled once a second needs.
    """

    def __init__(
        self,
        callback: Callable[[ReaderEvent], None] | None = None,
        exclude: Callable[[str], bool] | None = None,
        refresh_interval: float = 5.0,
    ):
        self.callback = callback
        self.exclude = exclude
        self.refresh_interval = max(0.2, refresh_interval)
        self._states: dict[str, int] = {}
        self._atrs: dict[str, bytes | None] = {}
        self._counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._context: int | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition(self._lock)
        self.settled = threading.Event()  # set once the first full picture of readers and cards is in

    # -- public -------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="reader-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread within ``timeout``. SCardCancel only ends a wait already in progress: one sent just
        before the thread enters SCardGetStatusChange is lost, so it is sent again until the thread is gone."""
        self._stop.set()
        thread, deadline = self._thread, time.monotonic() + timeout
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            context = self._context
            if context is not None:
                from smartcard import scard

                scard.SCardCancel(context)
            thread.join(0.05)
        self._thread = None

    def wait_settled(self, timeout: float) -> bool:
        """Wait for the first complete picture (readers listed and each one's card state known)."""
        return self.settled.wait(timeout)

    def state(self) -> dict[str, bytes | None]:
        with self._lock:
            return dict(self._atrs)

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        """Block until ``predicate(state)`` holds (tests and CLI use this); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(dict(self._atrs)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- thread -------------------------------------------------------------------------------
    def _emit(self, event: ReaderEvent) -> None:
        with self._changed:
            if event.kind == "card-inserted":
                self._atrs[event.reader] = event.atr
            elif event.kind in ("card-removed", "reader-added"):
                self._atrs[event.reader] = None
            elif event.kind == "reader-removed":
                self._atrs.pop(event.reader, None)
            self._changed.notify_all()
        log.info("%s: %s%s", event.kind, event.reader, f" ATR {event.atr.hex(' ')}" if event.atr else "")
        if self.callback is not None:
            try:
                self.callback(event)
            except Exception:  # a broken consumer must not kill the monitor
                log.exception("reader event callback failed")

    def _refresh(self, context: int) -> None:
        from smartcard import scard

        readers = filter_readers(_list(context), self.exclude)
        for gone in [r for r in self._states if r not in readers]:
            if self._atrs.get(gone):
                self._emit(ReaderEvent("card-removed", gone))
            del self._states[gone]
            self._emit(ReaderEvent("reader-removed", gone))
        for new in readers:
            if new not in self._states:
                self._states[new] = scard.SCARD_STATE_UNAWARE
                self._emit(ReaderEvent("reader-added", new))

    def _lose_service(self) -> None:
        for reader in list(self._states):
            if self._atrs.get(reader):
                self._emit(ReaderEvent("card-removed", reader))
            self._emit(ReaderEvent("reader-removed", reader))
        self._states.clear()

    def _run(self) -> None:
        from smartcard import scard

        while not self._stop.is_set():
            try:
                self._context = _establish()
            except TransportError as exc:
                log.warning("%s; retrying in %.0f s", exc, self.refresh_interval)
                self._stop.wait(self.refresh_interval)
                continue
            try:
                self._watch(scard, self._context)
            finally:
                scard.SCardReleaseContext(self._context)
                self._context = None

    def _watch(self, scard, context: int) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_refresh:
                try:
                    self._refresh(context)
                except TransportError as exc:
                    log.warning("reader list: %s", exc)
                    self._lose_service()
                    self._stop.wait(self.refresh_interval)
                    return
                next_refresh = now + self.refresh_interval
            if not self._states:
                self.settled.set()
                self._stop.wait(max(0.0, next_refresh - time.monotonic()))
                continue
            timeout_ms = int(max(0.0, next_refresh - time.monotonic()) * 1000)
            query = [(reader, state) for reader, state in self._states.items()]
            hresult, changes = scard.SCardGetStatusChange(context, timeout_ms, query)
            if hresult == SCARD_E_TIMEOUT:
                continue
            if hresult == SCARD_E_CANCELLED:
                return
            if hresult in (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED):
                log.warning("PC/SC service lost")
                self._lose_service()
                self._emit(ReaderEvent("service-lost", ""))
                self._stop.wait(self.refresh_interval)
                return
            if hresult != SCARD_S_SUCCESS:
                # Most often a reader vanished mid-wait: rebuild the list now.
                log.debug("SCardGetStatusChange: 0x%08X", hresult & 0xFFFFFFFF)
                next_refresh = 0.0
                self._stop.wait(0.05)
                continue
            for reader, event_state, atr in changes:
                self._apply(scard, reader, event_state, bytes(atr))
            self.settled.set()

    def _apply(self, scard, reader: str, event_state: int, atr: bytes) -> None:
        if reader not in self._states:
            return
        if event_state & scard.SCARD_STATE_UNKNOWN or event_state & scard.SCARD_STATE_IGNORE:
            self._states.pop(reader, None)
            if self._atrs.get(reader):
                self._emit(ReaderEvent("card-removed", reader))
            self._emit(ReaderEvent("reader-removed", reader))
            return
        self._states[reader] = event_state & ~scard.SCARD_STATE_CHANGED
        present = bool(event_state & scard.SCARD_STATE_PRESENT) and not (
            event_state & scard.SCARD_STATE_MUTE
        )
        had = self._atrs.get(reader)
        # pcsc-lite counts insertions/removals in the high word: a quick swap of the same card
        # would otherwise look like no change at all.
        counter = (event_state >> 16) & 0xFFFF
        swapped = self._counters.get(reader, counter) != counter
        self._counters[reader] = counter
        if present and (not had or had != atr or swapped):
            if had:
                self._emit(ReaderEvent("card-removed", reader))
            self._emit(ReaderEvent("card-inserted", reader, atr))
        elif not present and had:
            self._emit(ReaderEvent("card-removed", reader))


class PcscReaders:
    """The PC/SC reader source for :class:`~card.manager.CardManager`: a :class:`ReaderMonitor` plus
    :class:`~card.pcsc.PcscTransport` connections."""

    def __init__(self, exclude: Callable[[str], bool] | None = None, refresh_interval: float = 5.0):
        self.exclude = exclude
        self.refresh_interval = refresh_interval
        self._monitor: ReaderMonitor | None = None

    def start(self, on_event: Callable[[ReaderEvent], None]) -> None:
        if self._monitor is None:
            self._monitor = ReaderMonitor(on_event, self.exclude, self.refresh_interval)
            self._monitor.start()

    def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.stop()
            self._monitor = None

    def state(self) -> dict[str, bytes | None]:
        return self._monitor.state() if self._monitor else {}

    def wait_settled(self, timeout: float) -> bool:
        return True if self._monitor is None else self._monitor.wait_settled(timeout)

    def wait_for(self, predicate: Callable[[dict[str, bytes | None]], bool], timeout: float) -> bool:
        if self._monitor is None:
            return predicate(self.state())
        return self._monitor.wait_for(predicate, timeout)

    def connect(self, reader: str) -> PcscTransport:
        return PcscTransport(reader)


def reader_atr(reader: str) -> bytes | None:
    """The ATR of the card in ``reader`` as pcscd sees it now (None: no card, a mute card, or no reader).

    One status query, no connection: it neither powers the card nor disturbs a program using it."""
    from smartcard import scard

    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != 0:
        return None
    try:
        hresult, states = scard.SCardGetStatusChange(context, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
        if hresult != 0:
            return None
        _, event_state, atr = states[0]
        if event_state & scard.SCARD_STATE_PRESENT and not event_state & scard.SCARD_STATE_MUTE and atr:
            return bytes(atr)
        return None
    finally:
        scard.SCardReleaseContext(context)
