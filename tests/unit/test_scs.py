"""The SCS handlers in-process (pytest-aiohttp): every reason code, CORS, selectors, strict key policy, the
authentication-key rule, PIN-always counted at the card, wrong PINs, removal, concurrency, Host attacks,
size limits and malformed input. Signatures are checked with independent verifiers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from card import CardCertificate
from digisign_web.dialog.protocol import DialogAnswer, DialogRequest
from digisign_web.scs.errors import ScsFailure
from digisign_web.scs.request import parse_json, parse_request
from tests.support.cards import answer_chain, openssl_recovers
from tests.support.inprocess import HOST, ScriptedDialog
from tests.support.wait import async_wait_until

ORIGIN = "https://eservice.example"
NONCE = "n" * 64


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def leaf_of(answer: dict[str, Any]) -> CardCertificate:
    return answer_chain(answer)[0]


def verify_raw(answer: dict[str, Any], content: bytes) -> None:
    """Independent check with cryptography: the raw signature over content under chain[0]."""
    name = answer["signatureAlgorithm"].split("with")[0]
    algorithm = getattr(hashes, name)()
    public = leaf_of(answer).public_key
    signature = base64.b64decode(answer["signature"])
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, content, ec.ECDSA(algorithm))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, content, padding.PKCS1v15(), algorithm)


# --- the happy paths ----------------------------------------------------------------------------


async def test_sign_default_request_like_mpollux(make_server) -> None:
    server = await make_server()
    content = b"document to sign"
    answer = await server.sign({"content": b64(content)})  # only content, as some clients send
    assert list(answer) == ["version", "signatureAlgorithm", "signatureType", "signature", "chain", "status",
                            "reasonCode", "reasonText"]
    assert answer["status"] == "ok" and answer["reasonCode"] == 200 and answer["reasonText"] == "Signature generated"
    assert answer["signatureType"] == "signature" and answer["signatureAlgorithm"] == "SHA256withECDSA"
    assert len(answer["chain"]) == 3
    chain = answer_chain(answer)
    assert chain[0].signed_by(chain[1])
    assert chain[1].signed_by(chain[2])
    assert chain[2].subject == chain[2].issuer  # leaf first, root last
    assert chain[0] == server.card.identity.sign.cert  # the card's exact bytes
    verify_raw(answer, content)
    (shown,) = server.dialog.requests
    assert shown.origin == ORIGIN and shown.content_size == len(content)
    assert shown.digest_hex == hashlib.sha256(content).hexdigest()


async def test_get_sign_with_selector_as_json(make_server) -> None:
    server = await make_server("fineid-v3")
    content = b"over GET+/="
    query = {"content": b64(content), "hashAlgorithm": "SHA512", "version": "1.0",
             "selector": json.dumps({"keyusages": ["nonrepudiation"]})}
    response = await server.client.get("/sign", params=query, headers={**HOST, "Origin": ORIGIN})
    answer = await response.json()
    assert answer["status"] == "ok", answer
    assert answer["signatureAlgorithm"] == "SHA512withECDSA"
    verify_raw(answer, content)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
async def test_content_types_accepted(make_server, content_type: str | None) -> None:
    server = await make_server()
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"content": b64(b"x"), "signatureType": "signature-plain"}).encode()
    response = await server.client.post("/sign", data=body, headers={**HOST, "Origin": ORIGIN, **headers},
                                        skip_auto_headers=["Content-Type"] if not content_type else ())
    answer = await response.json()
    assert answer["status"] == "ok", answer
    assert answer["signatureAlgorithm"] == "SHA256withPLAIN-ECDSA"
    assert len(base64.b64decode(answer["signature"])) == 96


async def test_cms_answer_verifies_with_openssl(make_server, tmp_path: Path) -> None:
    server = await make_server()
    content = b"cms over SCS"
    answer = await server.sign({"content": b64(content), "signatureType": "cms", "hashAlgorithm": "SHA384"})
    assert answer["status"] == "ok", answer
    assert openssl_recovers(answer, tmp_path) == content
    info = cms.ContentInfo.load(base64.b64decode(answer["signature"]))
    assert len(info["content"]["certificates"]) == 3


# --- reason codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "code", "needle"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"contentType": "data"}, 400, "'content' is missing"),
    ({"content": "!!not base64!!"}, 400, "'content' is not valid base64"),
    ({"content": 12}, 400, "'content' must be"),
    ({"content": "eA==", "contentType": "text"}, 400, "contentType"),
    ({"content": "eA==", "hashAlgorithm": "MD5"}, 400, "hashAlgorithm"),
    ({"content": "eA==", "signatureType": "smime"}, 400, "signatureType"),
    ({"content": "eA==", "version": "2.0"}, 400, "'version'"),
    ({"content": "eA==", "contentType": "digest"}, 400, "digest has 32 bytes"),
    ({"content": "eA==", "selector": {"keyusages": ["encipherment"]}}, 400, "selector"),
    ({"content": "eA==", "selector": "nonrepudiation"}, 400, "selector"),
    ({"content": "eA==", "info": 7}, 400, "'info'"),
    ({"content": "eA==", "signatureType": "cms", "hashAlgorithm": "SHA1"}, 501, "SHA1"),
    ({"content": "eA==", "signatureType": "xml", "contentType": "digest"}, 501, "xml"),
])
async def test_bad_requests(make_server, body: Any, code: int, needle: str) -> None:
    server = await make_server()
    before = server.card.stats.apdus
    answer = await server.sign(body)
    assert answer["status"] == "failed" and answer["reasonCode"] == code, answer
    assert needle in answer["reasonText"]
    assert set(answer) == {"version", "status", "reasonCode", "reasonText"}
    assert server.card.stats.apdus == before and not server.dialog.requests  # nothing reached card or user


async def test_jwt_flow_is_not_offered(make_server) -> None:
    server = await make_server()
    answer = await server.sign(b"a.b.c", headers={"Content-Type": "application/jwt"})
    assert answer["reasonCode"] == 501


async def test_cancel_wrong_pin_and_blocked_pin(make_server) -> None:
    server = await make_server(dialog=ScriptedDialog(lambda r: DialogAnswer.cancel()))
    answer = await server.sign({"content": b64(b"x")})
    assert (answer["reasonCode"], answer["reasonText"]) == (401, "cancelled by the user")

    server.dialog.answer = lambda r: DialogAnswer(0, "000000")
    for left in (4, 3):
        server.card.stats.reset()
        answer = await server.sign({"content": b64(b"x")})
        assert answer["reasonCode"] == 401 and f"tries left: {left}" in answer["reasonText"]
        assert server.card.stats.by_command["VERIFY"] == 1  # one try per request: never retried
    assert server.dialog.requests[-1].choices[0].tries_left == 4  # the dialog showed the count

    server.card.pins[0x82].tries_left = 0  # blocked behind our back (say, by another program)
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 401 and "blocked" in answer["reasonText"] and "PUK" in answer["reasonText"]
    assert not server.dialog.requests[-1].choices[0].blocked  # the dialog showed what was known then ...
    server.card.stats.reset()
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 401 and "blocked" in answer["reasonText"]
    assert server.dialog.requests[-1].choices[0].blocked  # ... and the next one what that VERIFY answered
    assert server.card.stats.apdus == 0  # a blocked PIN is known: the card is not asked again


async def test_dialog_timeout(make_server) -> None:
    async def never(request: DialogRequest) -> DialogAnswer:
        await asyncio.sleep(10)  # a user who never answers: the dialog timeout (0.2 s) IS the test
        raise AssertionError

    server = await make_server(dialog=ScriptedDialog(never), dialog_timeout=0.2)
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 401 and "in time" in answer["reasonText"]


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://eservice.example", True), ("http://localhost:8080", True), ("http://127.0.0.1", True),
    ("http://evil.example", False), ("null", False),
])
async def test_origins(make_server, origin: str, allowed: bool) -> None:
    server = await make_server()
    answer = await server.sign({"content": b64(b"x")}, origin=origin)
    assert (answer["status"] == "ok") is allowed, answer
    if not allowed:
        assert answer["reasonCode"] == 403 and "not allowed" in answer["reasonText"]


async def test_origin_setting_and_missing_origin(make_server) -> None:
    server = await make_server(allowed_origins="https://only.example")
    assert (await server.sign({"content": b64(b"x")}))["reasonCode"] == 403
    assert (await server.sign({"content": b64(b"x")}, origin="https://only.example"))["status"] == "ok"
    # No Origin: a local program is served, a cross-site browser navigation is not.
    assert (await server.sign({"content": b64(b"x")}, origin=None))["status"] == "ok"
    answer = await server.sign({"content": b64(b"x")}, origin=None, headers={"Sec-Fetch-Site": "cross-site"})
    assert answer["reasonCode"] == 403


async def test_signer_disabled_and_no_card(make_server) -> None:
    server = await make_server(http_signer_disabled=True)
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 403 and "HTTPSignerDisabled" in answer["reasonText"]
    server = await make_server()
    server.reader.remove()
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 404 and "no card" in answer["reasonText"]
    version = await (await server.client.get("/version", headers=HOST)).json()
    assert version["hashAlgorithms"] == ""


async def test_card_removed_mid_request_then_next_works(make_server) -> None:
    server = await make_server()

    def pull_card(request: DialogRequest) -> DialogAnswer:
        server.reader.remove()  # the user pulls the card while the dialog is open
        return DialogAnswer(0, "123456")

    server.dialog.answer = pull_card
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] in (404, 500) and answer["status"] == "failed", answer
    server.reader.insert()
    server.dialog.answer = None
    answer = await server.sign({"content": b64(b"y")})
    assert answer["status"] == "ok", answer
    verify_raw(answer, b"y")


# --- selectors and key policy ---------------------------------------------------------------------


ISSUER = "CN=digisign-web TEST Citizen Certificates - G1,OU=Testivarmenteet,O=digisign-web TEST,C=FI"


@pytest.mark.parametrize(("selector", "role"), [
    ({"keyusages": ["nonrepudiation"]}, "signature"),
    ({"keyusages": ["NonRepudiation"], "issuers": [ISSUER]}, "signature"),
    ({"issuers": ["c=FI, o=digisign-web TEST, ou=Testivarmenteet, cn=digisign-web TEST Citizen Certificates - G1"],
      "keyusages": ["nonrepudiation"]}, "signature"),  # reversed order, other case and spacing
    ({"keyusages": ["digitalsignature"]}, "authentication"),
])
async def test_selector_matches(make_server, selector: dict, role: str) -> None:
    server = await make_server()
    content = (ORIGIN + ";" + NONCE).encode()
    answer = await server.sign({"content": b64(content), "selector": selector})
    assert answer["status"] == "ok", answer
    assert [c.role for c in server.dialog.requests[-1].choices] == [role]
    verify_raw(answer, content)


async def test_selector_by_aki_and_no_match(make_server) -> None:
    server = await make_server()
    token = server.manager.token(server.reader.name)
    sign_cert = next(c for c in token.certificates() if c.role == "signature").certificate
    aki = sign_cert.authority_key_id
    assert aki is not None and aki == server.card.identity.ca.subject_key_id
    for encoded in (aki.hex().upper(), base64.b64encode(aki).decode()):
        answer = await server.sign({"content": b64(b"x"), "selector": {"akis": [encoded],
                                                                      "keyusages": ["nonrepudiation"]}})
        assert answer["status"] == "ok", answer
    answer = await server.sign({"content": b64(b"x"), "selector": {"issuers": ["CN=Some Other CA, C=FI"]}})
    assert answer["reasonCode"] == 404 and "issuers" in answer["reasonText"]


async def test_strict_key_policy(make_server) -> None:
    server = await make_server()  # fineid-v4: EC keys only
    body = {"content": b64(b"x"), "selector": {"keyalgorithms": ["rsa"], "keyusages": ["nonrepudiation"]}}
    relaxed = await server.sign(body)
    assert relaxed["status"] == "ok" and relaxed["signatureAlgorithm"].endswith("ECDSA")
    assert server.dialog.requests[-1].relaxed_algorithm
    strict = await server.sign({**body, "strictKeyPolicy": True})
    assert strict["reasonCode"] == 404 and "strict" in strict["reasonText"].lower()
    server = await make_server(strict_scs_key_policy=True)
    assert (await server.sign(body))["reasonCode"] == 404
    overridden = await server.sign({**body, "strictKeyPolicy": False})  # the request overrides the setting
    assert overridden["status"] == "ok"


# --- the authentication-key rule, PIN-always ------------------------------------------------------------


AUTH = {"keyusages": ["digitalsignature"]}


@pytest.mark.parametrize(("content", "content_type", "ok"), [
    (f"{ORIGIN};{NONCE}", "data", True),
    (f"{ORIGIN}\n{NONCE}\n1700000000000\npayload", "data", True),
    (f"{ORIGIN};{'n' * 63}", "data", False),
    (f"https://other.example;{NONCE}", "data", False),
    (f"{ORIGIN}.evil.example;{NONCE}", "data", False),
    ("arbitrary document", "data", False),
])
async def test_authentication_key_rule(make_server, content: str, content_type: str, ok: bool) -> None:
    server = await make_server()
    answer = await server.sign({"content": b64(content.encode()), "contentType": content_type, "selector": AUTH})
    assert (answer["status"] == "ok") is ok, answer
    if not ok:
        assert answer["reasonCode"] == 403 and not server.dialog.requests


async def test_authentication_key_refuses_digest_and_signature_key_is_exempt(make_server) -> None:
    server = await make_server()
    digest = hashlib.sha256(b"x").digest()
    answer = await server.sign({"content": b64(digest), "contentType": "digest", "selector": AUTH})
    assert answer["reasonCode"] == 403
    answer = await server.sign({"content": b64(b"any document at all"), "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer["status"] == "ok"


@pytest.mark.parametrize(("pin_always", "verifies"), [(False, 1), (True, 3)])
async def test_pin_always_counted_at_the_card(make_server, pin_always: bool, verifies: int) -> None:
    server = await make_server(pin_always=pin_always)
    server.card.stats.reset()
    for _ in range(3):
        answer = await server.sign({"content": b64(f"{ORIGIN};{NONCE}".encode()), "selector": AUTH})
        assert answer["status"] == "ok", answer
    assert server.card.stats.by_command["VERIFY"] == verifies
    needs = [r.choices[0].needs_pin for r in server.dialog.requests]
    assert needs == ([True, False, False] if not pin_always else [True, True, True])
    # PIN2 is asked for every signature either way.
    server.card.stats.reset()
    for _ in range(2):
        answer = await server.sign({"content": b64(b"d"), "selector": {"keyusages": ["nonrepudiation"]}})
        assert answer["status"] == "ok"
    assert server.card.stats.by_command["VERIFY"] == 2


# --- concurrency, spam, busy ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "on_loop"), [(1024, True), (2 << 20, False)])
async def test_a_large_documents_format_work_leaves_the_event_loop(make_server, monkeypatch, size: int,
                                                                  on_loop: bool) -> None:
    """XMLDSig canonicalises the whole document (seconds for tens of MB): from HASH_IN_THREAD bytes the format's
    prepare and finish run in a worker thread, as hashing does; a small document's stay on the loop."""
    from digisign_web.signing import formats

    server = await make_server()
    threads: list[bool] = []
    prepare = formats.prepare

    def recording(*args, **kwargs):
        threads.append(threading.get_ident() == loop_thread)
        pending = prepare(*args, **kwargs)
        finish = pending.finish
        object.__setattr__(pending, "finish", lambda raw: threads.append(threading.get_ident() == loop_thread)
                           or finish(raw))
        return pending

    loop_thread = threading.get_ident()
    monkeypatch.setattr(formats, "prepare", recording)
    content = b"<doc>" + b"x" * size + b"</doc>"
    answer = await server.sign({"content": b64(content), "signatureType": "xml"})
    assert answer["status"] == "ok", answer
    assert threads == [on_loop, on_loop]


