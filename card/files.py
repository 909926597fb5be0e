"""ISO 7816-4 file access: SELECT by path, and READ BINARY of a whole file to its real size.

Real cards answer READ BINARY in short blocks (at most 0xB5 bytes on FINEID, F2) and give a file's
size in the FCP's tag ``81`` rather than ``80`` (F3), so a short block is the end of a file only when
nothing told its size. These functions know nothing of PKCS#15 or of which application is selected:
:class:`~card.token.Token` decides what to read and caches it.
"""

from __future__ import annotations

from collections.abc import Callable

from card.apdu import Command, Response, der_object_size, find_tlv, parse_tlv
from card.errors import MalformedResponseError

Transmit = Callable[[Command], Response]

MF = b"\x3f\x00"
MAX_FILE = 32767  # READ BINARY offsets are 15 bits
MAX_BLOCK = 256  # what one short READ BINARY may ask for; cards may answer less (FINEID: 0xB5)


def fcp_size(data: bytes) -> int | None:
    """File size from an FCP/FCI (tag 80, else 81), or None if the card does not say."""
    try:
        items = parse_tlv(data)
        template = find_tlv(items, 0x62) or find_tlv(items, 0x6F)
        inner = template.children() if template is not None and template.constructed else items
    except MalformedResponseError:
        return None
    for tag in (0x80, 0x81):
        item = find_tlv(inner, tag)
        if item is not None and 1 <= len(item.value) <= 3:
            return int.from_bytes(item.value, "big")
    return None


def select(transmit: Transmit, path: bytes, fcp: bool = True) -> int | None:
    """SELECT ``path`` (absolute from the MF, or relative to the current DF); with ``fcp`` the file's size
    from its FCP (None if the card does not say), else no FCP is asked for and None is returned."""
    rel = path[2:] if path.startswith(MF) else path
    if not rel:
        command = Command(0x00, 0xA4, 0x00, 0x0C, MF, name="SELECT MF")
        transmit(command).check(command.name)
        return None
    if fcp:
        command = Command(0x00, 0xA4, 0x08, 0x04, rel, le=0, name="SELECT FILE")
    else:
        command = Command(0x00, 0xA4, 0x08, 0x0C, rel, name="SELECT FILE")
    response = transmit(command).check(f"SELECT {path.hex().upper()}")
    return fcp_size(response.data) if fcp else None


def read_selected(transmit: Transmit, path: bytes, size: int | None, der: bool = False) -> bytes:
    """The whole of the selected file (``path`` names it in errors), read to its real size.

    The size is ``size`` (from the FCP), else (``der``) the DER length header of the first block.
    A READ BINARY may answer fewer bytes than asked: that is the end of the file only when no size is
    known. With ``der``, what follows the DER object (a file larger than the certificate it holds) is
    not read.
    """
    data = bytearray()
    while True:
        target = size if size is not None else MAX_FILE
        if der and (object_size := der_object_size(data)) is not None:
            target = min(target, object_size)
        if len(data) >= target:
            break
        want = min(MAX_BLOCK, target - len(data))
        offset = len(data)
        response = transmit(Command(0x00, 0xB0, offset >> 8, offset & 0xFF, le=want & 0xFF, name="READ BINARY"))
        if response.sw == 0x6B00 and offset and size is None:
            break  # offset past the end of a file whose size nobody told us
        response.check("READ BINARY", allow=(0x6282,))
        data += response.data
        sized = size is not None or (der and der_object_size(data) is not None)
        if response.sw == 0x6282 or not response.data or (not sized and len(response.data) < want):
            break
    if der:
        object_size = der_object_size(data)
        if object_size is None or len(data) < object_size:
            raise MalformedResponseError(f"file {path.hex()} does not hold a whole DER object "
                                         f"({len(data)} bytes read)")
        return bytes(data[:object_size])
    if size is not None and len(data) != size:
        raise MalformedResponseError(f"file {path.hex()} has {len(data)} bytes, FCP said {size}")
    return bytes(data)


__all__ = ["MAX_BLOCK", "MAX_FILE", "MF", "Transmit", "fcp_size", "read_selected", "select"]
