"""The token API against the in-process virtual card, for both profiles: reading, PINs, signing
(verified with cryptography against the certificate's key), APDU budgets, and card quirks."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from card import (
    CardManager,
    CardRemovedError,
    InvalidPinFormatError,
    PinBlockedError,
    SecurityStatusNotSatisfied,
    Token,
    UnsupportedCardError,
    WrongPinError,
)
from card.crypto import ecdsa_der_to_raw, ecdsa_raw_to_der
from card.pkcs15 import FID_OD
from card.profiles import GENERIC
from card.virtual import VirtualCard, VirtualReader
from card.virtual.source import InProcessTransport
from digisign_web.wildcards import matcher
from tests.support.cards import PIN1, PIN2, PUK, by_role, verify

ATRS = {
    "fineid-v4": "3B 7F 96 00 00 80 31 B8 65 B0 85 05 00 11 12 24 60 82 90 00",  # Thales MultiApp v5.0
    # The 2020 recording's card: the v3.0 key layout behind the MultiApp v4.2 ATR.
    "fineid-v3": "3B 7F 96 00 00 80 31 B8 65 B0 85 04 02 1B 12 00 F6 82 90 00",
}


def test_reads_profile_certificates_and_pins(token: Token, profile: str) -> None:
    assert token.atr == bytes.fromhex(ATRS[profile].replace(" ", ""))
    assert token.profile.name == profile
    assert token.serial and token.label == "FINEID"
    roles = [c.role for c in token.certificates()]
    assert roles == ["authentication", "signature", "ca", "ca"]
    auth, sign = by_role(token, "authentication"), by_role(token, "signature")
    assert auth.pin.reference == 0x11 and sign.pin.reference == 0x82
    assert "digital_signature" in auth.key_usage and sign.key_usage == ["non_repudiation"]
    assert auth.key.key_reference == 1
    assert sign.key.key_reference == (2 if profile == "fineid-v4" else 3)
    if profile == "fineid-v4":
        assert (auth.curve, sign.curve) == ("secp384r1", "secp384r1")
        assert "key_agreement" in auth.key_usage
    else:
        assert (auth.key_algorithm, auth.key_size, sign.curve) == ("RSA", 2048, "secp256r1")
    chain = token.chain(sign)
    assert [c.subject for c in chain[1:]] == [token.certificates()[2].certificate.subject,
                                               token.certificates()[3].certificate.subject]
    assert chain[0].signed_by(chain[1])
    assert chain[1].signed_by(chain[2])


@pytest.mark.parametrize("hash_name", ["SHA1", "SHA224", "SHA256", "SHA384", "SHA512"])
def test_signature_key_signs_every_hash(token: Token, hash_name: str) -> None:
    sign = by_role(token, "signature")
    digest = hashlib.new(hash_name.lower(), b"document").digest()
    signature = token.sign_digest(sign, hash_name, digest, pin=PIN2)
    verify(sign, hash_name, digest, signature)


def test_authentication_key_signs(token: Token) -> None:
    _authenticate_twice(token, pss=False)


def test_rsa_pss_with_v3_authentication_key(state_dir) -> None:
    token = Token.open(InProcessTransport(VirtualCard("fineid-v3", state_dir)))
    assert by_role(token, "authentication").key_algorithm == "RSA"
    _authenticate_twice(token, pss=True)


def _authenticate_twice(token: Token, pss: bool) -> None:
    auth = by_role(token, "authentication")
    digest = hashlib.sha256(b"challenge").digest()
    token.verify_pin(auth.pin, PIN1)
    signature = token.sign_digest(auth, "SHA256", digest, pss=pss)
    verify(auth, "SHA256", digest, signature, pss=pss)
    # PIN1 stays verified: a second authentication signature needs no PIN.
    signature = token.sign_digest(auth, "SHA256", digest, pss=pss)
    verify(auth, "SHA256", digest, signature, pss=pss)


def test_pin2_is_consumed_by_each_signature(token: Token) -> None:
    sign = by_role(token, "signature")
    digest = hashlib.sha256(b"x").digest()
    token.sign_digest(sign, "SHA256", digest, pin=PIN2)
    with pytest.raises(SecurityStatusNotSatisfied):
        token.sign_digest(sign, "SHA256", digest)


def test_warm_signature_apdu_budget(token: Token) -> None:
    token.certificates()
    sign = by_role(token, "signature")
    stats = token.transport.stats
    stats.reset()
    token.sign_digest(sign, "SHA256", hashlib.sha256(b"a").digest(), pin=PIN2)
    # VERIFY, MSE, PSO:HASH, PSO:CDS: nothing else (no re-select, no re-read).
    assert dict(stats.by_command) == {"VERIFY": 1, "MSE:SET DST": 1, "PSO:HASH": 1, "PSO:CDS": 1}


def test_cold_listing_apdu_budget(vcard: VirtualCard) -> None:
    transport = InProcessTransport(vcard)
    token = Token.open(transport)
    for cert in token.certificates():
        if cert.pin:
            token.pin_status(cert.pin)
    # Measured: 44 for v4 and 45 for v3 (the RSA certificate is longer; READ BINARY answers at most 0xB5
    # bytes, as real cards do). A regression guard, with slack.
    assert transport.stats.apdus <= 46
    before = transport.stats.apdus
    token.certificates()
    assert transport.stats.apdus == before  # cached


def test_pin_lifecycle(token: Token) -> None:
    pin2 = by_role(token, "signature").pin
    assert token.pin_status(pin2).tries_left == 5
    with pytest.raises(WrongPinError) as info:
        token.verify_pin(pin2, "654321")
    assert info.value.tries_left == 4
    assert token.pin_status(pin2).tries_left == 4
    token.verify_pin(pin2, PIN2)  # a right PIN resets the counter
    assert token.pin_status(pin2).tries_left == 5
    for left in (4, 3, 2, 1):
        with pytest.raises(WrongPinError) as info:
            token.verify_pin(pin2, "000000")
        assert info.value.tries_left == left
    with pytest.raises(PinBlockedError):
        token.verify_pin(pin2, "000000")
    status = token.pin_status(pin2)
    assert status.blocked and status.tries_left == 0
    with pytest.raises(PinBlockedError):
        token.verify_pin(pin2, PIN2)  # blocked means blocked, even for the right PIN
    with pytest.raises(WrongPinError) as info:
        token.unblock_pin(pin2, "87654321", "222222")
    assert info.value.tries_left == 4  # the PUK's own counter
    token.unblock_pin(pin2, PUK, "222222")
    assert token.pin_status(pin2).tries_left == 5
    token.verify_pin(pin2, "222222")
    token.change_pin(pin2, "222222", PIN2)
    token.verify_pin(pin2, PIN2)


def test_pin_format_refused_before_the_card(token: Token) -> None:
    pin2 = by_role(token, "signature").pin
    token.certificates()
    before = token.transport.stats.apdus
    for bad in ("12345", "1234567890123", "12a456", ""):
        with pytest.raises(InvalidPinFormatError):
            token.verify_pin(pin2, bad)
    assert token.transport.stats.apdus == before


def test_empty_verify_and_must_change(vcard: VirtualCard) -> None:
    vcard.pins[0x11].changed = False
    token = Token.open(InProcessTransport(vcard))
    pin1 = token.pin(0x11)
    assert token.pin_status(pin1).must_change
    # Forced fallback: GET DATA fails, the empty VERIFY reports the counter.
    vcard.faults.force(0xCB, 0x6D00)
    status = token.pin_status(pin1)
    assert status.tries_left == 5 and status.verified is False


def test_logout_drops_verified_pin(token: Token) -> None:
    auth = by_role(token, "authentication")
    token.verify_pin(auth.pin, PIN1)
    token.logout()
    with pytest.raises(SecurityStatusNotSatisfied):
        token.sign_digest(auth, "SHA256", hashlib.sha256(b"x").digest())


def test_logout_drops_verified_pins_on_an_organisation_card(state_dir) -> None:
    """An organisation card (IAS-ECC based, S4-2) keeps its PINs verified across a re-select of the PKCS#15
    application, so logging out resets the card (D68): after it, both keys need their PIN again."""
    token = Token.open(InProcessTransport(VirtualCard("fineid-org", state_dir)))
    auth, sign = by_role(token, "authentication"), by_role(token, "signature")
    token.verify_pin(auth.pin, PIN1)
    token.verify_pin(sign.pin, PIN2)
    assert token.pin_verified(auth.pin) and token.pin_verified(sign.pin)
    token.logout()
    assert not token.pin_verified(auth.pin) and not token.pin_verified(sign.pin)
    with pytest.raises(SecurityStatusNotSatisfied):
        token.sign_digest(auth, "SHA256", hashlib.sha256(b"x").digest())


def test_digest_length_checked(token: Token) -> None:
    sign = by_role(token, "signature")
    with pytest.raises(ValueError):
        token.sign_digest(sign, "SHA256", b"short", pin=PIN2)


def test_removed_card_invalidates_token(vcard: VirtualCard) -> None:
    token = Token.open(InProcessTransport(vcard))
    assert token.certificates()
    vcard.remove()
    with pytest.raises(CardRemovedError):
        token.pin_status(token.pin(0x11))
    assert token.removed
    with pytest.raises(CardRemovedError):
        token.certificates()  # the cache went with the card


def test_forced_status_word_is_typed(vcard: VirtualCard) -> None:
    token = Token.open(InProcessTransport(vcard))
    sign = by_role(token, "signature")
    vcard.faults.force(0x2A, 0x6985)
    from card import StatusWordError

    with pytest.raises(StatusWordError) as info:
        token.sign_digest(sign, "SHA256", hashlib.sha256(b"x").digest(), pin=PIN2)
    assert info.value.sw == 0x6985


def test_unknown_atr_read_generically(state_dir) -> None:
    card = VirtualCard("fineid-v4", state_dir, atr=bytes.fromhex("3B8880010000000000000000"))
    token = Token.open(InProcessTransport(card))
    assert token.profile is GENERIC
    sign = by_role(token, "signature")
    digest = hashlib.sha384(b"doc").digest()
    verify(sign, "SHA384", digest, token.sign_digest(sign, "SHA384", digest, pin=PIN2))
    with pytest.raises(UnsupportedCardError, match="allowUnknownCards"):
        Token.open(InProcessTransport(card), allow_unknown_cards=False)


def test_valid_token_info_label(state_dir) -> None:
    card = VirtualCard("fineid-v4", state_dir, token_label="HENKILOKORTTI")
    assert Token.open(InProcessTransport(card), label_filter=matcher("*KORTTI* OTHER", "validTokenInfoLabel")).label
    with pytest.raises(UnsupportedCardError, match="validTokenInfoLabel"):
        Token.open(InProcessTransport(card), label_filter=matcher("FINEID*", "validTokenInfoLabel"))


def test_known_layout_fallback_without_object_directory(state_dir, profile: str) -> None:
    # The real card's PKCS#15 FIDs are unknown: without EF.OD the profile's known paths must do.
    card = VirtualCard(profile, state_dir)
    del card.app.children[FID_OD]
    token = Token.open(InProcessTransport(card))
    roles = [c.role for c in token.certificates()]
    # The profile also knows where citizen cards keep their CA certificates (under the MF).
    assert roles == ["authentication", "signature", "ca", "ca"]
    sign = by_role(token, "signature")
    assert token.chain(sign) == [card.identity.sign.cert, card.identity.ca, card.identity.root]
    digest = hashlib.sha256(b"doc").digest()
    verify(sign, "SHA256", digest, token.sign_digest(sign, "SHA256", digest, pin=PIN2))


def test_ecdsa_conversions_roundtrip() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    raw = ecdsa_der_to_raw(der, 32)
    assert len(raw) == 64 and ecdsa_raw_to_der(raw) == der


def test_generic_card_found_through_ef_dir(state_dir) -> None:
    # An unknown card whose application does not answer the PKCS#15 AID: EF.DIR gives its path.
    card = VirtualCard("fineid-v3", state_dir, atr=bytes.fromhex("3B8880010000000000000000"))
    card.app.name = b"\xd2\x76\x00\x00\x00\x00"
    token = Token.open(InProcessTransport(card))
    assert token.profile is GENERIC and token.app_path == bytes.fromhex("3F005015")
    sign = by_role(token, "signature")
    digest = hashlib.sha256(b"doc").digest()
    verify(sign, "SHA256", digest, token.sign_digest(sign, "SHA256", digest, pin=PIN2))
    del card.mf.children[bytes.fromhex("2F00")]
    with pytest.raises(UnsupportedCardError, match="no PKCS#15 application"):
        Token.open(InProcessTransport(card))


def test_loaded_means_no_card_io_for_what_callers_read_beside_the_certificates(vcard: VirtualCard) -> None:
    """cached_tokens() trusts `loaded` to mean "answer from memory": the serial, label and manufacturer the
    service and the manager look at must not send an APDU then (they did when only the certificates were in)."""
    token = Token.open(InProcessTransport(vcard))
    assert token.certificates()
    assert not token.loaded  # EF.TokenInfo is not read yet: the serial would cost APDUs
    token.token_info  # noqa: B018 (what the worker-thread path reads for a token not loaded yet)
    assert token.loaded
    before = vcard.stats.apdus
    assert token.serial and token.label and token.token_info.manufacturer and token.certificates()
    assert vcard.stats.apdus == before


def test_a_stale_token_is_closed_when_the_manager_opens_the_card_again(vcard: VirtualCard) -> None:
    """A token marked removed (a card pulled and pushed back, or a cache its first signature disproved) is
    replaced on next use, and its connection is closed, not leaked."""
    manager = CardManager(source=VirtualReader(vcard))
    manager.start()
    try:
        reader = next(iter(manager.readers()))
        first = manager.token(reader)
        closed: list[bool] = []
        first.transport.close = lambda: closed.append(True)  # type: ignore[method-assign]
        first.removed = True
        assert manager.token(reader) is not first and closed == [True]
    finally:
        manager.stop()
