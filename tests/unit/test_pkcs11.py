"""The PKCS#11 token source against real SoftHSM2 tokens (tests/support/softhsm.py): pairing by CKA_ID, the
chain from the token's CA, every mechanism checked by `cryptography`, the two PIN kinds, wrong and locked PINs,
the pinpad's protected path (the fixture's test-double module), removal, one card seen twice, a bad module."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from card import CardManager, CardRemovedError, PinBlockedError, SecurityStatusNotSatisfied, WrongPinError
from card.crypto import ecdsa_raw_to_der
from card.manager import CardPolicy
from card.pkcs11 import Pkcs11Source, Pkcs11Token
from card.pkcs11.token import CONTEXT_PIN_REFERENCE, USER_PIN_REFERENCE
from card.token import Certificate, pin_on_reader
from card.virtual import VirtualCard, VirtualReader

DIGEST = hashlib.sha256(b"digisign-web pkcs11").digest()


@pytest.fixture
def open_source() -> Iterator:
    """start(paths) -> a started Pkcs11Source (polling fast) and its events; every source is stopped after."""
    started: list[Pkcs11Source] = []

    def start(*paths: Path | str, interval: float = 0.2) -> tuple[Pkcs11Source, list]:
        source = Pkcs11Source([str(p) for p in paths], interval)
        events: list = []
        source.start(events.append)
        started.append(source)
        assert source.wait_settled(20)
        return source, events

    yield start
    for source in started:
        source.stop()


def only_token(source: Pkcs11Source) -> Pkcs11Token:
    readers = list(source.state())
    assert len(readers) == 1, readers
    return source.token(readers[0])


def cert_of(token: Pkcs11Token, role: str, algorithm: str | None = None) -> Certificate:
    found = [c for c in token.certificates() if c.role == role and c.key is not None
             and (algorithm is None or c.key_algorithm == algorithm)]
    assert found, [(c.role, c.label) for c in token.certificates()]
    return found[0]


def verify(cert: Certificate, signature: bytes, digest: bytes, *, pss: bool = False, algo=hashes.SHA256) -> None:
    """Raises InvalidSignature unless ``signature`` (raw r||s for EC) is the key's over ``digest``."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = cert.certificate.public_key
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(Prehashed(algo())))
    else:
        assert isinstance(key, rsa.RSAPublicKey)
        pad = padding.PSS(padding.MGF1(algo()), algo().digest_size) if pss else padding.PKCS1v15()
        key.verify(signature, digest, pad, Prehashed(algo()))


def test_certificates_pair_with_keys_by_cka_id_and_the_token_ca_completes_the_chain(softhsm_token, open_source):
    token = softhsm_token()  # rsa2048 authentication, p384 signature (CKA_ALWAYS_AUTHENTICATE)
    source, events = open_source(token.module)
    p11 = only_token(source)
    assert [e.kind for e in events] == ["card-inserted"]
    assert p11.reader.endswith("(PKCS#11: libsofthsm2.so)") and p11.serial == token.serial
    assert p11.label == token.label and p11.profile.name == "pkcs11"
    certs = p11.certificates()
    assert [c.role for c in certs] == ["authentication", "signature", "ca"]
    by_role = {c.role: c for c in certs}
    for key in token.keys:
        cert = by_role[key.role]
        assert cert.der == key.cert_der and cert.id == key.id and cert.key is not None
    assert by_role["ca"].key is None and by_role["ca"].der == token.ca_der
    # the user PIN plays PIN1, the always-authenticate key's login PIN2: same PIN, same label, two kinds
    assert by_role["authentication"].pin.reference == USER_PIN_REFERENCE
    assert by_role["signature"].pin.reference == CONTEXT_PIN_REFERENCE
    assert by_role["authentication"].pin.label == by_role["signature"].pin.label
    assert not pin_on_reader(by_role["signature"].pin)
    chain = p11.chain(by_role["signature"])
    assert [c.der for c in chain] == [token.key("p384").cert_der, token.ca_der]


