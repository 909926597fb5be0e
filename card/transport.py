"""The transport base: one set of T=0 rules for every way of reaching a card (PC/SC, in-process).

Both transports return the same :class:`~card.apdu.Response` objects and raise the same typed errors, so
the token code above cannot tell a real reader from the emulator. The T=0 rules (``61xx`` means GET
RESPONSE and concatenate, ``6Cxx`` means resend with the right Le) live in :meth:`Transport.transmit`,
once, for both.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from card.apdu import Command, Response
from card.errors import (
    MalformedResponseError,
)

log = logging.getLogger(__name__)

# A card that keeps answering 61xx forever must not hang us: 64 KiB is far above any file we read.
MAX_CHAINED_RESPONSE = 65536


@dataclass
class ApduStats:
    """What crossed the wire: the numbers benchmarks and the closing notes report."""

    apdus: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    by_command: Counter[str] = field(default_factory=Counter)

    def record(self, name: str, sent: int, received: int) -> None:
        self.apdus += 1
        self.bytes_sent += sent
        self.bytes_received += received
        self.by_command[name] += 1

    def reset(self) -> None:
        self.apdus = self.bytes_sent = self.bytes_received = 0
        self.by_command.clear()

    def snapshot(self) -> dict[str, object]:
        return {
            "apdus": self.apdus,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "by_command": dict(self.by_command),
        }


def atr_is_t0_only(atr: bytes) -> bool:
    """True when the ATR offers no TD1, i.e. T=0 is the only protocol (ISO 7816-3)."""
    return len(atr) >= 2 and not atr[1] & 0x80


class Transport:
    """Base class: subclasses supply :meth:`_exchange` (raw bytes in, raw bytes out)."""

    atr: bytes = b""
    t0: bool = False
    reader: str = ""
    # False for a transport whose exchanges never wait on I/O or a device (the in-process virtual card):
    # callers may then run a card operation on their event loop instead of a worker thread.
    blocking: bool = True

    def __init__(self) -> None:
        self.stats = ApduStats()
        self._lock = threading.RLock()

    # -- to implement -----------------------------------------------------------------------
    def _exchange(self, raw: bytes) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        """Release the card; idempotent."""

    def reset(self) -> None:
        """Warm-reset the card, which drops every verified PIN and the selected application."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the card exclusively for a multi-APDU sequence (SCardBeginTransaction on PC/SC)."""
        with self._lock:
            yield

    # -- shared logic -------------------------------------------------------------------------
    def _send(self, command: Command, raw: bytes) -> Response:
        answer = self._exchange(raw)
        self.stats.record(command.label, len(raw), len(answer))
        return Response.from_bytes(answer)

    def transmit(self, command: Command) -> Response:
        """Send one command and apply the T=0 rules; the result has the full data and the final SW."""
        with self._lock:
            response = self._send(command, command.encode(t0=self.t0))
            if response.sw1 == 0x6C:
                # Wrong Le: the card tells the right one; resend the same command once.
                retry = command.with_le(response.sw2 or 256)
                response = self._send(retry, retry.encode(t0=False))
            data = bytearray(response.data)
            while response.sw1 == 0x61:
                if len(data) > MAX_CHAINED_RESPONSE:
                    raise MalformedResponseError("card keeps answering 61xx past 64 KiB")
                get = Command(command.cla & 0x03, 0xC0, 0, 0, le=response.sw2 or 256, name="GET RESPONSE")
                response = self._send(get, get.encode())
                if response.sw1 == 0x6C:
                    get = get.with_le(response.sw2 or 256)
                    response = self._send(get, get.encode())
                data += response.data
            return Response(bytes(data), response.sw1, response.sw2)
