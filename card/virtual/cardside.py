"""The card's side of the wire, shared by the virtual FINEID card and the recorded-card replay.

Both answer raw C-APDUs as a T=0 card does (all contact FINEID ATRs offer only T=0): data for a
command that carries data waits behind ``61xx`` for GET RESPONSE, and a wrong Le gets ``6Cxx``. Both
count every APDU from the card's side, honour presence (removal, insertion) and take injected faults, so
tests and vpcd treat them alike.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from card.apdu import Command
from card.errors import MalformedResponseError
from card.transport import ApduStats

INS_NAMES = {
    0xA4: "SELECT", 0xB0: "READ BINARY", 0xC0: "GET RESPONSE", 0xCA: "GET DATA", 0xCB: "GET DATA",
    0x20: "VERIFY", 0x24: "CHANGE REFERENCE DATA", 0x2C: "RESET RETRY COUNTER",
    0x22: "MSE", 0x2A: "PSO", 0x84: "GET CHALLENGE",
}


class Raw(bytes):
    """A complete answer (data and SW) that bypasses the T=0 shaping."""


class Sw(Exception):
    """Abort the command with this status word."""

    def __init__(self, sw: int):
        self.sw = sw


@dataclass
class Faults:
    """Misbehaviour on demand, for tests: a delay per APDU and forced status words per INS."""

    delay: float = 0.0
    forced: dict[int, list[int]] = field(default_factory=dict)

    def force(self, ins: int, sw: int, times: int = 1) -> None:
        self.forced.setdefault(ins, []).extend([sw] * times)

    def take(self, ins: int) -> int | None:
        queue = self.forced.get(ins)
        if queue:
            return queue.pop(0)
        return None


class CardSide:
    """Base class: subclasses implement :meth:`_handle` (one command, GET RESPONSE already handled)
    and :meth:`_reset` (what a power cycle forgets), and set ``atr`` and ``name``."""

    atr: bytes = b""
    name: str = "card"

    def __init__(self) -> None:
        self.stats = ApduStats()
        self.faults = Faults()
        self.present = True
        self._lock = threading.RLock()
        self._pending = b""

    # -- to implement -------------------------------------------------------------------------
    def _handle(self, c: Command) -> bytes | None:
        raise NotImplementedError

    def _reset(self) -> None:
        """Forget session state (verified PINs, selection, security environment)."""

    # -- power and presence ------------------------------------------------------------------
    def power_on(self) -> None:
        """Cold/warm reset: nothing verified, nothing selected, no pending response."""
        with self._lock:
            self._pending = b""
            self._reset()

    def remove(self) -> None:
        self.present = False

    def insert(self) -> None:
        self.present = True
        self.power_on()

    # -- APDU processing ---------------------------------------------------------------------
    def process(self, raw: bytes) -> bytes:
        """Answer one C-APDU with an R-APDU (data + SW). Never raises for bad input."""
        with self._lock:
            if self.faults.delay:
                time.sleep(self.faults.delay)
            ins = raw[1] if len(raw) > 1 else -1
            try:
                command = Command.parse(raw)
            except ValueError:
                answer = b"\x67\x00"
            else:
                forced = self.faults.take(command.ins)
                answer = forced.to_bytes(2, "big") if forced is not None else self._dispatch(command)
            # From the card's side: it sends the answer and receives the command.
            name = INS_NAMES.get(ins, f"INS {ins:02X}" if ins >= 0 else "?")
            if ins == 0x20 and len(raw) <= 5:
                name = "VERIFY (status)"  # the empty VERIFY probe, counted apart from real PIN checks
            self.stats.record(name, sent=len(answer), received=len(raw))
            return answer

    def _dispatch(self, c: Command) -> bytes:
        pending, self._pending = self._pending, b""
        if c.ins == 0xC0:
            return self._get_response(c, pending)
        try:
            data = self._handle(c)
        except Sw as sw:
            return sw.sw.to_bytes(2, "big")
        except MalformedResponseError:
            return b"\x6a\x80"
        if isinstance(data, Raw):
            return bytes(data)
        if not data:
            return b"\x90\x00"
        return self._t0_answer(c, data)

    def _t0_answer(self, c: Command, data: bytes) -> bytes:
        """T=0: data to a case-3/4 command waits for GET RESPONSE; a wrong Le gets 6Cxx."""
        if c.data or c.le is None:
            self._pending = data
            return bytes((0x61, len(data) if len(data) < 256 else 0))
        le = c.le or 256
        if le < len(data) and le == 256:
            # More than one short answer holds (an RSA-3072 signature): the first 256 bytes now, the
            # rest behind 61xx, as the MultiApp 4.2 trace in ReFineID shows (256 bytes + 6180, then 80).
            self._pending = data[256:]
            rest = len(self._pending)
            return data[:256] + bytes((0x61, rest if rest < 256 else 0))
        if le != len(data):
            return bytes((0x6C, len(data) & 0xFF))
        return data + b"\x90\x00"

    def _get_response(self, c: Command, pending: bytes) -> bytes:
        if not pending:
            return b"\x69\x85"
        le = c.le or 256
        if le < len(pending):
            self._pending = pending[le:]
            rest = len(self._pending)
            return pending[:le] + bytes((0x61, rest if rest < 256 else 0))
        if le > len(pending):
            self._pending = pending
            return bytes((0x6C, len(pending)))
        return pending + b"\x90\x00"
