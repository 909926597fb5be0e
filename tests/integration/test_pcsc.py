"""Through the real stack: pyscard -> pcscd -> vsmartcard vpcd -> our virtual card in another process.

Covers insertion and removal events, listing, the PIN life cycle, signatures verified with
cryptography against the certificate, T=0 chaining, and the card settings (excludeReader).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from card import (
    CardManager,
    CardPolicy,
    CardRemovedError,
    PinBlockedError,
    ReaderEvent,
    ReaderMonitor,
    Token,
    WrongPinError,
    list_readers,
)
from card.pcsc import PcscTransport
from digisign_web.wildcards import matcher
from tests.support.cards import PIN1, PIN2, PUK, by_role, verify
from tests.support.cli import run_cli
from tests.support.wait import wait_until

pytestmark = pytest.mark.pcscd


@pytest.fixture(params=["fineid-v4", "fineid-v3"])
def pcsc_token(request: pytest.FixtureRequest, vpcd_card):
    card = vpcd_card(request.param)
    transport = PcscTransport(card.reader)
    yield Token.open(transport)
    transport.close()


def test_readers_are_listed(pcscd: None) -> None:
    readers = list_readers()
    assert "Virtual PCD 00 00" in readers and "Virtual PCD 00 01" in readers
    assert "Virtual PCD 00 00" not in list_readers(exclude=matcher("*PCD*00"))


def test_token_over_pcsc_is_t0_and_reads(pcsc_token: Token) -> None:
    assert pcsc_token.transport.t0  # the FINEID ATR has no TD1: pcscd must pick T=0
    assert pcsc_token.profile.name in ("fineid-v4", "fineid-v3")
    assert [c.role for c in pcsc_token.certificates()] == ["authentication", "signature", "ca", "ca"]
    # T=0 chaining really happened: data came back through GET RESPONSE (61xx), not in one answer.
    assert pcsc_token.transport.stats.by_command["GET RESPONSE"] > 0


def test_sign_and_verify_over_pcsc(pcsc_token: Token) -> None:
    for role, pin, hash_name in (("signature", PIN2, "SHA256"), ("signature", PIN2, "SHA512"),
                                 ("authentication", PIN1, "SHA384")):
        cert = by_role(pcsc_token, role)
        digest = hashlib.new(hash_name.lower(), b"over pcscd").digest()
        stats = pcsc_token.transport.stats
        stats.reset()
        signature = pcsc_token.sign_digest(cert, hash_name, digest, pin=pin)
        verify(cert, hash_name, digest, signature)
        # A warm signature: VERIFY, MSE, PSO:HASH, PSO:CDS (+ GET RESPONSE only for a 61xx answer).
        assert stats.apdus == 4, dict(stats.by_command)


def test_pin_lifecycle_over_pcsc(pcsc_token: Token) -> None:
    pin1 = by_role(pcsc_token, "authentication").pin
    with pytest.raises(WrongPinError) as info:
        pcsc_token.verify_pin(pin1, "9999")
    assert info.value.tries_left == 4
    assert pcsc_token.pin_status(pin1).tries_left == 4
    for _ in range(3):
        with pytest.raises(WrongPinError):
            pcsc_token.verify_pin(pin1, "9999")
    with pytest.raises(PinBlockedError):
        pcsc_token.verify_pin(pin1, "9999")
    assert pcsc_token.pin_status(pin1).blocked
    pcsc_token.unblock_pin(pin1, PUK, "4321")
    assert pcsc_token.pin_status(pin1).tries_left == 5
    pcsc_token.verify_pin(pin1, "4321")


def test_insert_and_remove_events(vpcd_card) -> None:
    events: list[ReaderEvent] = []
    lock = threading.Lock()

    def record(event: ReaderEvent) -> None:
        with lock:
            events.append(event)

    monitor = ReaderMonitor(record, refresh_interval=5)
    monitor.start()
    try:
        assert monitor.wait_settled(5)
        card = vpcd_card("fineid-v4")
        assert monitor.wait_for(lambda s: s.get(card.reader) == card.atr, 5)
        card.toggle()  # SIGUSR1: out of the reader, process still alive
        assert monitor.wait_for(lambda s: s.get(card.reader) is None, 5)
        card.toggle()
        assert monitor.wait_for(lambda s: s.get(card.reader) == card.atr, 5)
        card.stop()  # SIGTERM: the process exits, pcscd sees a removal
        assert monitor.wait_for(lambda s: s.get(card.reader) is None, 5)
    finally:
        monitor.stop()
    kinds = [(e.kind, e.reader) for e in events if e.reader == "Virtual PCD 00 00"]
    assert kinds[:1] == [("reader-added", "Virtual PCD 00 00")]
    assert [k for k, _ in kinds[1:]] == ["card-inserted", "card-removed", "card-inserted", "card-removed"]
    inserted = [e for e in events if e.kind == "card-inserted"]
    assert all(e.atr == bytes.fromhex("3B7F96000080 31B865B085050011122460829000".replace(" ", ""))
               for e in inserted)


def test_removal_invalidates_the_token(vpcd_card) -> None:
    card = vpcd_card("fineid-v4")
    manager = CardManager(CardPolicy(refresh_interval=5))
    manager.start()
    try:
        assert manager.wait_for(lambda s: s.get(card.reader) == card.atr, 5)
        token = manager.token(card.reader)
        assert token.certificates()
        card.toggle()
        assert manager.wait_for(lambda s: s.get(card.reader) is None, 5)
        assert token.removed  # the manager dropped it on the event
        with pytest.raises(CardRemovedError):
            token.certificates()
        card.toggle()
        assert manager.wait_for(lambda s: s.get(card.reader) == card.atr, 5)
        fresh = manager.token(card.reader)
        assert fresh is not token and fresh.certificates()
    finally:
        manager.stop()


def test_transport_reports_removal_mid_session(vpcd_card) -> None:
    card = vpcd_card("fineid-v3")
    transport = PcscTransport(card.reader)
    try:
        token = Token.open(transport)
        token.certificates()
        card.toggle()
        wait_until(lambda: _removed(token), 5, "the transport to notice the removal")
        assert token.removed
    finally:
        transport.close()


def _removed(token: Token) -> bool:
    try:
        token.pin_status(token.pin(0x11))
    except CardRemovedError:
        return True
    return False


def test_list_cli_both_slots(vpcd_card) -> None:
    vpcd_card("fineid-v4", port=35963)
    vpcd_card("fineid-v3", port=35964)
    result = run_cli("list", "--json", "--stats")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    profiles = {t["reader"]: t["profile"] for t in data["tokens"]}
    assert profiles == {"Virtual PCD 00 00": "fineid-v4", "Virtual PCD 00 01": "fineid-v3"}
    for token in data["tokens"]:
        signature = next(c for c in token["certificates"] if c["role"] == "signature")
        assert signature["pin"]["reference"] == 0x82 and signature["pin"]["tries_left"] == 5
        assert signature["key_usage"] == ["non_repudiation"]
    text = run_cli("list", "--exclude-reader", "*PCD*00")
    assert "Virtual PCD 00 00" not in text.stdout and "fineid-v3" in text.stdout


def test_unknown_card_and_label_filter_over_pcsc(vpcd_card) -> None:
    vpcd_card("fineid-v4", atr="3B 88 80 01 00 00 00 00 00 00 00 00", label="ORGCARD")
    generic = json.loads(run_cli("list", "--json").stdout)
    assert [t["profile"] for t in generic["tokens"]] == ["generic-pkcs15"]
    refused = json.loads(run_cli("list", "--json", "--allow-unknown-cards", "0").stdout)
    assert refused["tokens"] == []
    assert "allowUnknownCards" in refused["readers"][0]["problem"]
    labelled = json.loads(run_cli("list", "--json", "--valid-token-info-label", "FINEID*").stdout)
    assert labelled["tokens"] == []
    assert "validTokenInfoLabel" in labelled["readers"][0]["problem"]


def test_monitor_stops_at_once_right_after_its_first_picture(vpcd_card) -> None:
    """stop() right after the first picture used to land between the thread's stop check and its next
    SCardGetStatusChange: the cancel was lost and stop() waited the whole refresh interval (5 s). It cancels
    until the thread is gone now."""
    vpcd_card("fineid-v4")
    for _ in range(8):
        monitor = ReaderMonitor(refresh_interval=5)
        monitor.start()
        assert monitor.wait_settled(10)
        started = time.monotonic()
        monitor.stop()
        assert time.monotonic() - started < 1.0