def test_every_mechanism_verifies_with_cryptography(softhsm_token, open_source):
    token = softhsm_token(keys=(("rsa2048", "authentication"), ("p256", "signature")),
                          always_authenticate_signature=False)
    source, _ = open_source(token.module)
    p11 = only_token(source)
    rsa_cert, ec_cert = cert_of(p11, "authentication"), cert_of(p11, "signature")
    pkcs1 = p11.sign_digest(rsa_cert, "SHA256", DIGEST, pin=token.user_pin)
    verify(rsa_cert, pkcs1, DIGEST)
    pss = p11.sign_digest(rsa_cert, "SHA256", DIGEST, pss=True)  # the user is still logged in
    verify(rsa_cert, pss, DIGEST, pss=True)
    assert pss != p11.sign_digest(rsa_cert, "SHA256", DIGEST, pss=True)  # a random salt: really PSS
    sha384 = hashlib.sha384(b"x").digest()
    raw = p11.sign_digest(ec_cert, "SHA384", sha384)
    assert len(raw) == 64  # r||s of P-256, as cards give it
    verify(ec_cert, raw, sha384, algo=hashes.SHA384)
    assert p11.pin_verified(rsa_cert.pin)
    p11.logout()
    assert not p11.pin_verified(rsa_cert.pin)
    with pytest.raises(SecurityStatusNotSatisfied):
        p11.sign_digest(rsa_cert, "SHA256", DIGEST)  # logged out and no PIN: nothing is signed


def test_an_always_authenticate_key_logs_in_for_every_signature(softhsm_token, open_source):
    token = softhsm_token(keys=(("rsa2048", "authentication"), ("p384", "signature")))
    source, _ = open_source(token.module)
    p11 = only_token(source)
    auth, sign = cert_of(p11, "authentication"), cert_of(p11, "signature")
    digest = hashlib.sha384(b"qes").digest()
    verify(sign, p11.sign_digest(sign, "SHA384", digest, pin=token.user_pin), digest, algo=hashes.SHA384)
    assert p11.pin_verified(auth.pin)  # the user login stays ...
    assert not p11.pin_verified(sign.pin)  # ... but the signature key's login lasted one signature
    with pytest.raises(SecurityStatusNotSatisfied):
        p11.sign_digest(sign, "SHA384", digest)  # SoftHSM2 refuses C_Sign without the context-specific login
    verify(sign, p11.sign_digest(sign, "SHA384", digest, pin=token.user_pin), digest, algo=hashes.SHA384)


def test_a_wrong_pin_is_the_card_layers_wrong_pin_and_a_locked_one_is_blocked(softhsm_token, open_source,
                                                                              monkeypatch):
    token = softhsm_token(keys=(("p256", "authentication"),))
    module, env = token.pin_counter_module()  # SoftHSM2 never locks: the fixture's counter of 3 tries does
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    source, _ = open_source(module)
    p11 = only_token(source)
    cert = cert_of(p11, "authentication")
    with pytest.raises(WrongPinError) as first:
        p11.sign_digest(cert, "SHA256", DIGEST, pin="000000")
    assert first.value.tries_left is None  # CKF_USER_PIN_COUNT_LOW says no number
    with pytest.raises(WrongPinError) as second:
        p11.sign_digest(cert, "SHA256", DIGEST, pin="000000")
    assert second.value.tries_left == 1  # CKF_USER_PIN_FINAL_TRY
    assert p11.pin_status(cert.pin).tries_left == 1
    with pytest.raises(PinBlockedError):
        p11.sign_digest(cert, "SHA256", DIGEST, pin="000000")
    status = p11.pin_status(cert.pin)
    assert status.blocked and status.tries_left == 0
    with pytest.raises(PinBlockedError):  # even the right PIN: the token is locked
        p11.sign_digest(cert, "SHA256", DIGEST, pin=token.user_pin)


def test_a_protected_path_token_logs_in_on_the_reader_without_a_pin(softhsm_token, protected_auth_module,
                                                                   open_source):
    token = softhsm_token(keys=(("p256", "authentication"), ("p256", "signature")))
    pinpad = protected_auth_module(token)
    source, _ = open_source(pinpad.module)
    p11 = only_token(source)
    auth, sign = cert_of(p11, "authentication"), cert_of(p11, "signature")
    assert pin_on_reader(auth.pin) and pin_on_reader(sign.pin)
    verify(auth, p11.sign_digest(auth, "SHA256", DIGEST), DIGEST)
    verify(sign, p11.sign_digest(sign, "SHA256", DIGEST), DIGEST)
    logins = pinpad.logins()
    assert logins and all("pin=null" in line for line in logins), logins
    assert any("user=2" in line for line in logins)  # the signature key's context-specific login, on the reader
    pinpad.cancel()
    p11.logout()
    with pytest.raises(Exception) as cancelled:
        p11.sign_digest(auth, "SHA256", DIGEST)
    assert "cancel" in str(cancelled.value).lower()


