"""The virtual card at the APDU level: the byte-exact FINEID behaviour of docs/decisions.md F2–F7 and F11–F12
(selection variants, T=0 answers, PIN template, signing sequence) and the probes other middleware sends."""

from __future__ import annotations

import hashlib

import pytest

from card.pkcs15 import PKCS15_AID
from card.virtual import VirtualCard


def apdu(card: VirtualCard, text: str) -> tuple[bytes, int]:
    answer = card.process(bytes.fromhex(text.replace(" ", "")))
    return answer[:-2], int.from_bytes(answer[-2:], "big")


def select_app(card: VirtualCard) -> None:
    assert apdu(card, "00A4040C0C" + PKCS15_AID.hex()) == (b"", 0x9000)


@pytest.fixture
def v4(state_dir) -> VirtualCard:
    return VirtualCard("fineid-v4", state_dir)


def test_atr_and_application(v4: VirtualCard) -> None:
    assert v4.atr.hex().upper() == "3B7F96000080" "31B865B085050011122460829000"
    # Other middleware probes foreign AIDs and SetCOS's GET DATA: none may look like success.
    assert apdu(v4, "00A4040006A00000000101")[1] == 0x6A82  # MUSCLE
    assert apdu(v4, "00A4040C06" + b"E.SIGN".hex())[1] == 0x6A82  # an organisation card's DF name
    assert apdu(v4, "00CADF3005")[1] != 0x9000
    select_app(v4)


def test_select_by_path_t0_and_fcp(v4: VirtualCard) -> None:
    select_app(v4)
    data, sw = apdu(v4, "00A40804024331")  # T=0: case 4 without Le
    assert data == b"" and sw >> 8 == 0x61
    fcp, sw = apdu(v4, f"00C00000{sw & 0xFF:02X}")
    assert sw == 0x9000 and fcp[0] == 0x62
    size = len(v4.identity.auth.cert.der)
    # As real FINEID cards answer: the size (= DER length) in tag 81 and nothing else.
    assert fcp == bytes.fromhex("62048102") + size.to_bytes(2, "big")
    # The same file through the path from the MF, and through the application DF by FID.
    assert apdu(v4, "00A4080C0450154331")[1] == 0x9000
    assert apdu(v4, "00A4000C023F00")[1] == 0x9000
    assert apdu(v4, "00A4000C025015")[1] == 0x9000
    assert apdu(v4, "00A4020C024331")[1] == 0x9000
    assert apdu(v4, "00A4080C02FFFF")[1] == 0x6A82


def test_read_binary_le_and_eof(v4: VirtualCard) -> None:
    select_app(v4)
    apdu(v4, "00A4080C025032")
    first, sw = apdu(v4, "00B0000004")
    assert sw == 0x9000 and len(first) == 4 and first[0] == 0x30
    whole, sw = apdu(v4, "00B0000000")  # Le=00 means 256: the short file ends first
    # As real cards do: 9000 even when the answer is short of Le (no 6282 at a short read).
    assert sw == 0x9000 and whole.startswith(first)
    assert len(whole) == len(v4.app.children[bytes.fromhex("5032")].data) < 0xB5
    assert apdu(v4, f"00B0{len(whole):04X}10") == (b"", 0x6282)  # at EOF: no data, 6282
    assert apdu(v4, f"00B0{len(whole) + 1:04X}10")[1] == 0x6B00
    # A longer file (a certificate) comes in blocks of at most 0xB5 bytes, whatever Le asks for.
    apdu(v4, "00A4080C024331")
    size = len(v4.identity.auth.cert.der)
    block, sw = apdu(v4, "00B0000000")
    assert sw == 0x9000 and len(block) == 0xB5 and size > 0xB5
    assert block == v4.identity.auth.cert.der[:0xB5]


def test_get_response_wrong_le(v4: VirtualCard) -> None:
    select_app(v4)
    _, sw = apdu(v4, "00CB00FF05A003830111")
    assert sw >> 8 == 0x61
    length = sw & 0xFF
    assert apdu(v4, f"00C00000{length + 1:02X}")[1] == 0x6C00 | length
    part, sw = apdu(v4, "00C0000004")
    assert len(part) == 4 and sw == 0x6100 | (length - 4)
    rest, sw = apdu(v4, f"00C00000{length - 4:02X}")
    template = part + rest
    assert sw == 0x9000 and template[:2] == bytes((0xA0, length - 2))
    assert bytes.fromhex("DF210405FFA503") in template and bytes.fromhex("DF2F0101") in template