@pytest.mark.parametrize("delay", [0.0, 0.001])
async def test_in_process_card_signs_on_the_loop_and_a_slow_one_in_a_worker(make_server, delay: float) -> None:
    """D66: the in-process virtual card's APDUs are function calls, so the signature skips the thread hop; a
    card that may wait (here an injected per-APDU delay, as PC/SC always may) runs in a worker thread."""
    server = await make_server()
    server.card.faults.delay = delay
    threads: list[int] = []
    process = server.card.process

    def recording(raw: bytes) -> bytes:
        threads.append(threading.get_ident())
        return process(raw)

    server.card.process = recording  # type: ignore[method-assign]
    answer = await server.sign({"content": b64(b"x" * 1024), "signatureType": "signature"})
    assert answer["status"] == "ok", answer
    assert threads  # the card signed
    on_loop = {t == threading.get_ident() for t in threads}
    assert on_loop == ({True} if delay == 0 else {False})



async def test_ten_concurrent_requests_are_serialised(make_server) -> None:
    server = await make_server()
    contents = [f"request {i}".encode() for i in range(10)]
    answers = await asyncio.gather(*(server.sign({"content": b64(c)}) for c in contents))
    assert server.dialog.max_active == 1  # one dialog (and card operation) at a time
    for content, answer in zip(contents, answers, strict=True):
        assert answer["status"] == "ok", answer
        verify_raw(answer, content)