def test_a_deleted_token_is_a_removed_card(softhsm_token, open_source):
    token = softhsm_token(keys=(("p256", "authentication"),))
    source, events = open_source(token.module)
    p11 = only_token(source)
    cert = cert_of(p11, "authentication")
    token.delete()
    source.refresh()
    assert [e.kind for e in events] == ["card-inserted", "card-removed"] and not source.state()
    with pytest.raises(CardRemovedError):
        p11.sign_digest(cert, "SHA256", DIGEST, pin=token.user_pin)


def test_a_module_that_does_not_load_is_named_and_the_others_work(softhsm_token, open_source, tmp_path):
    token = softhsm_token(keys=(("p256", "authentication"),))
    junk = tmp_path / "not-a-module.so"
    junk.write_bytes(b"\x7fELF nonsense")
    missing = tmp_path / "missing.so"
    source, _ = open_source(junk, missing, token.module)
    problems = source.problems()
    assert set(problems) == {str(junk), str(missing)}
    assert str(junk) in problems[str(junk)] and "no such file" in problems[str(missing)]
    assert source.modules()[str(token.module)] is None
    assert only_token(source).certificates()


def test_a_card_seen_by_a_module_and_by_our_driver_is_offered_once(softhsm_token, tmp_path, monkeypatch):
    """The virtual card and a token with its serial: the direct driver's view wins, unless pkcs11Preferred."""
    card = VirtualCard("fineid-v4", tmp_path / "state")
    serial = card.identity.serial
    token = softhsm_token(keys=(("p256", "authentication"),), label="twin")
    # softhsm2-util makes up its own serial: the token reports the card's instead (the rest is real)
    monkeypatch.setattr(Pkcs11Token, "serial", property(lambda self: serial))
    for preferred in (False, True):
        manager = CardManager(CardPolicy(pkcs11_modules=(str(token.module),), pkcs11_preferred=preferred,
                                         refresh_interval=0.2), VirtualReader(card))
        manager.start()
        try:
            assert manager.wait_settled(20)
            assert len(manager.readers()) == 2
            tokens = manager.tokens()
            assert len(tokens) == 1
            kept = tokens[0]
            assert isinstance(kept, Pkcs11Token) is preferred
            hidden = next(r for r in manager.readers() if r != kept.reader)
            assert manager.shadowed(hidden) == kept.reader
        finally:
            manager.stop()


# --- through the SCS service: the same PIN rules as for cards -------------------------------------------------

SITE = "https://a.example"


def scs_request(role: str, origin: str = SITE) -> dict:
    """A login nonce for the authentication key (D22 lets it sign "<origin>;nonce"), a document for the other."""
    import base64

    content = f"{origin};{'n' * 64}".encode() if role == "authentication" else b"a contract"
    usage = "digitalsignature" if role == "authentication" else "nonrepudiation"
    return {"content": base64.b64encode(content).decode(), "selector": {"keyusages": [usage]},
            "signatureType": "signature"}


class Person:
    """A test double for the user at the dialog: types ``pin`` where the dialog has a PIN field (none for a
    PIN entered on the reader), and records what each dialog showed."""

    shows_pin_status = True

    def __init__(self, pin: str):
        self.pin = pin
        self.shown: list = []

    async def ask(self, request):
        from digisign_web.dialog.protocol import DialogAnswer

        choice = request.choices[0]
        self.shown.append(choice)
        return DialogAnswer(0, self.pin if choice.needs_pin and not choice.pin_on_reader else None)

    async def ask_again(self, request, problem, tries_left):
        return None

    async def finish(self, request, outcome, text):
        return None


def scs_service(tmp_path: Path, module: Path, dialog) -> object:
    """The real service over the module, beside an empty virtual reader (no PC/SC in the unit lane)."""
    from digisign_web.scs.service import build_service
    from digisign_web.settings import Settings

    card = VirtualCard("fineid-v4", tmp_path / "state")
    card.remove()
    service = build_service(Settings(), dialog, VirtualReader(card),
                            policy=CardPolicy(pkcs11_modules=(str(module),), refresh_interval=0.2))
    service.manager.start()
    assert service.manager.wait_settled(20)
    return service


