"""PC/SC through pyscard's low-level ``scard`` API: the transport to a card in a real (or vpcd) reader.

pyscard is imported lazily, so the rest of the card layer (and its unit tests) runs without it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from card.errors import CardRemovedError, NoCardError, NoReaderError, TransportError
from card.transport import Transport

log = logging.getLogger(__name__)

# PC/SC result codes we classify (pcsclite.h); pyscard exposes them too, but naming them here keeps
# the mapping readable and lets unit tests run without pyscard.
SCARD_S_SUCCESS = 0
SCARD_E_CANCELLED = 0x80100002
SCARD_E_UNKNOWN_READER = 0x80100009
SCARD_E_TIMEOUT = 0x8010000A
SCARD_E_SHARING_VIOLATION = 0x8010000B
SCARD_E_NO_SMARTCARD = 0x8010000C
SCARD_E_NOT_TRANSACTED = 0x80100016
SCARD_E_READER_UNAVAILABLE = 0x80100017
SCARD_E_NO_SERVICE = 0x8010001D
SCARD_E_SERVICE_STOPPED = 0x8010001E
SCARD_E_NO_READERS_AVAILABLE = 0x8010002E
SCARD_W_UNRESPONSIVE_CARD = 0x80100066
SCARD_W_UNPOWERED_CARD = 0x80100067
SCARD_W_RESET_CARD = 0x80100068
SCARD_W_REMOVED_CARD = 0x80100069


def pcsc_error(hresult: int, what: str) -> TransportError:
    """Map a PC/SC result code to the typed error a caller can act on."""
    code = hresult & 0xFFFFFFFF
    try:
        from smartcard.scard import SCardGetErrorMessage

        text = SCardGetErrorMessage(hresult)
    except Exception:  # pragma: no cover - message only
        text = ""
    message = f"{what}: {text or 'PC/SC error'} (0x{code:08X})"
    # NOT_TRANSACTED is what a transmit gets when the card leaves mid-exchange (seen with vpcd): the card's
    # state is unknown afterwards, so it is treated as a removal and everything cached is dropped.
    if code in (SCARD_W_REMOVED_CARD, SCARD_W_RESET_CARD, SCARD_W_UNPOWERED_CARD,
                SCARD_W_UNRESPONSIVE_CARD, SCARD_E_NOT_TRANSACTED):
        return CardRemovedError(message)
    if code == SCARD_E_NO_SMARTCARD:
        return NoCardError(message)
    if code in (SCARD_E_UNKNOWN_READER, SCARD_E_READER_UNAVAILABLE, SCARD_E_NO_READERS_AVAILABLE):
        return NoReaderError(message)
    if code in (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED):
        return TransportError(f"{message}; is pcscd running?")
    return TransportError(message)


class PcscTransport(Transport):
    """One shared connection to a card in a PC/SC reader (pyscard's low-level ``scard`` API)."""

    def __init__(self, reader: str, context: int | None = None):
        super().__init__()
        from smartcard import scard

        self._scard = scard
        self.reader = reader
        self._own_context = context is None
        if context is None:
            hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hresult != SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "cannot reach the PC/SC service")
        self._context = context
        hresult, self._card, self._protocol = scard.SCardConnect(
            context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        )
        if hresult != SCARD_S_SUCCESS:
            self._release_context()
            raise pcsc_error(hresult, f"cannot connect to the card in {reader!r}")
        self._closed = False
        hresult, _name, _state, _proto, atr = scard.SCardStatus(self._card)
        if hresult != SCARD_S_SUCCESS:
            self.close()
            raise pcsc_error(hresult, "cannot read the ATR")
        self.atr = bytes(atr)
        self.t0 = self._protocol == scard.SCARD_PROTOCOL_T0
        log.debug("connected to %s, protocol T=%d", reader, 0 if self.t0 else 1)

    def _release_context(self) -> None:
        if self._own_context and self._context is not None:
            self._scard.SCardReleaseContext(self._context)
            self._context = None

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"the connection to {self.reader!r} is closed")

    def _exchange(self, raw: bytes) -> bytes:
        self._check_open()
        hresult, answer = self._scard.SCardTransmit(self._card, self._protocol, list(raw))
        if hresult != SCARD_S_SUCCESS:
            raise pcsc_error(hresult, f"transmit to {self.reader!r} failed")
        if len(answer) < 2:
            # No status word at all: the card stopped answering. vpcd does this the moment the card
            # leaves, before pcscd's presence poll notices. Treat it as removal: the caller drops
            # everything cached and, if the card is in fact still there, simply opens it again.
            raise CardRemovedError(f"the card in {self.reader!r} stopped answering (removed?)")
        return bytes(answer)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._check_open()
            hresult = self._scard.SCardBeginTransaction(self._card)
            if hresult != SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "cannot lock the card")
            try:
                yield
            finally:
                self._scard.SCardEndTransaction(self._card, self._scard.SCARD_LEAVE_CARD)

    def reset(self) -> None:
        with self._lock:
            scard = self._scard
            hresult, self._protocol = scard.SCardReconnect(
                self._card, scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1, scard.SCARD_RESET_CARD,
            )
            if hresult != SCARD_S_SUCCESS:
                raise pcsc_error(hresult, "card reset failed")

    def close(self) -> None:
        if getattr(self, "_closed", True):
            self._release_context()
            return
        self._closed = True
        try:
            self._scard.SCardDisconnect(self._card, self._scard.SCARD_LEAVE_CARD)
        finally:
            self._release_context()