async def test_busy_when_the_queue_is_full(make_server) -> None:
    release = asyncio.Event()

    async def slow(request: DialogRequest) -> DialogAnswer:
        await release.wait()
        return DialogAnswer(0, "123456")

    server = await make_server(dialog=ScriptedDialog(slow), queue_limit=1)
    first = asyncio.create_task(server.sign({"content": b64(b"1")}))
    await async_wait_until(lambda: server.dialog.requests, 10, "the first request's dialog")
    second = asyncio.create_task(server.sign({"content": b64(b"2")}))  # waits in the queue
    await async_wait_until(lambda: server.service.queue._waiting == 1, 10, "the second request in the queue")
    third = await server.sign({"content": b64(b"3")})
    assert third["reasonCode"] == 403 and "busy" in third["reasonText"]
    release.set()
    assert (await first)["status"] == "ok" and (await second)["status"] == "ok"


async def test_spam_guard(make_server) -> None:
    server = await make_server(dialog=ScriptedDialog(lambda r: DialogAnswer.cancel()), spam_cancel_limit=2)
    for _ in range(2):
        assert (await server.sign({"content": b64(b"x")}))["reasonCode"] == 401
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 403 and "too many cancelled" in answer["reasonText"]
    other = await server.sign({"content": b64(b"x")}, origin="https://other.example")
    assert other["reasonCode"] == 401  # another origin is not punished