async def test_scs_reuses_the_user_pin_per_origin_but_never_an_always_authenticate_login(softhsm_token, tmp_path):
    from digisign_web.scs.errors import ScsFailure
    from digisign_web.scs.request import parse_request

    token = softhsm_token(keys=(("p256", "authentication"), ("p256", "signature")))
    person = Person(token.user_pin)
    service = scs_service(tmp_path, token.module, person)
    try:
        for role in ("authentication", "authentication", "signature", "signature", "authentication"):
            answer = await service.sign(parse_request(scs_request(role)), SITE)
            assert answer["status"] == "ok", answer
        # PIN1-like: asked once, then kept for this origin; PIN2-like: asked every time
        assert [c.needs_pin for c in person.shown] == [True, False, True, True, False]
        assert person.shown[0].reader.endswith("(PKCS#11: libsofthsm2.so)") and not person.shown[0].virtual
        person.pin = None  # another origin: the user login is not reused, so no PIN is no signature
        with pytest.raises(ScsFailure) as other:
            await service.sign(parse_request(scs_request("authentication", "https://b.example")), "https://b.example")
        assert other.value.code == 401 and person.shown[-1].needs_pin
    finally:
        service.manager.stop()


async def test_scs_with_a_pinpad_token_sends_no_pin_and_the_auto_dialog_approves(softhsm_token,
                                                                                 protected_auth_module, tmp_path):
    from digisign_web.dialog.auto import AutoDialog
    from digisign_web.scs.errors import ScsFailure
    from digisign_web.scs.request import parse_request

    token = softhsm_token(keys=(("p256", "authentication"), ("p256", "signature")))
    pinpad = protected_auth_module(token)
    person = Person("never typed")
    service = scs_service(tmp_path, pinpad.module, person)
    try:
        answer = await service.sign(parse_request(scs_request("signature")), SITE)
        assert answer["status"] == "ok", answer
        assert person.shown[0].pin_on_reader and person.shown[0].needs_pin
        logins = pinpad.logins()
        assert logins and all("pin=null" in line for line in logins), logins
        service.dialog = AutoDialog("wrong", "wrong", allow_real_cards=True)  # its PINs must not be used
        before = len(pinpad.logins())
        answer = await service.sign(parse_request(scs_request("signature")), SITE)
        assert answer["status"] == "ok", answer
        assert all("pin=null" in line for line in pinpad.logins()[before:])
        pinpad.cancel()  # Cancel on the reader's keypad: the user's answer, a 401 as the dialog's cancel
        with pytest.raises(ScsFailure) as cancelled:
            await service.sign(parse_request(scs_request("signature")), SITE)
        assert cancelled.value.code == 401 and "reader" in cancelled.value.text
    finally:
        service.manager.stop()


# --- the dialogs for a PIN entered on the reader (no SoftHSM2: unit lane) -------------------------------------


def pinpad_choice(role: str = "signature") -> object:
    from digisign_web.dialog.protocol import Choice

    return Choice(label="k", subject="CN=Tokeni Testi", issuer="CN=CA", role=role, key="EC secp256r1",
                  not_after="2031-01-01", expiring_soon=False, pin_label="User PIN", tries_left=None, blocked=False,
                  needs_pin=True, reader="SoftHSM slot (PKCS#11: x.so)", virtual=False, pin_on_reader=True)


def dialog_request(choice) -> object:
    from digisign_web.dialog.protocol import DialogRequest

    return DialogRequest("https://eservice.example", None, "cms", "data", "SHA256", 3, "ab" * 32, (choice,))


async def test_the_auto_dialog_approves_a_pinpad_token_without_a_pin() -> None:
    from digisign_web.dialog.auto import AutoDialog

    answer = await AutoDialog("1234", "123456", allow_real_cards=True).ask(dialog_request(pinpad_choice()))
    assert (answer.choice, answer.pin) == (0, None)


async def test_the_terminal_dialog_asks_no_pin_for_a_pinpad_token() -> None:
    import asyncio
    import os
    import threading
    import time

    from digisign_web.dialog.terminal import TerminalDialog

    master, slave = os.openpty()
    os.set_blocking(master, False)
    screen = bytearray()

    def person() -> None:
        deadline = time.monotonic() + 10
        for prompt, line in ((b"to cancel: ", b"1\n"), (b"[y/N] ", b"y\n")):
            while prompt not in screen and time.monotonic() < deadline:
                try:
                    screen.extend(os.read(master, 4096))
                except BlockingIOError:
                    time.sleep(0.01)
            os.write(master, line)

    typist = threading.Thread(target=person)
    typist.start()
    try:
        answer = await asyncio.wait_for(TerminalDialog(os.ttyname(slave)).ask(dialog_request(pinpad_choice())), 10)
    finally:
        typist.join()
        os.close(slave)
        os.close(master)
    assert (answer.choice, answer.pin) == (0, None)
    assert b"enter User PIN on the reader" in bytes(screen)


