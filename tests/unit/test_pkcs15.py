"""PKCS#15 schemas: decode bytes written by hand in OpenSC's layout (not by our encoder), round-trip
our encoder, and survive random input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from card import pkcs15
from card.errors import MalformedResponseError


def test_decode_opensc_style_ec_key() -> None:
    # An EC private key entry as OpenSC encodes it: A0 choice, FieldLength INTEGER after the path.
    raw = bytes.fromhex(
        "A02E" "300D" "0C04" + b"Sign".hex() + "03020780" "040102"
        "300B" "040145" "03020520" "02020082"
        "A110" "300E" "3008" "04063F0050154B01" "02020180"
    )
    (key,) = pkcs15.parse_prkdf(raw)
    assert key.label == "Sign"
    assert key.id == b"\x45"
    assert key.algorithm == "EC" and key.size == 384
    assert key.key_reference == 0x82
    assert key.auth_id == b"\x02"
    assert "sign" in key.usage


def test_decode_opensc_style_pin() -> None:
    raw = bytes.fromhex(
        "3034" "300A" "0C04" + b"PIN2".hex() + "030206C0"
        "3003" "040102"
        "A121" "301F" "0302024C" "0A0101" "020106" "02010C" "02010C" "80020082" "040100"
        "3006" "04043F005015"
    )
    (pin,) = pkcs15.parse_aodf(raw)
    assert pin.label == "PIN2"
    assert pin.reference == 0x82
    assert (pin.min_length, pin.stored_length, pin.max_length) == (6, 12, 12)
    assert pin.pad_char == 0 and pin.pin_type == "ascii-numeric"
    assert {"local", "initialized", "needs_padding"} <= pin.flags


def test_decode_cdf_od_tokeninfo_dir() -> None:
    cdf = bytes.fromhex("301B" "3006" "0C04" + b"Cert".hex() + "3003040145" "A10C" "300A" "3008"
                        "04063F0050154331")
    (cert,) = pkcs15.parse_cdf(cdf)
    assert (cert.label, cert.id, cert.path, cert.authority) == ("Cert", b"\x45", bytes.fromhex("3F0050154331"),
                                                                False)
    od = pkcs15.parse_od(bytes.fromhex("A00A300804063F0050154401" "A40A300804063F0050154403"
                                       "A80A300804063F0050154404" "0000"))
    assert od.get("private_keys") == [bytes.fromhex("3F0050154401")]
    assert od.get("certificates") == [bytes.fromhex("3F0050154403")]
    assert od.get("auth_objects") == [bytes.fromhex("3F0050154404")]
    info = pkcs15.parse_token_info(bytes.fromhex("301B020100" "04051234567890" "0C03" + b"VRK".hex()
                                                 + "8006" + b"FINEID".hex() + "03020640"))
    assert info.serial == "1234567890" and info.label == "FINEID" and info.manufacturer == "VRK"
    assert "login_required" in info.flags
    apps = pkcs15.parse_dir(bytes.fromhex("611C4F0CA000000063504B43532D3135" "5006" + b"FINEID".hex()
                                          + "51043F005015"))
    assert apps == [pkcs15.Application(pkcs15.PKCS15_AID, "FINEID", bytes.fromhex("3F005015"))]


def test_token_info_lenient_fallback() -> None:
    # A token info whose flags are missing still yields the serial, as OpenSC reads it.
    raw = bytes.fromhex("3009020100" "0404" + b"A1B2".hex())
    assert pkcs15.parse_token_info(raw).serial == "A1B2"


def test_roundtrip_encoders() -> None:
    pins = [pkcs15.PinInfo("PIN1", b"\x01", 0x11, 4, 12, 12, flags=frozenset({"initialized"}))]
    assert pkcs15.parse_aodf(pkcs15.encode_aodf(pins)) == pins
    keys = [
        pkcs15.KeyInfo("k", b"\x01", frozenset({"sign", "decrypt"}), 1, b"\x01", "RSA", 2048),
        pkcs15.KeyInfo("s", b"\x02", frozenset({"non_repudiation"}), 3, b"\x02", "EC", 256, user_consent=1),
    ]
    assert pkcs15.parse_prkdf(pkcs15.encode_prkdf(keys)) == keys
    certs = [pkcs15.CertificateRef("c", b"\x01", True, bytes.fromhex("3F004334"))]
    assert pkcs15.parse_cdf(pkcs15.encode_cdf(certs)) == certs
    od = pkcs15.ObjectDirectory({"certificates": [b"\x3f\x00\x44\x04"]})
    assert pkcs15.parse_od(pkcs15.encode_od(od)).paths == od.paths


def test_malformed_directory_is_typed() -> None:
    with pytest.raises(MalformedResponseError):
        pkcs15.parse_prkdf(bytes.fromhex("3005020101"))
    with pytest.raises(MalformedResponseError):
        pkcs15.parse_token_info(b"")


PARSERS = [pkcs15.parse_dir, pkcs15.parse_od, pkcs15.parse_token_info, pkcs15.parse_aodf,
           pkcs15.parse_prkdf, pkcs15.parse_cdf]


@settings(max_examples=300)
@given(st.sampled_from(PARSERS), st.binary(max_size=200))
def test_random_bytes_give_typed_errors(parser, data: bytes) -> None:
    try:
        parser(data)
    except MalformedResponseError:
        pass


@settings(max_examples=200)
@given(st.sampled_from(PARSERS), st.sampled_from([0x30, 0xA0, 0x61, 0xA4, 0xA8]), st.binary(max_size=120))
def test_random_structured_bytes_give_typed_errors(parser, tag: int, body: bytes) -> None:
    # Plausible outer tags with random insides reach deeper into the schemas.
    from card.apdu import encode_tlv

    try:
        parser(encode_tlv(tag, body))
    except MalformedResponseError:
        pass