# --- HTTP layer: host, CORS, size, version ------------------------------------------------------------


async def test_host_header_attack(make_server) -> None:
    server = await make_server()
    port = server.client.port
    for host in ("attacker.example", f"attacker.example:{port}", f"localhost.attacker.example:{port}",
                 f"127.0.0.2:{port}", f"localhost:{port + 1}", "localhost"):
        response = await server.client.post("/sign", data=json.dumps({"content": "eA=="}),
                                            headers={"Host": host, "Origin": ORIGIN})
        answer = await response.json()
        assert answer["status"] == "failed" and answer["reasonCode"] == 403
    assert not server.dialog.requests


async def test_cors_preflight(make_server) -> None:
    server = await make_server()
    response = await server.client.options("/sign", headers={
        **HOST, "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-feas", "Access-Control-Request-Private-Network": "true"})
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Vary"] == "Origin"
    assert response.headers["Access-Control-Allow-Headers"] == "content-type,x-feas"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Allow-Private-Network"] == "true"
    assert "Access-Control-Allow-Credentials" not in response.headers
    plain = await server.client.options("/version", headers={**HOST, "Origin": ORIGIN})
    assert "Access-Control-Allow-Private-Network" not in plain.headers
    version = await server.client.get("/version", headers={**HOST, "Origin": ORIGIN})
    assert version.headers["Access-Control-Allow-Origin"] == ORIGIN


