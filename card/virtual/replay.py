"""A real card, replayed from a recording of its APDUs.

Our emulator only produces what our own code expects; a recording of a real card does not. This module
turns recorded APDU traces (a JSON file of command/response pairs, e.g. the FINEID traces Web eID's
libelectronic-id keeps as test data) into a card that answers by what the real card answered:

* the files it selected, with the FCP it gave and the bytes it returned, served in blocks no larger than
  the largest block it ever sent (a real card's short READ BINARY answers stay short);
* the AIDs it accepted, the GET DATA answers, the PIN blocks it accepted (any other block is refused
  without a PIN state change, since the recording cannot say what the card would do);
* the security environments (MSE data) it accepted, and for each (environment, hash) the signature it
  returned, which needs the PIN that preceded it in the recording.

It answers as a T=0 card (``61xx`` for data to a command with data), like the contact FINEID cards and
our emulator, so it runs in-process and through pcscd+vpcd alike. What the recording never showed gets
the card's usual "not found" (``6A82`` for files, ``6A88`` for data objects) or ``6F00``, and is listed
in :attr:`RecordedCard.unrecorded`, so a test can say exactly which of its APDUs the recording could not
vouch for.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from card.apdu import Command
from card.virtual.cardside import CardSide, Raw, Sw

log = logging.getLogger(__name__)


@dataclass
class _File:
    fcp: bytes
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Recording:
    """What a recording shows of one card (built from one or more scripts of the same card)."""

    name: str
    atr: bytes
    aids: set[bytes] = field(default_factory=set)
    files: dict[bytes, _File] = field(default_factory=dict)  # path as selected (P1=08, without 3F00)
    max_block: int = 0
    get_data: dict[bytes, bytes] = field(default_factory=dict)  # command data -> answer data
    pins: dict[int, set[bytes]] = field(default_factory=dict)  # reference -> PIN blocks accepted
    environments: dict[bytes, int] = field(default_factory=dict)  # MSE data -> the PIN it needed
    signatures: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict)  # (MSE data, hash) -> sig

    @classmethod
    def load(cls, path: Path | str) -> Recording:
        """Read a recording file (``{"name", "atr", "scripts": {name: [{command, response}]}}``)."""
        try:
            doc = json.loads(Path(path).read_text())
            recording = cls(str(doc.get("name") or Path(path).stem), bytes.fromhex(doc["atr"]))
            for script in doc["scripts"].values():
                recording._learn([(bytes.fromhex(s["command"]), bytes.fromhex(s["response"])) for s in script])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a usable card recording ({exc})") from exc
        return recording

    def _learn(self, steps: list[tuple[bytes, bytes]]) -> None:
        current: _File | None = None
        verified: int | None = None
        environment: bytes | None = None
        digest: bytes | None = None
        for raw, answer in steps:
            command, data, sw = Command.parse(raw), answer[:-2], int.from_bytes(answer[-2:], "big")
            if sw != 0x9000:
                continue  # a refusal teaches nothing we would replay
            ins = command.ins
            if ins == 0xA4 and command.p1 == 0x04:
                self.aids.add(command.data)
            elif ins == 0xA4 and command.p1 == 0x08:
                current = self.files.setdefault(command.data.removeprefix(b"\x3f\x00"), _File(data))
            elif ins == 0xB0 and current is not None:
                offset = (command.p1 << 8) | command.p2
                if offset > len(current.data):
                    raise ValueError(f"READ BINARY at {offset} leaves a gap in the recorded file")
                current.data[offset:offset + len(data)] = data
                self.max_block = max(self.max_block, len(data))
            elif ins == 0xCB:
                self.get_data[command.data] = data
            elif ins == 0x20 and command.data:
                self.pins.setdefault(command.p2, set()).add(command.data)
                verified = command.p2
            elif ins == 0x22:
                environment = command.data
                if verified is not None:
                    self.environments[environment] = verified
            elif ins == 0x2A and (command.p1, command.p2) == (0x90, 0xA0):
                digest = command.data
            elif ins == 0x2A and (command.p1, command.p2) == (0x9E, 0x9A):
                if environment is not None and digest is not None:
                    self.signatures[(environment, digest)] = data


class RecordedCard(CardSide):
    """A :class:`Recording` answering APDUs (see the module docstring for what it can and cannot vouch for)."""

    def __init__(self, recording: Recording):
        super().__init__()
        self.recording = recording
        self.name = f"recorded {recording.name}"
        self.atr = recording.atr
        self.unrecorded: list[str] = []
        self.power_on()

    @classmethod
    def load(cls, path: Path | str) -> RecordedCard:
        return cls(Recording.load(path))

    def _reset(self) -> None:
        self._file: _File | None = None
        self._verified: set[int] = set()
        self._environment: bytes | None = None
        self._digest: bytes | None = None

    def _unrecorded(self, c: Command, sw: int) -> Sw:
        self.unrecorded.append(f"{c.encode().hex(' ').upper()} -> {sw:04X}")
        log.debug("%s: no recorded answer to %s", self.name, self.unrecorded[-1])
        return Sw(sw)

    def _handle(self, c: Command) -> bytes | None:
        rec = self.recording
        if c.ins == 0xA4:
            return self._select(c)
        if c.ins == 0xB0:
            if self._file is None:
                raise self._unrecorded(c, 0x6986)
            offset = (c.p1 << 8) | c.p2
            data = self._file.data
            if offset > len(data):
                raise Sw(0x6B00)
            if offset == len(data):
                return Raw(b"\x62\x82")
            block = min(c.le or 256, rec.max_block or 256)
            return Raw(bytes(data[offset:offset + block]) + b"\x90\x00")
        if c.ins == 0xCB:
            answer = rec.get_data.get(c.data)
            if answer is None:
                raise self._unrecorded(c, 0x6A88)
            return answer
        if c.ins == 0x20:
            if c.data and c.data in rec.pins.get(c.p2, set()):
                self._verified.add(c.p2)
                return None
            raise self._unrecorded(c, 0x6F00)
        if c.ins == 0x22:
            if c.data not in rec.environments:
                raise self._unrecorded(c, 0x6A80)
            self._environment, self._digest = c.data, None
            return None
        if c.ins == 0x2A and (c.p1, c.p2) == (0x90, 0xA0):
            if self._environment is None:
                raise Sw(0x6985)
            self._digest = c.data
            return None
        if c.ins == 0x2A and (c.p1, c.p2) == (0x9E, 0x9A):
            return self._sign(c)
        raise self._unrecorded(c, 0x6D00)

    def _select(self, c: Command) -> bytes | None:
        if c.p1 == 0x04:
            if c.data not in self.recording.aids:
                raise self._unrecorded(c, 0x6A82)
            self._verified.clear()  # a citizen card logs out when its application is selected again
            self._file = None
            return None
        if c.p1 == 0x00 and c.data in (b"", b"\x3f\x00"):
            self._file = None
            return None
        if c.p1 != 0x08:
            raise self._unrecorded(c, 0x6A82)
        found = self.recording.files.get(c.data.removeprefix(b"\x3f\x00"))
        if found is None:
            raise self._unrecorded(c, 0x6A82)
        self._file = found
        return found.fcp if c.p2 == 0x04 else None

    def _sign(self, c: Command) -> bytes:
        if self._environment is None or self._digest is None:
            raise Sw(0x6985)
        needed = self.recording.environments[self._environment]
        if needed not in self._verified:
            raise Sw(0x6982)
        signature = self.recording.signatures.get((self._environment, self._digest))
        if signature is None:
            raise self._unrecorded(c, 0x6F00)
        if c.le is not None and (c.le or 256) != min(len(signature), 256):
            raise Sw(0x6C00 | (len(signature) & 0xFF))
        self._digest = None
        return signature

