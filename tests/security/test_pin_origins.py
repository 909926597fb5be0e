"""PIN sessions are per origin (D27, issue 10 item 4): PIN1 verified for site A is never a one-click
authentication signature for site B.

The attack: the user signs in at A (PIN1 typed, the card keeps it verified); B then asks for an
authentication signature and, before the fix, got one with a single click and no PIN. Counted at the card
(VERIFY APDUs of the in-process virtual card) through the signing service, and replayed in Chromium against
a real ``serve`` process with the web dialog.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from card import CardManager
from card.virtual import VirtualCard, VirtualReader
from digisign_web.dialog.protocol import Dialog, DialogAnswer, DialogRequest
from digisign_web.scs.errors import ScsFailure
from digisign_web.scs.request import parse_request
from digisign_web.scs.service import SigningService, build_service
from digisign_web.settings import Settings
from tests.support.servers import WebServer
from tests.support.wait import async_wait_until

SITE_A = "https://a.example"
SITE_B = "https://b.example"
PIN1_REFERENCE = 0x11  # the virtual FINEID card's PIN1
PINS = {"authentication": "1234", "signature": "123456"}


def authentication_request(origin: str) -> dict[str, Any]:
    """What a login page sends: its origin and a nonce, for the authentication key (PIN1)."""
    content = f"{origin};{'n' * 64}".encode()
    return {"content": base64.b64encode(content).decode(), "selector": {"keyusages": ["digitalsignature"]}}


class User(Dialog):
    """A test double for the person at the dialog: types the PIN when the dialog asks for it, or, as
    ``one_click``, just presses Sign. Records whether each dialog asked for a PIN."""

    def __init__(self) -> None:
        self.one_click = False
        self.asked: list[bool] = []

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        choice = request.choices[0]
        self.asked.append(choice.needs_pin)
        typed = None if self.one_click or not choice.needs_pin else PINS[choice.role]
        return DialogAnswer(0, typed)


@dataclasses.dataclass
class Service:
    card: VirtualCard
    reader: VirtualReader
    manager: CardManager
    user: User
    service: SigningService

    async def sign(self, origin: str, body: dict[str, Any] | None = None) -> tuple[dict[str, Any], int]:
        """One request; the answer and the VERIFY APDUs (real PIN checks, not status probes) it cost."""
        before = self.card.stats.by_command["VERIFY"]
        request = body or authentication_request(origin)
        answer = await self.service.sign(parse_request(request), origin)
        return answer, self.card.stats.by_command["VERIFY"] - before


@pytest.fixture
def make_service(state_dir: Path):
    def make(**overrides: Any) -> Service:
        card = VirtualCard("fineid-v4", state_dir)
        reader = VirtualReader(card)
        user = User()
        service = build_service(dataclasses.replace(Settings(), **overrides), user, reader)
        service.manager.start()
        service.state.refresh(reader.name)
        return Service(card, reader, service.manager, user, service)

    return make


async def test_pin1_is_verified_again_whenever_the_origin_changes(make_service) -> None:
    s = make_service()
    verifies = []
    for origin in (SITE_A, SITE_A, SITE_B, SITE_B, SITE_A, "https://a.example:8443"):
        answer, count = await s.sign(origin)
        assert answer["status"] == "ok", answer
        verifies.append(count)
    # A types PIN1 once and keeps it; B must type it again, and so must A after B, and A's other port.
    assert verifies == [1, 0, 1, 0, 1, 1]
    assert s.user.asked == [True, False, True, False, True, True]


async def test_whether_the_card_still_holds_pin1_is_asked_off_the_event_loop(make_service) -> None:
    """Reusing PIN1 for its origin needs one empty VERIFY ("still verified?"). From the warm path on the event
    loop that APDU went out there, without the card lock; it is asked in the worker-thread hop now."""
    s = make_service()
    assert (await s.sign(SITE_A))[0]["status"] == "ok"
    loop_thread = threading.get_ident()
    probes: list[bool] = []
    process = s.card.process

    def recording(raw: bytes) -> bytes:
        if raw[1:2] == b"\x20" and len(raw) <= 5:  # the empty VERIFY
            probes.append(threading.get_ident() == loop_thread)
        return process(raw)

    s.card.process = recording  # type: ignore[method-assign]
    answer, count = await s.sign(SITE_A)
    assert answer["status"] == "ok" and count == 0 and s.user.asked == [True, False]  # PIN1 reused
    assert probes and not any(probes)


async def test_one_click_from_another_origin_gets_no_signature(make_service) -> None:
    s = make_service()
    assert (await s.sign(SITE_A))[0]["status"] == "ok"
    assert s.card.pins[PIN1_REFERENCE].verified  # the card holds PIN1, verified for A
    s.user.one_click = True
    signatures = s.card.stats.by_command["PSO"]
    with pytest.raises(ScsFailure) as refused:
        await s.sign(SITE_B)
    assert refused.value.code == 401 and "no PIN" in refused.value.text
    assert s.user.asked[-1] is True  # B's dialog asked for PIN1 ...
    assert s.card.stats.by_command["PSO"] == signatures  # ... and the card signed nothing for B


async def test_the_card_is_logged_out_before_another_origin_uses_it(make_service) -> None:
    s = make_service()
    assert (await s.sign(SITE_A))[0]["status"] == "ok"
    assert s.card.pins[PIN1_REFERENCE].verified
    # B signs with the signature key (PIN2): A's PIN1 must not stay verified while the card works for B.
    body = {"content": base64.b64encode(b"B's document").decode(), "selector": {"keyusages": ["nonrepudiation"]}}
    answer, count = await s.sign(SITE_B, body)
    assert answer["status"] == "ok" and count == 1
    assert not s.card.pins[PIN1_REFERENCE].verified


async def test_a_pin_verified_outside_this_server_is_not_reused(make_service) -> None:
    s = make_service()
    assert (await s.sign(SITE_A))[0]["status"] == "ok"
    s.reader.remove()
    s.reader.insert()
    # The server reads the reinserted card on a worker thread (its selects log out).
    await async_wait_until(s.service.state.summaries, 10, "the server to read the reinserted card")
    s.card.pins[PIN1_REFERENCE].verified = True  # then another program verifies PIN1 on it
    answer, count = await s.sign(SITE_A)
    assert answer["status"] == "ok" and count == 1
    assert s.user.asked == [True, True]


async def test_drop_authentication_logs_out_after_every_operation(make_service) -> None:
    s = make_service(drop_authentication=True)
    for _ in range(2):
        answer, count = await s.sign(SITE_A)
        assert answer["status"] == "ok" and count == 1  # even the same origin types PIN1 again
        assert not s.card.pins[PIN1_REFERENCE].verified  # nothing stays verified between operations
    assert s.user.asked == [True, True]


async def test_drop_authentication_logs_out_after_a_failure_too(make_service) -> None:
    s = make_service(drop_authentication=True)
    s.card.faults.force(0x2A, 0x6F00)  # the signature itself fails after PIN1 was verified
    with pytest.raises(ScsFailure) as failed:
        await s.sign(SITE_A)
    assert failed.value.code == 500
    assert s.card.stats.by_command["VERIFY"] == 1 and not s.card.pins[PIN1_REFERENCE].verified


# --- the attack in Chromium, against a real serve process with the web dialog ------------------------------

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)


def sign_later(server: WebServer, origin: str) -> concurrent.futures.Future:
    return POOL.submit(lambda: asyncio.run(server.server.post(authentication_request(origin), origin=origin)))


def open_dialog(page, server: WebServer) -> None:
    assert page.goto(server.next_dialog_url()).status == 200
    page.wait_for_selector("#request:not([hidden])")


ANSWER_WITHOUT_PIN = """async () => {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const response = await fetch(location.pathname.replace(/\\/$/, "") + "/answer", {
    method: "POST", credentials: "same-origin",
    headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    body: JSON.stringify({choice: 0, pin: null})});
  return response.json();
}"""


def test_site_b_gets_no_one_click_signature_after_site_a_in_chromium(browser_factory, trusted_home,
                                                                      web_server: WebServer) -> None:
    page = browser_factory(trusted_home).new_context(viewport={"width": 760, "height": 900}).new_page()
    pending = sign_later(web_server, SITE_A)
    open_dialog(page, web_server)
    assert page.is_visible("#pin")
    page.fill("#pin", "1234")
    page.click("#sign")
    page.wait_for_selector("#done:not([hidden])")
    assert pending.result(timeout=30)["status"] == "ok"  # the card now holds PIN1, verified for A

    pending = sign_later(web_server, SITE_B)
    open_dialog(page, web_server)
    assert page.text_content("#origin") == SITE_B
    assert page.is_visible("#pin"), "B's dialog offered a PIN-less signature with A's PIN1"
    page.click("#sign")  # one click, no PIN: the page refuses to send it ...
    assert page.is_visible("#error") and page.is_hidden("#done")
    # ... and so does the server when the click's answer (no PIN) is sent anyway.
    result = page.evaluate(ANSWER_WITHOUT_PIN)
    assert result["result"] == "failed" and "no PIN" in result["text"], result
    answer = pending.result(timeout=30)
    assert answer["status"] == "failed" and answer["reasonCode"] == 401, answer
