"""WebSigner's request handling in-process: sender and returnUrl rules, delivery of early failures to the
relying party, HTTPSignerDisabled, GET, and the Referer fallback (the browser flows are in tests/browser)."""

from __future__ import annotations

import base64
import json
import re

from tests.support.inprocess import HOST

RP = "https://eservice.example"


def hidden_fields(page: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page):
        fields.setdefault(name, []).append(value)
    return fields


def form(**extra: str) -> dict[str, str]:
    return {"content": base64.b64encode(b"x").decode(), "returnUrl": f"{RP}/return", "state": "s-1", **extra}


async def test_sender_must_be_known(make_server) -> None:
    server = await make_server()
    response = await server.client.post("/websigner", data=form(), headers=dict(HOST))
    assert response.status == 403
    assert "neither an Origin nor a Referer" in await response.text()
    assert not server.dialog.requests


async def test_return_url_rules(make_server) -> None:
    server = await make_server()
    for return_url, needle in ((f"{RP}.evil.example/r", "same origin"), ("http://eservice.example/r", "same origin"),
                               ("", "returnUrl is missing")):
        response = await server.client.post("/websigner", data=form(returnUrl=return_url),
                                            headers={**HOST, "Origin": RP})
        assert response.status == 403 and needle in await response.text()
    http_dev = "http://localhost:8080"
    response = await server.client.post("/websigner", data=form(returnUrl=f"{http_dev}/r", signatureType="zzz"),
                                        headers={**HOST, "Origin": http_dev})
    assert response.status == 200 and hidden_fields(await response.text())["reasonCode"] == ["400"]


async def test_failures_before_the_dialog_are_delivered(make_server) -> None:
    server = await make_server(http_signer_disabled=True)
    response = await server.client.post("/websigner", data=form(), headers={**HOST, "Origin": RP})
    page = await response.text()
    fields = hidden_fields(page)
    assert fields["status"] == ["failed"] and fields["reasonCode"] == ["403"] and fields["state"] == ["s-1"]
    assert "HTTPSignerDisabled" in fields["reasonText"][0]
    assert f'action="{RP}/return"' in page
    assert f"form-action {RP}" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


async def test_get_with_referer_and_auto_dialog_delivers_the_signature(make_server) -> None:
    server = await make_server()  # the scripted dialog answers at once, so the result comes straight back
    query = form(keyusages="nonrepudiation", signatureType="signature-plain")
    response = await server.client.get("/websigner", params=query,
                                       headers={**HOST, "Referer": f"{RP}/page?x=1"})
    fields = hidden_fields(await response.text())
    assert fields["status"] == ["ok"] and fields["state"] == ["s-1"]
    assert len(base64.b64decode(fields["signature"][0])) == 96 and len(fields["chain"]) == 3
    assert server.dialog.requests[-1].origin == RP  # the sender came from the Referer


async def test_post_message_mode_escapes_the_payload(make_server) -> None:
    server = await make_server()
    state = "<!--<script></script><b>&\u2028"
    response = await server.client.post("/websigner", data=form(responseMode="post_message", state=state),
                                        headers={**HOST, "Origin": RP})
    page = await response.text()
    data = re.search(r'<script type="application/json" id="websigner-result">(.*?)</script>', page).group(1)
    assert not set(data) & set("<>&\u2028\u2029")  # nothing in it can end, comment out or restart the element
    assert json.loads(data)["result"]["state"] == state and json.loads(data)["origin"] == RP


async def test_subresources_start_nothing(make_server) -> None:
    """An <img>, a script, a frame or a no-cors fetch says so in Sec-Fetch-*: refused before the form is read."""
    server = await make_server()
    for mode, dest in (("no-cors", "image"), ("no-cors", "script"), ("navigate", "iframe"), ("no-cors", "empty"),
                       ("cors", "empty")):
        response = await server.client.get("/websigner", params=form(), headers={
            **HOST, "Origin": RP, "Sec-Fetch-Mode": mode, "Sec-Fetch-Dest": dest, "Sec-Fetch-Site": "cross-site"})
        assert response.status == 403 and "not from an image" in await response.text()
    assert not server.dialog.requests
    # A form that navigates a tab, and a client that sends no fetch metadata at all, are served.
    for headers in ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}, {}):
        response = await server.client.post("/websigner", data=form(), headers={**HOST, "Origin": RP, **headers})
        assert hidden_fields(await response.text())["status"] == ["ok"]
    assert len(server.dialog.requests) == 2


async def test_state_is_capped(make_server) -> None:
    server = await make_server()
    response = await server.client.post("/websigner", data=form(state="s" * 4097), headers={**HOST, "Origin": RP})
    assert response.status == 400 and "4096" in await response.text()
    assert not server.dialog.requests
