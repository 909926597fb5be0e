"""Every FINEID key layout, through the one card layer, with and without PKCS#15 objects.

The virtual card plays each layout the way docs/decisions.md F8 (and docs/cards.md) describes it (v4, v3.0,
v3.1, dual-algorithm v3, the organisation card), with the real cards' non-strict certificates, FCPs and
0xB5-byte blocks.
Signatures are checked with cryptography against the certificate the card gave, and each chain
certificate against the next.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from card import CardCertificate, InvalidPinFormatError, Token, WrongPinError
from card.crypto import ecdsa_raw_to_der
from card.virtual import VirtualCard
from card.virtual.card import VIRTUAL_PROFILES
from card.virtual.source import InProcessTransport
from digisign_web.scs.selector import parse_selector, select

PIN1, PIN2, PUK = "1234", "123456", "12345678"
# profile -> (card-layer profile, [(role, key algorithm, size, key reference, PIN reference)])
LAYOUTS = {
    "fineid-v4": ("fineid-v4", [("authentication", "EC", 384, 0x01, 0x11), ("signature", "EC", 384, 0x02, 0x82)]),
    "fineid-v3": ("fineid-v3", [("authentication", "RSA", 2048, 0x01, 0x11), ("signature", "EC", 256, 0x03, 0x82)]),
    "fineid-v3.1": ("fineid-v3", [("authentication", "RSA", 3072, 0x01, 0x11),
                                  ("signature", "RSA", 3072, 0x02, 0x82)]),
    "fineid-v3-dual": ("fineid-v3", [("authentication", "RSA", 2048, 0x01, 0x11),
                                     ("signature", "RSA", 2048, 0x02, 0x82), ("signature", "EC", 256, 0x03, 0x82)]),
    "fineid-org": ("fineid-org", [("authentication", "RSA", 2048, 0x01, 0x03),
                                  ("signature", "RSA", 2048, 0x82, 0x04)]),
}


@pytest.fixture(params=VIRTUAL_PROFILES)
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=[True, False], ids=["pkcs15", "known-layout"])
def with_pkcs15(request: pytest.FixtureRequest) -> bool:
    return request.param


def open_card(state_dir: Path, layout: str, with_pkcs15: bool = True) -> tuple[VirtualCard, Token]:
    card = VirtualCard(layout, state_dir, pkcs15=with_pkcs15)
    return card, Token.open(InProcessTransport(card))


def check_signature(cert: CardCertificate, hash_name: str, digest: bytes, signature: bytes, pss: bool) -> None:
    algorithm = getattr(hashes, hash_name)()
    key = cert.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        assert len(signature) == 2 * ((key.curve.key_size + 7) // 8)
        key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(utils.Prehashed(algorithm)))
    else:
        assert isinstance(key, rsa.RSAPublicKey) and len(signature) == key.key_size // 8
        pad = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO) if pss else padding.PKCS1v15()
        key.verify(signature, digest, pad, utils.Prehashed(algorithm))


def test_layout_is_read_as_the_card_says(state_dir: Path, layout: str, with_pkcs15: bool) -> None:
    card, token = open_card(state_dir, layout, with_pkcs15)
    profile, keys = LAYOUTS[layout]
    assert token.profile.name == profile
    keyed = [c for c in token.certificates() if c.key is not None]
    got = [(c.role, c.key_algorithm, c.key_size, c.key.key_reference, c.pin.reference) for c in keyed]
    assert got == keys
    assert [c.role for c in token.certificates()].count("ca") == 2
    for cert in keyed:
        assert cert.der in (card.identity.auth.cert.der, *(s.cert.der for s in card.identity.signs))
        chain = token.chain(cert)
        assert len(chain) == 3 and chain[-1].self_issued
        assert chain[0].signed_by(chain[1]) and chain[1].signed_by(chain[2])
        assert chain[1:] == [card.identity.ca, card.identity.root]


def test_every_key_signs(state_dir: Path, layout: str, with_pkcs15: bool) -> None:
    _card, token = open_card(state_dir, layout, with_pkcs15)
    for cert in (c for c in token.certificates() if c.key is not None):
        pin = PIN1 if cert.role == "authentication" else PIN2
        for hash_name in ("SHA256", "SHA384", "SHA512"):
            if cert.curve == "secp256r1" and hash_name != "SHA256":
                continue
            digest = hashlib.new(hash_name.lower(), b"document").digest()
            for pss in ([False, True] if cert.key_algorithm == "RSA" and layout != "fineid-org" else [False]):
                signature = token.sign_digest(cert, hash_name, digest, pin=pin, pss=pss)
                check_signature(cert.certificate, hash_name, digest, signature, pss)


def test_pin_status_without_spending_a_try(state_dir: Path, layout: str) -> None:
    card, token = open_card(state_dir, layout)
    for pin in token.pins:
        status = token.pin_status(pin)
        assert not status.blocked
        assert status.tries_left in (5, None)
    assert all(p.tries_left == p.max_tries for p in card.pins.values())
    org = layout == "fineid-org"
    # Organisation cards have no GET DATA PIN container: the empty VERIFY tells the tries.
    assert card.stats.by_command["GET DATA"] == (0 if org else len(token.pins))
    assert card.stats.by_command["VERIFY (status)"] == (len(token.pins) if org else 0)


def test_organisation_card_pins_are_bare_and_unblock_with_the_puk(state_dir: Path) -> None:
    card, token = open_card(state_dir, "fineid-org")
    auth = next(c for c in token.certificates() if c.role == "authentication")
    assert token.encode_pin(auth.pin, PIN1) == b"1234"  # bare ASCII: a padded block would spend a try
    with pytest.raises(InvalidPinFormatError):
        token.encode_pin(auth.pin, "123456789")  # at most 8 digits
    with pytest.raises(WrongPinError) as wrong:
        token.verify_pin(auth.pin, "9999")
    assert wrong.value.tries_left == 4
    for _ in range(4):
        with pytest.raises(Exception):  # noqa: B017 - WrongPinError, then PinBlockedError
            token.verify_pin(auth.pin, "9999")
    assert token.pin_status(auth.pin).blocked
    token.unblock_pin(auth.pin, PUK, "4321")
    token.verify_pin(auth.pin, "4321")
    assert card.pins[0x03].value == "4321" and card.pins[0x03].tries_left == 5
    # S4-2's unblock: VERIFY of the PUK (ref 12), then RESET RETRY COUNTER with P1=02.
    assert card.stats.by_command["RESET RETRY COUNTER"] == 1


def test_organisation_qes_key_is_local_to_df_esign(state_dir: Path) -> None:
    card, token = open_card(state_dir, "fineid-org")
    sign = next(c for c in token.certificates() if c.role == "signature")
    assert sign.key_df == b"E.SIGN"
    digest = hashlib.sha256(b"contract").digest()
    check_signature(sign.certificate, "SHA256", digest, token.sign_digest(sign, "SHA256", digest, pin=PIN2), False)
    # No external PSO:HASH on this card: PSO:CDS carried the digest.
    assert card.stats.by_command["PSO"] == 1


def test_dual_algorithm_card_keyalgorithms_picks_one(state_dir: Path) -> None:
    _card, token = open_card(state_dir, "fineid-v3-dual", with_pkcs15=False)
    signature_keys = [c for c in token.certificates() if c.role == "signature"]
    assert [c.key_algorithm for c in signature_keys] == ["RSA", "EC"]
    for wanted, algorithm in (("rsa", "RSA"), ("ec", "EC")):
        selector = parse_selector({"keyusages": ["nonrepudiation"], "keyalgorithms": [wanted],
                                  "strictKeyPolicy": True})
        chosen = select(signature_keys, lambda c: c.certificate, selector, strict_setting=False)
        assert [c.key_algorithm for c in chosen.matches] == [algorithm]


def test_ec_only_card_fails_an_rsa_only_relying_party_with_strict_key_policy(state_dir: Path) -> None:
    _card, token = open_card(state_dir, "fineid-v4")
    selector = parse_selector({"keyusages": ["nonrepudiation"], "keyalgorithms": ["rsa"],
                              "strictKeyPolicy": True})
    chosen = select(token.certificates(), lambda c: c.certificate, selector, strict_setting=False)
    assert chosen.matches == [] and "keyalgorithms" in chosen.reason


# Warm signature with its PIN, counted at the card: VERIFY, MSE, PSO:HASH, PSO:CDS on citizen cards;
# RSA-3072's 384-byte answer needs one GET RESPONSE; the organisation card sends the digest inline (one
# PSO, whose T=0 answer comes through GET RESPONSE) and selects DF.ESIGN for its QES key.
WARM_BUDGET = {"fineid-v4": (4, 4), "fineid-v3": (4, 4), "fineid-v3.1": (5, 5), "fineid-v3-dual": (4, 4),
               "fineid-org": (4, 5)}


def test_warm_signature_apdu_budget(state_dir: Path, layout: str) -> None:
    card, token = open_card(state_dir, layout)
    keyed = [c for c in token.certificates() if c.key is not None]
    auth_budget, sign_budget = WARM_BUDGET[layout]
    digest = hashlib.sha256(b"warm").digest()
    for cert in keyed:
        pin = PIN1 if cert.role == "authentication" else PIN2
        token.sign_digest(cert, "SHA256", digest, pin=pin)  # the first use may re-select the application
        card.stats.reset()
        token.sign_digest(cert, "SHA256", digest, pin=pin)
        assert card.stats.apdus == (auth_budget if cert.role == "authentication" else sign_budget), \
            (cert.role, dict(card.stats.by_command))