def test_pin_rules(v4: VirtualCard) -> None:
    assert apdu(v4, "0020008200")[1] != 0x9000
    assert apdu(v4, "00200011")[1] == 0x6A88  # PINs live in the application: select it first
    select_app(v4)
    assert apdu(v4, "00200011")[1] == 0x63C5
    assert apdu(v4, "00200011" "04" + b"1234".hex())[1] == 0x6700  # not padded to 12: no try spent
    assert apdu(v4, "00200011")[1] == 0x63C5
    assert apdu(v4, "00200011" "0C" + b"1234".hex() + "FF" * 8)[1] == 0x63C4  # wrong padding is a wrong PIN
    assert apdu(v4, "00200011" "0C" + b"1234".hex() + "00" * 8)[1] == 0x9000
    assert apdu(v4, "00200011")[1] == 0x9000
    select_app(v4)  # re-selecting the application logs out
    assert apdu(v4, "00200011")[1] == 0x63C5


def test_signing_sequence_and_pin2_consent(v4: VirtualCard) -> None:
    select_app(v4)
    digest = hashlib.sha384(b"m").digest()
    assert apdu(v4, "002241B606800154840102")[1] == 0x9000
    assert apdu(v4, "002241B606800142840102")[1] == 0x6A80  # RSA algorithm on an EC key
    assert apdu(v4, "002241B606800154840109")[1] == 0x6A88  # no such key
    assert apdu(v4, "002241B606800154840102")[1] == 0x9000
    assert apdu(v4, "002A90A032" "9030" + digest.hex())[1] == 0x9000
    assert apdu(v4, "002A9E9A60")[1] == 0x6982  # PIN2 not verified
    assert apdu(v4, "00200082" "0C" + b"123456".hex() + "00" * 6)[1] == 0x9000
    assert apdu(v4, "002A9E9A00")[1] == 0x6C60  # Le=00 for 96 bytes: told the right Le
    assert apdu(v4, "002A9E9A" "02" "0102" "60")[1] == 0x6A80  # inline digest: not on a citizen card
    signature, sw = apdu(v4, "002A9E9A60")  # the hash survived the wrong-Le round
    assert sw == 0x9000 and len(signature) == 96
    assert apdu(v4, "002A90A032" "9030" + digest.hex())[1] == 0x9000
    assert apdu(v4, "002A9E9A60")[1] == 0x6982  # PIN2 was consumed by the signature


def test_opensc_zero_padded_hash_accepted(v4: VirtualCard) -> None:
    # OpenSC's FINEID path pads any hash to 48 bytes under alg 54.
    select_app(v4)
    apdu(v4, "00200011" "0C" + b"1234".hex() + "00" * 8)
    apdu(v4, "002241B606800154840101")
    padded = hashlib.sha256(b"m").digest().rjust(48, b"\0")
    assert apdu(v4, "002A90A032" "9030" + padded.hex())[1] == 0x9000
    signature, sw = apdu(v4, "002A9E9A60")
    assert sw == 0x9000 and len(signature) == 96


def test_faults_and_stats(v4: VirtualCard) -> None:
    v4.faults.force(0xA4, 0x6F00, times=2)
    assert apdu(v4, "00A4040C0C" + PKCS15_AID.hex())[1] == 0x6F00
    assert apdu(v4, "00A4040C0C" + PKCS15_AID.hex())[1] == 0x6F00
    select_app(v4)
    assert v4.stats.by_command["SELECT"] == 3
    assert v4.stats.bytes_sent == 3 * 2  # the card sent three bare status words
    assert v4.stats.bytes_received == 3 * (5 + len(PKCS15_AID))
    assert apdu(v4, "00")[1] == 0x6700  # garbage framing
    assert apdu(v4, "80A4040C0C" + PKCS15_AID.hex())[1] == 0x6E00
    assert apdu(v4, "00EE0000")[1] == 0x6D00
