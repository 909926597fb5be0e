"""ISO 7816-4 APDUs, BER-TLV and status-word mapping; random bytes must never crash the parsers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from card.apdu import Command, Response, encode_tlv, parse_tlv, split_der_objects
from card.errors import (
    CardError,
    FileNotFoundOnCardError,
    MalformedResponseError,
    PinBlockedError,
    SecurityStatusNotSatisfied,
    StatusWordError,
    WrongPinError,
    error_for_sw,
)


def test_command_cases_encode() -> None:
    assert Command(0, 0x20, 0, 0x11).encode() == bytes.fromhex("00200011")  # case 1
    assert Command(0, 0xB0, 0, 0, le=0).encode() == bytes.fromhex("00B0000000")  # case 2, Le=256
    assert Command(0, 0x22, 0x41, 0xB6, b"\x80\x01\x54").encode() == bytes.fromhex("002241B603800154")
    case4 = Command(0, 0xA4, 8, 4, b"\x43\x31", le=0)
    assert case4.encode() == bytes.fromhex("00A40804024331" "00")
    # On T=0 a case-4 command travels without Le; the card answers 61xx.
    assert case4.encode(t0=True) == bytes.fromhex("00A4080402" "4331")


def test_command_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        Command(0x100, 0, 0, 0)
    with pytest.raises(ValueError):
        Command(0, 0, 0, 0, b"x" * 256)
    with pytest.raises(ValueError):
        Command(0, 0, 0, 0, le=257)


@pytest.mark.parametrize("hexapdu", ["00200011", "00B0000010", "002241B603800154", "00A40804024331" "00"])
def test_command_parse_roundtrip(hexapdu: str) -> None:
    raw = bytes.fromhex(hexapdu)
    assert Command.parse(raw).encode() == raw


def test_command_parse_rejects_bad_lc() -> None:
    with pytest.raises(ValueError):
        Command.parse(bytes.fromhex("0020001105313233"))  # Lc=5 but 3 bytes


def test_response() -> None:
    r = Response.from_bytes(bytes.fromhex("01029000"))
    assert r.ok and r.data == b"\x01\x02" and r.sw == 0x9000
    with pytest.raises(MalformedResponseError):
        Response.from_bytes(b"\x90")
    with pytest.raises(WrongPinError) as info:
        Response.from_bytes(bytes.fromhex("63C2")).check("VERIFY")
    assert info.value.tries_left == 2 and "VERIFY" in str(info.value)
    assert Response.from_bytes(bytes.fromhex("6282")).check(allow=(0x6282,)).sw == 0x6282


@pytest.mark.parametrize(
    ("sw", "cls"),
    [
        (0x63C0, PinBlockedError),
        (0x6983, PinBlockedError),
        (0x6982, SecurityStatusNotSatisfied),
        (0x6A82, FileNotFoundOnCardError),
        (0x6F00, StatusWordError),
    ],
)
def test_status_word_mapping(sw: int, cls: type) -> None:
    err = error_for_sw(sw)
    assert type(err) is cls
    assert err.sw == sw


def test_tlv_parse_nested_and_multibyte() -> None:
    # The FINEID PIN-info answer recorded in libelectronic-id's traces (docs/decisions.md F6).
    data = bytes.fromhex(
        "A023830111" "8C04F0000000" "9C04F0000000" "DF210405FFA503" "DF2702FFFF" "DF28010C" "DF2F0101"
    )
    (template,) = parse_tlv(data)
    assert template.tag == 0xA0 and template.constructed
    assert template.find(0xDF21).value[0] == 5
    assert template.find(0xDF2F).value == b"\x01"
    assert template.find(0x83).value == b"\x11"


def test_tlv_long_length_and_padding() -> None:
    value = bytes(300)
    raw = b"\x00\x00" + encode_tlv(0x04, value) + b"\xff"
    (item,) = parse_tlv(raw)
    assert item.value == value
    assert split_der_objects(raw) == [encode_tlv(0x04, value)]


def test_tlv_truncated() -> None:
    with pytest.raises(MalformedResponseError):
        parse_tlv(bytes.fromhex("0405AABB"))
    with pytest.raises(MalformedResponseError):
        parse_tlv(bytes.fromhex("1F"))


@given(st.binary(max_size=300))
def test_random_bytes_never_crash_tlv(data: bytes) -> None:
    try:
        items = parse_tlv(data)
    except MalformedResponseError:
        return
    for item in items:
        if item.constructed:
            try:
                item.children()
            except MalformedResponseError:
                pass


@given(st.binary(max_size=40))
def test_random_responses_give_typed_errors(data: bytes) -> None:
    try:
        Response.from_bytes(data).check("X")
    except CardError:
        pass


def test_der_object_size_reads_the_header_only() -> None:
    from card.apdu import der_object_size

    assert der_object_size(bytes.fromhex("3082043f30")) == 4 + 0x43F  # a certificate's first bytes
    assert der_object_size(bytes.fromhex("3003010100")) == 5
    assert der_object_size(bytes.fromhex("3082")) is None  # the header is not whole yet
    assert der_object_size(bytes.fromhex("0000")) is None  # padding: no object starts here
    assert der_object_size(b"") is None