async def test_oversized_body(make_server) -> None:
    server = await make_server(max_request_bytes=4096)
    answer = await server.sign({"content": b64(os.urandom(8192))})
    assert answer["reasonCode"] == 413

    async def chunks():
        for _ in range(64):
            yield b"x" * 1024

    response = await server.client.post("/sign", data=chunks(), headers={**HOST, "Origin": ORIGIN})
    assert (await response.json())["reasonCode"] == 413


async def test_version_touches_no_apdu(make_server) -> None:
    server = await make_server("fineid-v3")
    before = server.card.stats.apdus
    for _ in range(10):
        version = await (await server.client.get("/version", headers=HOST)).json()
    assert server.card.stats.apdus == before
    assert list(version)[:6] == ["version", "httpMethods", "contentTypes", "signatureTypes", "selectorAvailable",
                                 "hashAlgorithms"]
    assert version["signatureTypes"] == "signature,signature-plain,cms,cms-pades,pkcs7,xml"
    assert version["signatureAlgorithms"] == "RSA,ECDSA" and version["selectorAvailable"] is True


# --- fuzzing the parser --------------------------------------------------------------------------------


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries({}, optional={
    "content": st.text(max_size=40) | st.sampled_from(["eA==", "", "AAAA", b64(bytes(32))]) | JSONISH,
    "contentType": st.sampled_from(["data", "digest", "x"]) | JSONISH,
    "hashAlgorithm": st.sampled_from(["SHA1", "SHA256", "sha-512", "MD5"]) | JSONISH,
    "signatureType": st.sampled_from(["signature", "cms", "cms-pades", "xml", "pkcs7", "zzz"]) | JSONISH,
    "selector": JSONISH, "strictKeyPolicy": JSONISH, "version": JSONISH, "info": JSONISH,
})


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), FIELDS.map(lambda f: json.dumps(f).encode())))
def test_parser_never_escapes(body: bytes) -> None:
    try:
        parse_request(parse_json(body))
    except ScsFailure as exc:
        assert exc.code in (400, 501) and exc.text


