"""The card layer against recordings of real FINEID cards, replayed in-process.

The recordings are Web eID's libelectronic-id traces of a FINEID v3 test card (2020) and a v4 test card
(2023): tests/data/recordings/ (MIT, see LICENSE-libelectronic-id there). Their response bytes are the
cards' own: non-strict DER certificates, READ BINARY answers of 0xB5 bytes, the GET DATA PIN template,
and signatures over SHA-2 of "Hello world!".

What they cannot prove: the recordings hold no PKCS#15 directory files (EF.OD, TokenInfo, AODF, PrKDF,
CDF) and no CA certificates, so these tests exercise the known-layout path only and the chain from such
a card is the leaf alone. They never show a wrong PIN, a blocked PIN, PIN2 being consumed, a 6Cxx, or
what the card answers to files it was never asked for (the replay answers 6A82, and each test lists which
APDUs the recording could not vouch for).
"""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from card import CardCertificate, Token
from card.crypto import ecdsa_raw_to_der
from card.virtual.replay import RecordedCard, Recording
from card.virtual.source import InProcessTransport
from tests.support.paths import RECORDINGS
from tests.support.recordings import MESSAGE, recorded_certificates

# (recording, role) -> (hash, RSA-PSS?, PIN) as the real card was used in the trace.
RECORDED_SIGNATURES = {
    ("fineid-v3-2020", "authentication"): ("SHA256", True, "1234"),
    ("fineid-v3-2020", "signature"): ("SHA256", False, "123456"),
    ("fineid-v4-2023", "authentication"): ("SHA384", False, "1234"),
    ("fineid-v4-2023", "signature"): ("SHA384", False, "123456"),
}
EXPECTED = {
    "fineid-v3-2020": ("fineid-v3", {"authentication": ("RSA", 2048, 0x01), "signature": ("EC", 256, 0x03)},
                       "SPECIMEN-NISYJU LIISA 99900335E"),
    "fineid-v4-2023": ("fineid-v4", {"authentication": ("EC", 384, 0x01), "signature": ("EC", 384, 0x02)},
                       "SPECIMEN-AUVINEN PHILIP 99902038C"),
}


def verify(cert: CardCertificate, hash_name: str, digest: bytes, signature: bytes, pss: bool) -> None:
    algorithm = getattr(hashes, hash_name)()
    key = cert.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(utils.Prehashed(algorithm)))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        pad = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO) if pss else padding.PKCS1v15()
        key.verify(signature, digest, pad, utils.Prehashed(algorithm))


@pytest.fixture(params=sorted(EXPECTED))
def recording(request: pytest.FixtureRequest) -> str:
    return request.param


def open_recorded(name: str) -> tuple[RecordedCard, Token]:
    card = RecordedCard.load(RECORDINGS / f"{name}.json")
    return card, Token.open(InProcessTransport(card))


def test_real_card_certificates_are_not_strict_der(recording: str) -> None:
    """The premise: cryptography refuses what real cards carry, so nothing above may parse with it."""
    for der in recorded_certificates(recording).values():
        with pytest.raises(ValueError):
            x509.load_der_x509_certificate(der).extensions  # noqa: B018
        cert = CardCertificate.load(der)
        assert cert.der == der


