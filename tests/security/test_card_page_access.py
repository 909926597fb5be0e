"""The "My card" page answers only itself (D48): the page only to a top-level navigation, its API only to its own
page's script (own Origin, Sec-Fetch-Site same-origin, JSON, the CSRF token bound to the HttpOnly SameSite=Strict
cookie), never a CORS header, never framed, and no PIN in a log. In-process app with the virtual card."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tests.support.inprocess import HOST

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}


async def open_page(server: Any) -> tuple[str, str, str]:
    """GET /card as a tab does: (csrf token, cookie value, our origin)."""
    response = await server.client.get("/card", headers={**HOST, **NAVIGATE})
    assert response.status == 200
    html = await response.text()
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)
    cookie = response.cookies["card_session"]
    return csrf, cookie.value, f"http://localhost:{server.client.port}"


def api_headers(origin: str, csrf: str, cookie: str, **extra: str) -> dict[str, str]:
    """What the page's fetch sends (the cookie is set by hand: the test client is plain HTTP on an IP address,
    where a cookie jar keeps a Secure cookie to itself)."""
    return {**HOST, "Cookie": f"card_session={cookie}", "Origin": origin, "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Content-Type": "application/json",
            "X-CSRF-Token": csrf, **extra}


async def test_the_page_is_served_to_a_tab_with_its_headers_and_cookie(make_server) -> None:
    server = await make_server()
    response = await server.client.get("/card", headers={**HOST, **NAVIGATE})
    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "form-action 'none'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in response.headers
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie and "Path=/card" in cookie


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script", "Sec-Fetch-Site": "same-origin"},
    {**NAVIGATE, "Sec-Fetch-Site": "cross-site"},  # a link on another site
    {**NAVIGATE, "Sec-Fetch-Site": "same-site"},  # another port of localhost
])
async def test_the_page_is_refused_to_subresources_frames_and_other_sites(make_server, headers) -> None:
    server = await make_server()
    response = await server.client.get("/card", headers={**HOST, **headers})
    assert response.status == 403
    assert "Set-Cookie" not in response.headers
    assert "csrf-token" not in await response.text()


async def test_the_api_answers_its_own_page(make_server) -> None:
    server = await make_server()
    csrf, cookie, origin = await open_page(server)
    response = await server.client.post("/card/api/status", data="{}", headers=api_headers(origin, csrf, cookie))
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert response.headers["X-Frame-Options"] == "DENY"
    body = await response.json()
    assert body["ok"] and [p["id"] for p in body["cards"][0]["pins"]] == ["pin1", "pin2", "puk"]


@pytest.mark.parametrize("change", [
    {"drop": "X-CSRF-Token"},
    {"X-CSRF-Token": "0" * 64},
    {"Origin": "https://evil.example"},
    {"Origin": "http://localhost:1"},  # another port of localhost: same-site, not same-origin
    {"Origin": "null"},
    {"drop": "Origin"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"drop": "Sec-Fetch-Site"},
    {"Content-Type": "text/plain"},  # what a cross-site form or a simple fetch can send without a preflight
    {"no-cookie": "1"},
    {"Cookie": "card_session=" + "A" * 43},
])
async def test_the_api_refuses_everything_else(make_server, change: dict[str, str]) -> None:
    server = await make_server()
    csrf, cookie, origin = await open_page(server)
    headers = api_headers(origin, csrf, cookie)
    if "drop" in change:
        headers.pop(change["drop"])
    elif "no-cookie" in change:
        headers.pop("Cookie")
    else:
        headers.update(change)
    for path in ("status", "change", "unblock"):
        body = {"pin": "pin2", "reader": "digisign-web virtual reader", "old": "123456", "puk": "12345678",
                "new": "975319", "again": "975319"}
        response = await server.client.post(f"/card/api/{path}", data=json.dumps(body), headers=headers)
        assert response.status == 403, (path, change)
        assert "Access-Control-Allow-Origin" not in response.headers
    assert server.card.pins[0x82].value == "123456" and server.card.pins[0x82].tries_left == 5


async def test_a_preflight_gets_no_cors_answer_and_get_is_not_the_api(make_server) -> None:
    server = await make_server()
    preflight = await server.client.options("/card/api/change", headers={
        **HOST, "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-csrf-token"})
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert preflight.status in (403, 405)
    response = await server.client.get("/card/api/status", headers={**HOST, "Sec-Fetch-Site": "same-origin"})
    assert response.status == 405


async def test_a_cookie_from_another_tab_does_not_fit_this_token(make_server) -> None:
    """The token is bound to the cookie: a token read in one session fails with another session's cookie."""
    server = await make_server()
    csrf, cookie, origin = await open_page(server)
    _csrf2, cookie2, _ = await open_page(server)  # another tab without the cookie: a new one
    assert cookie2 != cookie
    response = await server.client.post("/card/api/status", data="{}", headers=api_headers(origin, csrf, cookie2))
    assert response.status == 403