def test_large_request_peak_memory() -> None:
    """Parsing a large request stays within 2x the request size: measured with tracemalloc, which is
    deterministic, not timed."""
    import tracemalloc

    content = os.urandom(6 * 1024 * 1024)
    wire = json.dumps({"content": b64(content), "signatureType": "cms"}).encode()
    size = len(wire)
    tracemalloc.start()
    try:
        body = bytearray(wire)  # the body as the handler reads it, counted in the peak
        fields = parse_json(body)
        del body  # what the handler does once the JSON text is parsed
        request = parse_request(fields)
        del fields
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert request.content == content
    # 2x: never more than two whole copies at once (body + its text, text + content, content + bytes).
    # json.loads straight from the body held the body, its decoded text and the content string: 3x.
    assert peak <= 2.1 * size, f"peak {peak / size:.2f}x the request size"


async def test_card_error_is_500(make_server) -> None:
    server = await make_server()
    server.card.faults.force(0x2A, 0x6F00)  # the card fails the signature with "no precise diagnosis"
    answer = await server.sign({"content": b64(b"x")})
    assert answer["reasonCode"] == 500 and "card error" in answer["reasonText"]
    assert (await server.sign({"content": b64(b"y")}))["status"] == "ok"  # and the next one works


async def test_port_fallback(unused_tcp_port_factory) -> None:
    import socket

    from aiohttp import web

    from digisign_web.web.serve import bind

    busy, free = unused_tcp_port_factory(), unused_tcp_port_factory()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", busy))
    blocker.listen()
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        assert await bind(runner, (busy, free), None) == free  # the first free port of the list wins
    finally:
        await runner.cleanup()
        blocker.close()