def test_lists_the_recorded_card(recording: str) -> None:
    card, token = open_recorded(recording)
    profile, keys, holder = EXPECTED[recording]
    assert token.profile.name == profile
    certs = token.certificates()
    assert [c.role for c in certs] == ["authentication", "signature"]
    recorded = recorded_certificates(recording)
    for cert in certs:
        algorithm, size, key_reference = keys[cert.role]
        assert (cert.key_algorithm, cert.key_size, cert.key.key_reference) == (algorithm, size, key_reference)
        assert cert.certificate.subject.get("2.5.4.3") == holder
        assert cert.der == recorded[cert.role]  # read to the real size, byte for byte
        assert cert.pin.reference == (0x11 if cert.role == "authentication" else 0x82)
        status = token.pin_status(cert.pin)
        assert (status.tries_left, status.blocked) == (5, False)  # from the recorded GET DATA template
    # The certificates came in 0xB5-byte blocks: one READ BINARY per block, none wasted on a short block.
    total = sum(-(-len(c.der) // 0xB5) for c in certs)
    assert card.stats.by_command["READ BINARY"] == total
    # A short block is not the end of the file: the old reader stopped after the first 0xB5 bytes.
    assert all(len(c.der) > 0xB5 for c in certs)
    # What the recording could not vouch for: directory files, CA files and (v3) the other QES slot.
    probed = {line.split(" -> ")[0] for line in card.unrecorded}
    assert all(line.endswith("-> 6A82") for line in card.unrecorded)
    assert "00 A4 08 04 02 50 31" in probed  # EF.OD: the recordings hold no PKCS#15 objects
    assert {"00 A4 08 04 02 43 34", "00 A4 08 04 02 43 36"} <= probed  # no CA certificates either


@pytest.mark.parametrize("role", ["authentication", "signature"])
def test_recorded_signatures_verify_under_the_recorded_certificates(recording: str, role: str) -> None:
    card, token = open_recorded(recording)
    cert = next(c for c in token.certificates() if c.role == role)
    hash_name, pss, pin = RECORDED_SIGNATURES[(recording, role)]
    digest = hashlib.new(hash_name.lower(), MESSAGE).digest()
    before = card.stats.apdus
    signature = token.sign_digest(cert, hash_name, digest, pin=pin, pss=pss)
    verify(CardCertificate.load(recorded_certificates(recording)[role]), hash_name, digest, signature, pss)
    # VERIFY, MSE, PSO:HASH, PSO:CDS with the exact Le: the recorded sequence, and nothing else.
    assert card.stats.by_command["VERIFY"] == 1 and card.stats.by_command["MSE"] == 1
    assert card.stats.by_command["PSO"] == 2
    assert card.stats.apdus - before == 4


def test_recorded_card_refuses_what_was_never_recorded(recording: str) -> None:
    """The replay is no emulator: another hash has no recorded signature, and nothing is signed."""
    card, token = open_recorded(recording)
    cert = next(c for c in token.certificates() if c.role == "signature")
    hash_name, _pss, pin = RECORDED_SIGNATURES[(recording, "signature")]
    from card import StatusWordError

    with pytest.raises(StatusWordError):
        token.sign_digest(cert, hash_name, hashlib.new(hash_name.lower(), b"other").digest(), pin=pin)
    assert card.unrecorded[-1].endswith("-> 6F00")


def test_recording_files_carry_their_source() -> None:
    import json

    for path in RECORDINGS.glob("*.json"):
        doc = json.loads(path.read_text())
        assert "c9ee15991332d6668b2d284f9c0802aa80b7f1b2" in doc["source"]
        assert "MIT" in doc["license"]
        recording = Recording.load(path)
        assert recording.max_block == 0xB5
    assert "Estonian Information System Authority" in (RECORDINGS / "LICENSE-libelectronic-id").read_text()


def test_a_real_card_without_a_serial_is_read_the_same_with_the_cache_on(recording: str, tmp_path) -> None:
    """The recordings hold no EF.TokenInfo, so no serial to key a cache file by (D57): with the cache on, the
    card is read as without it, byte for byte, for one more APDU (the SELECT that finds no EF.TokenInfo), and
    nothing is written."""
    from card.cache import CardCache

    card, plain = open_recorded(recording)
    plain_certs = [c.der for c in plain.certificates()]
    plain_apdus, plain_selects = card.stats.apdus, card.stats.by_command["SELECT"]
    cached_card = RecordedCard.load(RECORDINGS / f"{recording}.json")
    token = Token.open(InProcessTransport(cached_card), cache=CardCache(tmp_path / "cache", 1))
    assert [c.der for c in token.certificates()] == plain_certs
    assert token.cache_state == "uncacheable"
    assert cached_card.stats.apdus == plain_apdus + 1 and cached_card.stats.by_command["SELECT"] == plain_selects + 1
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
