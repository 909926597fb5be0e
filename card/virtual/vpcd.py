"""Plug a virtual card (:class:`~card.virtual.cardside.CardSide`: the emulator, or a replayed recording of a real
card) into a real pcscd through vsmartcard's ``vpcd`` driver.

vpcd listens (port 35963 for its first slot); the card connects and answers framed messages: a 2-byte
big-endian length, then the payload. One-byte payloads are control messages (0 power off, 1 power on,
2 reset, 4 get ATR); anything longer is a C-APDU. Closing the socket is card removal, connecting is
insertion. ``TCP_QUICKACK`` is re-armed before every receive: vpcd sends length and payload as two
segments, and without it every APDU waits ~40 ms for a delayed ACK (F15).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import TYPE_CHECKING

from card.virtual import VPCD_PORT

if TYPE_CHECKING:
    from card.virtual.cardside import CardSide

log = logging.getLogger(__name__)

DEFAULT_PORT = VPCD_PORT
_POLL = 0.2  # seconds between checks of the stop and presence flags


class _Closed(Exception):
    pass


def _quickack(sock: socket.socket) -> None:
    if hasattr(socket, "TCP_QUICKACK"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


def _recv_exact(sock: socket.socket, size: int, stop: threading.Event, card: CardSide) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        if stop.is_set() or not card.present:
            raise _Closed
        _quickack(sock)
        try:
            chunk = sock.recv(size - len(buf))
        except TimeoutError:
            continue
        if not chunk:
            raise _Closed
        buf += chunk
    return bytes(buf)


def _serve(sock: socket.socket, card: CardSide, stop: threading.Event) -> None:
    while True:
        length = int.from_bytes(_recv_exact(sock, 2, stop, card), "big")
        payload = _recv_exact(sock, length, stop, card) if length else b""
        if len(payload) == 1:
            control = payload[0]
            if control in (0, 1, 2):
                card.power_on()  # power off / on / reset all end in a fresh, logged-out card
            elif control == 4:
                sock.sendall(len(card.atr).to_bytes(2, "big") + card.atr)
            continue
        answer = card.process(payload)
        sock.sendall(len(answer).to_bytes(2, "big") + answer)  # one write: length and payload


def run(
    card: CardSide,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    stop: threading.Event | None = None,
    reconnect: bool = True,
) -> None:
    """Serve ``card`` to vpcd until ``stop`` is set. While ``card.present`` is False the socket is
    closed (the card is out of the reader); it reconnects when the card is inserted again, and after
    pcscd restarts when ``reconnect`` is true."""
    stop = stop or threading.Event()
    announced = False
    while not stop.is_set():
        if not card.present:
            stop.wait(_POLL)
            continue
        try:
            sock = socket.create_connection((host, port), timeout=2)
        except OSError as exc:
            if not announced:
                log.warning("cannot reach vpcd at %s:%d (%s); is pcscd running with vsmartcard-vpcd? "
                            "retrying", host, port, exc)
                announced = True
            if not reconnect:
                raise
            stop.wait(0.5)
            continue
        announced = False
        log.info("virtual card %s inserted into vpcd %s:%d", card.name, host, port)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(_POLL)
            _serve(sock, card, stop)
        except (_Closed, OSError) as exc:
            if isinstance(exc, OSError):
                log.info("vpcd connection lost: %s", exc)
        finally:
            sock.close()
            log.info("virtual card %s removed from vpcd %s:%d", card.name, host, port)
        if not reconnect and card.present:
            return
        stop.wait(0.1 if card.present else 0)


def listening(port: int = DEFAULT_PORT) -> bool:
    """Whether something (pcscd's vpcd driver) listens on TCP ``port`` of this machine.

    Read from the kernel's socket tables rather than by connecting: vpcd would take a probe connection
    for a card being plugged in."""
    needle = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                for line in fh.readlines()[1:]:
                    parts = line.split()
                    if len(parts) > 3 and parts[1].endswith(needle) and parts[3] == "0A":  # 0A: LISTEN
                        return True
        except OSError:
            continue
    return False
