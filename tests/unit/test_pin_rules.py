"""PIN rules (every rule, every override) and PIN management on the in-process virtual card (D46, D47).

Fast: the rules are pure functions, and the management tests use the in-process virtual card (no pcscd)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from card import CardManager, CardPolicy, Token
from card.pkcs15 import PinInfo
from card.virtual import VirtualCard, VirtualReader
from card.virtual.source import InProcessTransport
from digisign_web.scs.card_state import CardState
from digisign_web.scs.pin_management import PinManagement, PinOperationError
from digisign_web.scs.pin_rules import MESSAGES, PinPolicy, card_format, check, describe, new_pin_policy
from digisign_web.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PIN2 = PinInfo("PIN2 (signature PIN)", b"\x02", 0x82, 6, 12, 12)  # ascii-numeric, 6..12
READER = "digisign-web virtual reader"
UTF8 = PinInfo("PIN", b"\x01", 0x01, 4, 8, 8, pin_type="utf8")


def codes(policy: PinPolicy, value: str, again: str | None = None) -> list[str]:
    return [r.code for r in check(policy, value, "new", again)]


def settings(**values: object) -> Settings:
    return dataclasses.replace(Settings(), **values)


# -- the card's format ----------------------------------------------------------------------------


def test_card_format_is_length_and_digits_for_a_numeric_pin() -> None:
    policy = card_format(PIN2)
    assert policy == PinPolicy(6, 12, True, 0)
    assert codes(policy, "123456") == []
    assert codes(policy, "12345") == ["too-short"]
    assert codes(policy, "1234567890123") == ["too-long"]
    assert codes(policy, "12345a") == ["not-digits"]
    assert codes(policy, "12345\u00e9") == ["bad-characters", "not-digits"]


def test_a_utf8_pin_takes_letters_but_only_plain_ascii() -> None:
    policy = card_format(UTF8)
    assert not policy.digits_only
    assert codes(policy, "abcD") == []
    assert codes(policy, "ab\tc") == ["bad-characters"]
    assert codes(policy, "ab\u00e4c") == ["bad-characters"]


def test_the_current_pin_is_checked_against_the_card_only() -> None:
    """A complexity rule applies to new PINs: an old 111111 must still be accepted as the current PIN."""
    strict = settings(pin_complexity_check=31, pin_min_length=8)
    assert codes(card_format(PIN2), "111111") == []
    assert set(codes(new_pin_policy(PIN2, strict), "111111")) >= {"too-short", "repeated"}


# -- the overrides --------------------------------------------------------------------------------


def test_pin_min_length_overrides_the_cards_minimum_upwards_only() -> None:
    assert new_pin_policy(PIN2, settings(pin_min_length=8)).min_length == 8
    assert codes(new_pin_policy(PIN2, settings(pin_min_length=8)), "1234567") == ["too-short"]
    assert new_pin_policy(PIN2, settings(pin_min_length=0)).min_length == 6  # 0: the card's
    assert new_pin_policy(PIN2, settings(pin_min_length=4)).min_length == 6  # the card refuses shorter anyway


def test_pin_min_length_above_the_cards_maximum_is_named_not_silently_unsatisfiable() -> None:
    broken = check(new_pin_policy(PIN2, settings(pin_min_length=14)), "123456")
    assert [r.code for r in broken] == ["impossible-length"]
    assert broken[0].text == "no PIN can be set: pinMinLength (14) is more than the card allows (12)"


def test_pin_numeric_values_only_forces_digits_on_a_pin_that_allows_letters() -> None:
    assert codes(new_pin_policy(UTF8), "abcd") == []
    assert codes(new_pin_policy(UTF8, settings(pin_numeric_values_only=True)), "abcd") == ["not-digits"]


def test_pin_ignore_pin_type_check_drops_the_type_rules_including_numeric_only() -> None:
    ignore = settings(pin_ignore_pin_type_check=True, pin_numeric_values_only=True)
    assert codes(new_pin_policy(PIN2, ignore), "abcdef") == []
    assert codes(new_pin_policy(UTF8, ignore), "abcd") == []
    # ...but not the length, and not plain ASCII
    assert codes(new_pin_policy(PIN2, ignore), "abc") == ["too-short"]
    assert codes(new_pin_policy(PIN2, ignore), "abcde\u00e9") == ["bad-characters"]


# -- pinComplexityCheck, bit by bit ---------------------------------------------------------------


@pytest.mark.parametrize(("bit", "bad", "good", "code"), [
    (1, "111111", "111112", "repeated"),
    (2, "123456", "123457", "sequence"),
    (2, "987654", "987653", "sequence"),
    (4, "191919", "135797", "large-steps"),
    (8, "abc123", "612345", "not-digits"),
    (16, "abcdeF", "abcD12", "needs-mixed"),
])
def test_each_complexity_bit(bit: int, bad: str, good: str, code: str) -> None:
    policy = new_pin_policy(UTF8 if bit == 16 else PIN2, settings(pin_complexity_check=bit,
                                                                 pin_ignore_pin_type_check=bit in (8, 16)))
    if bit == 16:
        policy = dataclasses.replace(policy, max_length=12)
    assert codes(policy, bad) == [code]
    assert codes(policy, good) == []
    # Off, the same PIN passes
    assert code not in codes(dataclasses.replace(policy, complexity=0), bad)


def test_average_step_is_exact_at_the_bound() -> None:
    """Bit 2: the mean of |neighbour differences| <= 4, computed in integers (no rounding)."""
    policy = PinPolicy(4, 12, True, 4)
    assert codes(policy, "0404") == []  # 4, 4, 4: exactly 4
    assert codes(policy, "0405") == ["large-steps"]  # 4, 4, 5: 13/3 > 4
    assert codes(policy, "0900") == ["large-steps"]  # 9, 9, 0: 6
    assert codes(policy, "1357") == []


def test_sequences_and_repeats_are_whole_pin_patterns() -> None:
    policy = PinPolicy(4, 12, True, 3)
    assert codes(policy, "1111") == ["repeated"]
    assert codes(policy, "11112") == []  # one digit repeated inside a PIN is allowed
    assert codes(policy, "12345") == ["sequence"]
    assert codes(policy, "12346") == []
    assert codes(policy, "7890") == []  # no wrap-around from 9 to 0


def test_every_rule_at_once_and_the_repeated_entry() -> None:
    policy = PinPolicy(6, 12, True, 31)
    assert codes(policy, "aaa", again="aab") == ["too-short", "not-digits", "repeated", "needs-mixed", "mismatch"]
    assert check(policy, "135797", again="135798")[-1].field == "again"


def test_describe() -> None:
    assert describe(card_format(PIN2)) == "6-12 digits"
    assert describe(card_format(UTF8)) == "4-8 characters"


def test_the_pages_english_messages_are_the_servers() -> None:
    """static/i18n.js carries each rule as "card.rule.<code>" in en, fi and sv; en is exactly MESSAGES."""
    text = (ROOT / "static" / "i18n.js").read_text(encoding="utf-8")
    blocks = re.split(r"\n    (en|fi|sv): \{", text)
    tables = dict(zip(blocks[1::2], blocks[2::2], strict=True))
    for lang, body in tables.items():
        found = dict(re.findall(r'"card\.rule\.([a-z-]+)": (".*?"),\n', body))
        assert set(found) == set(MESSAGES), lang
        if lang == "en":
            assert {code: json.loads(value) for code, value in found.items()} == MESSAGES


# -- PIN management on the in-process virtual card -------------------------------------------------


@pytest.fixture
def card(state_dir: Path) -> VirtualCard:
    return VirtualCard("fineid-v4", state_dir)


@pytest.fixture
def vtoken(card: VirtualCard) -> Token:
    return Token.open(InProcessTransport(card))


def pin_apdus(token: Token) -> int:
    by = token.transport.stats.by_command
    return by["VERIFY"] + by["CHANGE REFERENCE DATA"] + by["RESET RETRY COUNTER"]


def test_status_reads_all_three_counters_without_spending_a_try(vtoken: Token, card: VirtualCard) -> None:
    counters = PinManagement().status(vtoken)
    assert [(c.id, c.tries_left, c.blocked) for c in counters] == [("pin1", 5, False), ("pin2", 5, False),
                                                                   ("puk", 5, False)]
    assert pin_apdus(vtoken) == 0


def test_change_then_the_new_pin_signs(vtoken: Token, card: VirtualCard) -> None:
    PinManagement().change(vtoken, "pin2", "123456", "246810", "246810")
    assert card.pins[0x82].value == "246810"
    assert not card.pins[0x82].verified  # logged out after the change
    signature = vtoken.certificates()[1]
    assert vtoken.sign_digest(signature, "SHA256", b"\x00" * 32, pin="246810")


def test_a_broken_rule_sends_no_pin_apdu(vtoken: Token, card: VirtualCard) -> None:
    manager = PinManagement(settings(pin_complexity_check=1))
    manager.status(vtoken)
    before = dict(vtoken.transport.stats.by_command)
    with pytest.raises(PinOperationError) as caught:
        manager.change(vtoken, "pin2", "123456", "111111", "111111")
    assert caught.value.code == "rules" and [r.code for r in caught.value.rules] == ["repeated"]
    assert str(caught.value) == "new PIN2: must not be one digit repeated (like 1111)"
    assert dict(vtoken.transport.stats.by_command) == before  # not even a status read
    assert card.pins[0x82].value == "123456" and card.pins[0x82].tries_left == 5


def test_a_wrong_pin_is_tried_once_and_blocking_then_unblocking(card: VirtualCard) -> None:
    cards = CardManager(CardPolicy(), VirtualReader(card))
    state = CardState(cards)  # the server's: what the signing dialog shows comes from here
    cards.start()
    try:
        state.refresh(READER)
        vtoken = cards.token(READER)
        _block_and_unblock(vtoken, card, state)
    finally:
        cards.stop()


def _block_and_unblock(vtoken: Token, card: VirtualCard, state: CardState) -> None:
    label = "PIN2 (signature PIN)"
    assert state.known_pin(READER, label) == (5, False)
    manager = PinManagement(state=state)
    for left in (4, 3, 2, 1):
        with pytest.raises(PinOperationError) as caught:
            manager.change(vtoken, "pin2", "000000", "135797", "135797")
        assert (caught.value.code, caught.value.tries_left) == ("wrong-pin", left)
        assert f"{left} tr" in str(caught.value)
        assert card.pins[0x82].tries_left == left  # one try per call: never retried
    assert vtoken.transport.stats.by_command["CHANGE REFERENCE DATA"] == 4
    with pytest.raises(PinOperationError) as caught:
        manager.change(vtoken, "pin2", "000000", "135797", "135797")
    assert caught.value.code == "blocked" and "now blocked" in str(caught.value)
    assert state.known_pin(READER, label) == (0, True)  # the signing dialog now shows it blocked
    with pytest.raises(PinOperationError) as caught:  # blocked: refused before the card sees a PIN
        manager.change(vtoken, "pin2", "123456", "135797", "135797")
    assert caught.value.code == "blocked"
    assert vtoken.transport.stats.by_command["CHANGE REFERENCE DATA"] == 5
    with pytest.raises(PinOperationError) as caught:
        manager.unblock(vtoken, "pin2", "87654321", "135797", "135797")
    assert (caught.value.code, caught.value.tries_left) == ("wrong-puk", 4)
    counters = manager.unblock(vtoken, "pin2", "12345678", "135797", "135797")
    assert {c.id: (c.tries_left, c.blocked) for c in counters} == {"pin1": (5, False), "pin2": (5, False),
                                                                  "puk": (5, False)}
    assert state.known_pin(READER, label) == (5, False)
    assert card.pins[0x82].value == "135797"


def test_disable_pin_unblocking_refuses_before_the_card(vtoken: Token, card: VirtualCard) -> None:
    with pytest.raises(PinOperationError) as caught:
        PinManagement(settings(disable_pin_unblocking=True)).unblock(vtoken, "pin2", "12345678", "135797")
    assert caught.value.code == "unblocking-disabled" and "disablePinUnblocking" in str(caught.value)
    assert vtoken.transport.stats.by_command["RESET RETRY COUNTER"] == 0


def test_the_old_pin_and_the_puk_are_checked_against_the_cards_format(vtoken: Token) -> None:
    with pytest.raises(PinOperationError) as caught:
        PinManagement().unblock(vtoken, "pin1", "1234", "9876", "9876")
    assert [(r.field, r.code) for r in caught.value.rules] == [("puk", "too-short")]
    with pytest.raises(PinOperationError) as caught:
        PinManagement().change(vtoken, "pin1", "12a4", "9876", "9875")
    assert [(r.field, r.code) for r in caught.value.rules] == [("old", "not-digits"), ("again", "mismatch")]
    assert pin_apdus(vtoken) == 0


def test_errors_never_carry_the_pin(vtoken: Token) -> None:
    for call in (lambda m: m.change(vtoken, "pin2", "000000", "975319", "975319"),
                 lambda m: m.change(vtoken, "pin2", "000000", "1111", "1111"),
                 lambda m: m.unblock(vtoken, "pin2", "99999999", "975319", "975319")):
        with pytest.raises(PinOperationError) as caught:
            call(PinManagement(settings(pin_complexity_check=1)))
        text = json.dumps(caught.value.as_json())
        assert not any(secret in text for secret in ("000000", "975319", "99999999"))


# -- the terminal dialog names the command for a blocked PIN ---------------------------------------


async def test_the_terminal_dialog_names_pin_unblock_for_a_blocked_pin() -> None:
    import asyncio
    import os
    import threading
    import time

    from digisign_web.dialog.protocol import Choice, DialogRequest
    from digisign_web.dialog.terminal import TerminalDialog

    blocked = Choice(label="Signature certificate", subject="CN=SPECIMEN", issuer="CN=CA", role="signature",
                     key="EC secp384r1", not_after="2031-01-01", expiring_soon=False, pin_label="PIN2",
                     tries_left=0, blocked=True, needs_pin=True, reader="r", virtual=True)
    request = DialogRequest("https://eservice.example", None, "cms", "data", "SHA256", 1, "ab" * 32, (blocked,))
    master, slave = os.openpty()
    os.set_blocking(master, False)
    seen: list[bytes] = []
    done = threading.Event()

    def typist() -> None:
        deadline = time.monotonic() + 10
        while b"Enter to cancel: " not in b"".join(seen) and time.monotonic() < deadline:
            try:
                seen.append(os.read(master, 4096))
            except BlockingIOError:
                time.sleep(0.02)
        os.write(master, b"1\n")
        done.wait(10)
        try:
            while chunk := os.read(master, 4096):
                seen.append(chunk)
        except OSError:
            pass

    thread = threading.Thread(target=typist)
    thread.start()
    try:
        answer = await asyncio.wait_for(TerminalDialog(os.ttyname(slave)).ask(request), 10)
    finally:
        done.set()
        thread.join()
        os.close(slave)
        os.close(master)
    screen = b"".join(seen).decode(errors="replace")
    assert "BLOCKED (unblock it with the PUK: digisign-web pin unblock --pin2)" in screen
    assert "PIN2 is blocked: unblock it with the PUK (digisign-web pin unblock --pin2, or the My card page)" in screen
    assert (answer.choice, answer.pin) == (0, None)  # no PIN asked: the service answers "blocked"
