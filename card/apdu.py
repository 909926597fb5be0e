"""ISO 7816-4 command/response APDUs and BER-TLV, the vocabulary every other card module speaks.

Parsing here is defensive: card responses are untrusted input, so every malformed byte string raises
:class:`~card.errors.MalformedResponseError` instead of IndexError or a silent truncation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from card.errors import MalformedResponseError, error_for_sw

SW_OK = 0x9000
SW_EOF_BEFORE_LE = 0x6282


@dataclass(frozen=True, slots=True)
class Command:
    """A short command APDU. ``le`` is None for "no response data expected"; 0 encodes as Le=00 (256)."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for field_name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, field_name)
            if not 0 <= value <= 0xFF:
                raise ValueError(f"{field_name} out of range: {value}")
        if len(self.data) > 255:
            raise ValueError("short APDUs carry at most 255 data bytes")
        if self.le is not None and not 0 <= self.le <= 256:
            raise ValueError(f"Le out of range: {self.le}")

    def encode(self, t0: bool = False) -> bytes:
        """Encode as bytes. On T=0 a case-4 command drops its Le: the card answers 61xx instead."""
        head = bytes((self.cla, self.ins, self.p1, self.p2))
        le = None if self.le is None else self.le & 0xFF
        if self.data:
            body = bytes((len(self.data),)) + self.data
            if le is not None and not t0:
                body += bytes((le,))
            return head + body
        if le is not None:
            return head + bytes((le,))
        return head

    def with_le(self, le: int) -> Command:
        return Command(self.cla, self.ins, self.p1, self.p2, self.data, le, self.name)

    @property
    def label(self) -> str:
        return self.name or f"INS {self.ins:02X}"

    @classmethod
    def parse(cls, raw: bytes) -> Command:
        """Parse a short C-APDU (used by the virtual card). Raises ValueError on bad framing."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than 4 bytes")
        cla, ins, p1, p2 = raw[:4]
        rest = raw[4:]
        if not rest:
            return cls(cla, ins, p1, p2)
        if len(rest) == 1:
            return cls(cla, ins, p1, p2, b"", rest[0])
        if rest[0] == 0:
            raise ValueError("extended-length APDUs are not supported")
        lc = rest[0]
        if len(rest) == 1 + lc:
            return cls(cla, ins, p1, p2, bytes(rest[1:]))
        if len(rest) == 2 + lc:
            return cls(cla, ins, p1, p2, bytes(rest[1 : 1 + lc]), rest[1 + lc])
        raise ValueError("Lc does not match the APDU length")


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: data plus the two status bytes."""

    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == SW_OK

    @classmethod
    def from_bytes(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise MalformedResponseError(f"response of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    def to_bytes(self) -> bytes:
        return self.data + bytes((self.sw1, self.sw2))

    def check(self, command: str | None = None, allow: tuple[int, ...] = ()) -> Response:
        """Return self on 9000 (or an allowed SW), otherwise raise the typed error."""
        if self.ok or self.sw in allow:
            return self
        raise error_for_sw(self.sw, command)


# --- BER-TLV ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tlv:
    """One BER-TLV element. ``tag`` is the tag bytes as an int (e.g. 0x62, 0xDF21, 0x5F2D)."""

    tag: int
    value: bytes
    constructed: bool

    def children(self) -> list[Tlv]:
        if not self.constructed:
            raise MalformedResponseError(f"tag {self.tag:X} is primitive")
        return parse_tlv(self.value)

    def find(self, tag: int) -> Tlv | None:
        return find_tlv(self.children(), tag)


def _read_tag(data: bytes, pos: int) -> tuple[int, bool, int]:
    if pos >= len(data):
        raise MalformedResponseError("TLV: truncated tag")
    first = data[pos]
    constructed = bool(first & 0x20)
    tag = first
    pos += 1
    if first & 0x1F == 0x1F:
        for _ in range(3):
            if pos >= len(data):
                raise MalformedResponseError("TLV: truncated multi-byte tag")
            b = data[pos]
            tag = (tag << 8) | b
            pos += 1
            if not b & 0x80:
                break
        else:
            raise MalformedResponseError("TLV: tag longer than 4 bytes")
    return tag, constructed, pos


def _read_length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise MalformedResponseError("TLV: truncated length")
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    count = first & 0x7F
    if count == 0 or count > 3:
        raise MalformedResponseError(f"TLV: unsupported length form 0x{first:02X}")
    if pos + count > len(data):
        raise MalformedResponseError("TLV: truncated long length")
    return int.from_bytes(data[pos : pos + count], "big"), pos + count


def iter_tlv(data: bytes, skip_padding: bool = True) -> Iterator[Tlv]:
    """Yield the TLVs in ``data``. ``00``/``FF`` bytes between objects are padding (files are often padded)."""
    pos = 0
    while pos < len(data):
        if skip_padding and data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        tag, constructed, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if pos + length > len(data):
            raise MalformedResponseError(f"TLV: tag {tag:X} claims {length} bytes, {len(data) - pos} left")
        yield Tlv(tag, bytes(data[pos : pos + length]), constructed)
        pos += length


def parse_tlv(data: bytes) -> list[Tlv]:
    return list(iter_tlv(data))


def find_tlv(items: list[Tlv], tag: int) -> Tlv | None:
    for item in items:
        if item.tag == tag:
            return item
    return None


def split_der_objects(data: bytes) -> list[bytes]:
    """Split a PKCS#15 directory file into the DER encodings of its top-level objects."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        start = pos
        _, _, pos = _read_tag(data, pos)
        length, pos = _read_length(data, pos)
        if pos + length > len(data):
            raise MalformedResponseError("DER object runs past the end of the file")
        pos += length
        out.append(bytes(data[start:pos]))
    return out


def der_object_size(data: bytes | bytearray) -> int | None:
    """Total size of the DER object ``data`` starts with, from its header; None until the header is whole
    (or when ``data`` starts with padding or an unusable length), so a reader knows when to stop."""
    if not data or data[0] in (0x00, 0xFF):
        return None
    try:
        _, _, pos = _read_tag(data, 0)
        length, pos = _read_length(data, pos)
    except MalformedResponseError:
        return None
    return pos + length


def encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(raw),)) + raw


def encode_tlv(tag: int, value: bytes) -> bytes:
    """Encode one TLV; ``tag`` may be a multi-byte tag given as an int (0xDF21)."""
    tag_bytes = tag.to_bytes(max(1, (tag.bit_length() + 7) // 8), "big")
    return tag_bytes + encode_length(len(value)) + value
