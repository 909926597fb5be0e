"""A broken or malicious card: whatever it answers, the token raises a typed CardError, never a crash
(IndexError, KeyError, ValueError from a parser...) and never a hang."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from card import CardError, Token
from card.transport import Transport
from card.virtual import VirtualCard
from card.virtual.source import InProcessTransport


class ScriptedCard(Transport):
    """Answers every APDU from a list of random byte strings (a test double for a hostile card)."""

    def __init__(self, atr: bytes, answers: list[bytes]):
        super().__init__()
        self.atr = atr
        self.t0 = True
        self.reader = "hostile"
        self._answers = list(answers)

    def _exchange(self, raw: bytes) -> bytes:
        return self._answers.pop(0) if self._answers else b"\x6a\x82"


ATRS = st.sampled_from([
    bytes.fromhex("3B7F96000080 31B865B085050011122460829000".replace(" ", "")),  # FINEID v4
    bytes.fromhex("3B8880010000000000000000"),  # unknown: generic PKCS#15 path
])
ANSWER = st.one_of(
    st.binary(max_size=64),
    st.sampled_from([b"\x90\x00", b"\x61\x10", b"\x61\x00", b"\x6c\x05", b"\x62\x82", b"\x63\xc1"]),
    st.builds(lambda body: body + b"\x90\x00", st.binary(max_size=300)),
)


def exercise(token: Token) -> None:
    for cert in token.certificates():
        if cert.pin is not None:
            token.pin_status(cert.pin)
        if cert.key is not None:
            token.sign_digest(cert, "SHA256", hashlib.sha256(b"x").digest(), pin="123456")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ATRS, st.lists(ANSWER, max_size=40))
def test_random_answers_raise_only_card_errors(atr: bytes, answers: list[bytes]) -> None:
    try:
        exercise(Token.open(ScriptedCard(atr, answers)))
    except CardError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=1, max_value=50), st.binary(min_size=2, max_size=2),
       st.integers(min_value=0, max_value=2000), st.integers(min_value=1, max_value=255), st.booleans())
def test_a_real_session_with_one_corrupted_answer(state_dir, index: int, sw: bytes, pos: int,
                                                   xor: int, flip_data: bool) -> None:
    # A real virtual card whose n-th answer has a byte of its data flipped, or its status word
    # replaced: the code after it must cope or raise a CardError.
    card = VirtualCard("fineid-v4", state_dir)
    original = card.process
    counter = {"n": 0}

    def corrupted(raw: bytes) -> bytes:
        counter["n"] += 1
        answer = original(raw)
        if counter["n"] != index:
            return answer
        if flip_data and len(answer) > 2:
            data = bytearray(answer[:-2])
            data[pos % len(data)] ^= xor
            return bytes(data) + answer[-2:]
        return answer[:-2] + sw

    card.process = corrupted  # type: ignore[method-assign]
    try:
        exercise(Token.open(InProcessTransport(card)))
    except CardError:
        pass