async def test_card_forgot_the_pin_is_401(make_server) -> None:
    server = await make_server()
    auth = {"content": b64(f"{ORIGIN};{NONCE}".encode()), "selector": {"keyusages": ["digitalsignature"]}}
    assert (await server.sign(auth))["status"] == "ok"  # PIN1 now verified on the card

    def reset_then_answer(request: DialogRequest) -> DialogAnswer:
        assert not request.choices[0].needs_pin  # we believe the card still holds PIN1 ...
        server.card.pins[0x11].verified = False  # ... but another program reset the card meanwhile
        return DialogAnswer(0, None)

    server.dialog.answer = reset_then_answer
    answer = await server.sign(auth)
    assert answer["reasonCode"] == 401 and "PIN again" in answer["reasonText"]


@pytest.mark.parametrize("profile", ["fineid-v4", "fineid-v3.1", "fineid-org"])
@pytest.mark.parametrize("signature_type", ["signature", "cms", "xml"])
async def test_a_warm_signature_costs_exactly_the_pin_check_and_the_signature(make_server, profile: str,
                                                                              signature_type: str) -> None:
    """Issue 12: VERIFY + MSE + PSO:HASH + PSO:CDS (plus GET RESPONSE where a T=0 answer is longer than one
    block), counted by the card itself; no PIN status re-read, no logout, nothing else."""
    server = await make_server(profile)
    body = {"content": b64(b"warm" * 256), "signatureType": signature_type,
            "selector": {"keyusages": ["nonrepudiation"]}}
    assert (await server.sign(body))["status"] == "ok"  # cold: the card is read once
    for _ in range(2):
        server.card.stats.reset()
        answer = await server.sign(body)
        assert answer["status"] == "ok", answer
        commands = dict(server.card.stats.by_command)  # the card side names instructions by INS
        responses = commands.pop("GET RESPONSE", 0)
        assert commands.pop("VERIFY") == 1 and commands.pop("MSE") == 1
        if profile == "fineid-org":  # the QES key is local to DF.ESIGN, selected first; PSO:CDS takes the digest
            assert commands.pop("SELECT") == 1 and commands.pop("PSO") == 1
        else:  # PSO:HASH + PSO:CDS
            assert commands.pop("PSO") == 2
        assert commands == {}, commands
        assert responses <= 1


@pytest.mark.parametrize(("pin_type", "digits"), [("ascii-numeric", True), ("bcd", True),
                                                  ("half-nibble-bcd", True), ("utf8", False)])
async def test_the_dialog_asks_for_digits_exactly_when_the_card_takes_only_digits(make_server, pin_type: str,
                                                                                 digits: bool) -> None:
    """One rule (PinInfo.numeric) for the dialog, the PIN rules and the card layer: the dialog used its own
    list, which left out half-nibble BCD, so it let letters through that the card layer then refused."""
    import dataclasses

    from digisign_web.scs.expiry import expiry
    from digisign_web.scs.service import _Candidate

    server = await make_server()
    service = server.service
    token = server.manager.tokens()[0]
    cert = next(c for c in token.certificates() if c.role == "signature")
    cert = dataclasses.replace(cert, pin=dataclasses.replace(cert.pin, pin_type=pin_type))
    now = cert.certificate.not_before
    candidate = _Candidate(token, cert, expiry(cert.certificate.not_before, cert.certificate.not_after, 0, now))
    (choice,) = service._choices([candidate], ORIGIN, may_read=True)
    assert choice.pin_digits is digits


def test_a_hostile_reader_name_is_inert_in_the_card_state_log(state_dir: Path, caplog) -> None:
    """A reader name is outside data (a PKCS#11 "reader" carries the token's own label): in the log it is inert."""
    import logging

    from card import CardManager
    from card.virtual import VirtualCard, VirtualReader
    from digisign_web.scs.card_state import CardState

    hostile = "Reader\x1b[2J\u202eevil"
    card = VirtualCard("fineid-v4", state_dir)
    reader = VirtualReader(card, name=hostile)
    state = CardState(CardManager(source=reader))
    card.remove()  # the card left before it could be read: the refresh logs why
    caplog.set_level(logging.WARNING, logger="digisign_web.scs.card_state")
    state.refresh(hostile)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert text and "Reader" in text and "\x1b" not in text and "\u202e" not in text