async def test_change_through_the_api_and_no_pin_in_the_log(make_server, caplog) -> None:
    server = await make_server()
    csrf, cookie, origin = await open_page(server)
    caplog.set_level(logging.DEBUG)
    wrong = {"pin": "pin2", "reader": "digisign-web virtual reader", "old": "000000", "new": "975319",
             "again": "975319"}
    result = await (await server.client.post("/card/api/change", data=json.dumps(wrong),
                                             headers=api_headers(origin, csrf, cookie))).json()
    assert (result["ok"], result["code"], result["triesLeft"]) == (False, "wrong-pin", 4)
    right = {**wrong, "old": "123456"}
    result = await (await server.client.post("/card/api/change", data=json.dumps(right),
                                             headers=api_headers(origin, csrf, cookie))).json()
    assert result["ok"] and {p["id"]: p["triesLeft"] for p in result["pins"]} == {"pin1": 5, "pin2": 5, "puk": 5}
    assert server.card.pins[0x82].value == "975319"
    text = caplog.text + json.dumps(result)
    assert not any(pin in text for pin in ("000000", "123456", "975319"))


async def test_unblocking_disabled_on_the_api(make_server) -> None:
    server = await make_server(disable_pin_unblocking=True)
    csrf, cookie, origin = await open_page(server)
    headers = api_headers(origin, csrf, cookie)
    status = await (await server.client.post("/card/api/status", data="{}", headers=headers)).json()
    assert status["unblockingDisabled"] is True
    body = {"pin": "pin2", "reader": "digisign-web virtual reader", "puk": "12345678", "new": "975319",
            "again": "975319"}
    result = await (await server.client.post("/card/api/unblock", data=json.dumps(body),
                                             headers=api_headers(origin, csrf, cookie))).json()
    assert result["code"] == "unblocking-disabled"
    assert server.card.pins[0x82].value == "123456"


async def test_the_signing_dialog_sees_the_counters_the_page_changed(make_server) -> None:
    """What the page learns goes into CardState (note_pin): the next signing dialog shows PIN2 blocked without
    reading the card again, and the request fails as blocked instead of asking for a PIN."""
    server = await make_server()
    csrf, cookie, origin = await open_page(server)
    headers = api_headers(origin, csrf, cookie)
    wrong = {"pin": "pin2", "reader": "digisign-web virtual reader", "old": "000000", "new": "975319",
             "again": "975319"}
    codes = [(await (await server.client.post("/card/api/change", data=json.dumps(wrong), headers=headers)).json())
             ["code"] for _ in range(5)]
    assert codes == ["wrong-pin"] * 4 + ["blocked"]
    answer = await server.sign({"version": "1.1", "content": "eA==", "contentType": "data", "hashAlgorithm": "SHA256",
                                "signatureType": "signature", "selector": {"keyusages": ["nonrepudiation"]}})
    choice = server.dialog.requests[-1].choices[0]
    assert (choice.role, choice.tries_left, choice.blocked) == ("signature", 0, True)
    assert answer["reasonCode"] == 401 and "blocked" in answer["reasonText"]