def test_the_card_state_follows_pkcs11_tokens_and_summarises_a_card_seen_twice_once(softhsm_token, tmp_path,
                                                                                     monkeypatch):
    """/version's memory: the token's summary comes with its insertion event, one summary for a card both
    drivers see, and the token's removal (deleted slot, at the next poll) takes its summary away."""
    from digisign_web.scs.card_state import CardState
    from digisign_web.scs.version import version_payload
    from tests.support.wait import wait_until

    card = VirtualCard("fineid-v4", tmp_path / "state")
    token = softhsm_token(keys=(("rsa2048", "authentication"),))
    manager = CardManager(CardPolicy(pkcs11_modules=(str(token.module),), refresh_interval=0.2), VirtualReader(card))
    state = CardState(manager)
    manager.start()
    try:
        state.refresh(VirtualReader(card).name)  # as the app does for the cards present at its start
        wait_until(lambda: len(state.summaries()) == 2, 20, "both cards summarised")
        assert set(version_payload(state.summaries())["signatureAlgorithms"].split(",")) == {"ECDSA", "RSA"}
        p11_reader = next(r for r in manager.readers() if "PKCS#11" in r)
        token.delete()
        wait_until(lambda: p11_reader not in manager.readers(), 10, "the deleted token's slot gone")
        wait_until(lambda: len(state.summaries()) == 1, 10, "its summary gone")
        assert version_payload(state.summaries())["signatureAlgorithms"] == "ECDSA"  # the virtual card's P-384
    finally:
        manager.stop()
    # the same card twice: the token reports the virtual card's serial; one summary, our driver's
    token2 = softhsm_token(keys=(("p256", "authentication"),), label="twin")
    monkeypatch.setattr(Pkcs11Token, "serial", property(lambda self: card.identity.serial))
    manager = CardManager(CardPolicy(pkcs11_modules=(str(token2.module),), refresh_interval=0.2), VirtualReader(card))
    state = CardState(manager)
    manager.start()
    try:
        assert manager.wait_settled(20)
        wait_until(lambda: len(manager.readers()) == 2, 10, "both readers")
        for reader in manager.readers():  # what the insertion events start, run here to the end
            state.refresh(reader)
        assert [s.reader for s in state.summaries()] == [VirtualReader(card).name]
    finally:
        manager.stop()


def test_serials_match_as_modules_write_them() -> None:
    from card.manager import _same_serial

    assert _same_serial("FI890377965795942", "FI890377965795942") == "equal"
    # OpenSC: the hex of the FINEID serial's last 8 characters (F39): likely the same card, confirmed by certificates
    assert _same_serial("FI890377965795942", "3635373935393432") == "partial"
    assert _same_serial("FI890377965795942", "FI890377965795943") is None
    assert _same_serial("", "") is None and _same_serial("1234", "01234") is None


def test_the_user_pin_changes_through_the_module_and_no_puk_is_offered(softhsm_token, open_source):
    """What the pin command and the My card page ask of a token: PIN change with C_SetPIN; no PUK."""
    from card import UnsupportedCardError
    from digisign_web.scs.pin_management import card_pins

    token = softhsm_token(keys=(("p256", "authentication"),))
    source, _ = open_source(token.module)
    p11 = only_token(source)
    cert = cert_of(p11, "authentication")
    assert set(card_pins(p11).pins) == {"pin1"} and p11.puk() is None
    with pytest.raises(WrongPinError):
        p11.change_pin(cert.pin, "000000", "654321")
    p11.change_pin(cert.pin, token.user_pin, "654321")
    with pytest.raises(WrongPinError):
        p11.sign_digest(cert, "SHA256", DIGEST, pin=token.user_pin)
    verify(cert, p11.sign_digest(cert, "SHA256", DIGEST, pin="654321"), DIGEST)
    with pytest.raises(UnsupportedCardError):
        p11.unblock_pin(cert.pin, "12345678", "111111")
