"""static/scs.js in a real browser: a relying-party site (tests/browser/relying_party/, served over plain HTTP on
127.0.0.1) loads scs.js as a classic script and scs.mjs as an ES module, and signs through a real `digisign-web
serve --dialog auto` on the standard port 53952 with the virtual card. Signatures are verified in Python.

The site is marked "public" with --ip-address-space-overrides, so Chromium's Local Network Access applies as it
would for a real e-service, and the page origin is granted the `local-network-access` permission. Playwright
1.65 maps that name to Chromium's CDP permissions localNetworkAccess, localNetwork and loopbackNetwork (the
split permissions of Chrome 145+), with a fallback to localNetworkAccess alone.

The tests are plain `def`: Playwright's sync API cannot run inside the asyncio loop pytest-asyncio provides to
`async def` tests."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.browser import make_home, screenshot
from tests.support.cards import answer_chain, check_ecdsa
from tests.support.net import free_port
from tests.support.paths import STATIC
from tests.support.relying_party import OpenPage, Site
from tests.support.servers import RunningServer, start_server, stop

SCS_PORT = 53952  # fixed on purpose, not a free port: scs.js discovery probes only the standard ports
SIX_FIELDS = ("version", "httpMethods", "contentTypes", "signatureTypes", "selectorAvailable", "hashAlgorithms")
STANDARD_BASES = [
    "https://localhost:53952", "https://127.0.0.1:53952", "https://localhost:23124", "https://127.0.0.1:23124",
    "https://localhost:8089", "https://127.0.0.1:8089",
    # The page is http:, so the plain-HTTP bases are probed too, after the HTTPS ones.
    "http://localhost:53951", "http://127.0.0.1:53951", "http://localhost:23123", "http://127.0.0.1:23123",
    "http://localhost:8088", "http://127.0.0.1:8088",
]


# --- the SCS server and trust -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """digisign-web on the standard port 53952: discovery's probe list is fixed, so nothing else will do."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        try:
            probe.bind(("127.0.0.1", SCS_PORT))
        except OSError as exc:
            pytest.fail(f"port {SCS_PORT} is busy ({exc}): scs.js discovery tests need the standard SCS port. "
                        f"Stop whatever listens there (`ss -ltnp 'sport = :{SCS_PORT}'`), e.g. a running "
                        "digisign-web or DigiSign, and run again.", pytrace=False)
    server = start_server(tmp_path_factory.mktemp("scs-js"), "--virtual-card", "fineid-v4", "--dialog", "auto",
                          port=SCS_PORT)
    if server.port != SCS_PORT:
        stop(server)
        pytest.fail(f"the server fell back to port {server.port}: {SCS_PORT} was taken meanwhile", pytrace=False)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def nss_home(scs_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_home(tmp_path_factory.mktemp("home") / "trusted", scs_server.ca)


# --- pages ------------------------------------------------------------------------------------------------


def ok_value(outcome: dict) -> dict:
    assert outcome["ok"], json.dumps(outcome, indent=2)
    return outcome["value"]


def failure(outcome: dict) -> dict:
    assert not outcome["ok"], json.dumps(outcome, indent=2)
    return outcome["error"]


def leaf_curve(answer: dict) -> str:
    key = answer_chain(answer)[0].public_key
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key.curve.name


# --- tests ------------------------------------------------------------------------------------------------


def test_classic_script_and_module_loading(open_page: OpenPage, nss_home: Path, site: Site) -> None:
    # The files come from static/ with a JavaScript MIME type (modules insist on one).
    for name in ("scs.js", "scs.mjs"):
        with urllib.request.urlopen(f"{site.origin}/{name}") as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert response.read() == (STATIC / name).read_bytes()

    classic = open_page(nss_home, "/")
    assert classic.page.evaluate("window.loadedAs") == "classic"
    names = classic.page.evaluate("Object.keys(window.SCS).sort()")
    for name in ("SCSError", "discover", "sign", "waitForCard", "base64FromText", "base64FromBytes",
                 "base64FromFile", "digestFile", "digestBytes"):
        assert name in names
    # A classic script must not leak anything but SCS.
    assert classic.page.evaluate("typeof window.discover") == "undefined"

    module = open_page(nss_home, "/module.html")
    assert module.page.evaluate("window.loadedAs") == "module"
    exports = module.page.evaluate("window.moduleExports")
    assert exports["defaultIsGlobal"] and exports["namedMatchDefault"], exports
    assert exports["names"] == names

    for page in (classic, module):
        helpers = page.page.evaluate("window.runHelpers()")
        assert helpers == {
            "text": base64.b64encode("Hyvää päivää €".encode()).decode(),
            "bytes": base64.b64encode(bytes([0, 1, 2, 250, 255])).decode(),
            "buffer": base64.b64encode(b"hi").decode(),
            "file": base64.b64encode("file ✓".encode()).decode(),
            "sha256": base64.b64encode(hashlib.sha256(b"abc").digest()).decode(),
            "sha512": base64.b64encode(hashlib.sha512(b"abc").digest()).decode(),
            "list": ["SHA1", "SHA256", "signature"],
            "errorIsError": True,
        }
        assert not [line for line in page.console if "error" in line.lower()], page.console
    screenshot(module.page, "relying-party-module-loaded")


@pytest.mark.parametrize("path", ["/", "/module.html"])
def test_discover_wait_and_sign_text(open_page: OpenPage, nss_home: Path, scs_server: RunningServer,
                                     path: str) -> None:
    rp = open_page(nss_home, path)
    found = ok_value(rp.call("runDiscover"))
    assert found["base"] == f"https://localhost:{SCS_PORT}"
    assert all(field in found for field in SIX_FIELDS), found
    assert found["version"] == "1.1" and found["selectorAvailable"] is True
    assert "SHA256" in found["hashAlgorithms"]

    card = ok_value(rp.call("runWaitForCard", {"interval": 200, "timeout": 10_000}))
    assert card["hashAlgorithms"].strip() and card["base"] == found["base"]

    text = "Minä allekirjoitan tämän – I sign this."
    answer = ok_value(rp.call("runSignText", text, {"selector": {"keyusages": ["nonrepudiation"]}}))
    assert answer["status"] == "ok" and answer["reasonCode"] == 200
    assert answer["signatureAlgorithm"] == "SHA256withECDSA" and answer["signatureType"] == "signature"
    assert leaf_curve(answer) == "secp384r1"
    check_ecdsa(answer, text.encode())  # DER ECDSA over the UTF-8 text, against chain[0]
    assert rp.text("status") == "sign text: ok"
    screenshot(rp.page, f"relying-party-{'module' if 'module' in path else 'classic'}-signed")


def test_sign_button_in_the_page(open_page: OpenPage, nss_home: Path, scs_server: RunningServer) -> None:
    rp = open_page(nss_home, "/")
    rp.page.fill("#text", "Signed from the form")
    rp.page.click("#sign")
    rp.page.wait_for_function("document.body.dataset.state === 'ok' || document.body.dataset.state === 'failed'",
                              timeout=30_000)
    answer = json.loads(rp.text("result"))
    assert answer["status"] == "ok", answer
    check_ecdsa(answer, b"Signed from the form")
    screenshot(rp.page, "relying-party-form-signed")


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA384", "SHA512"])
def test_sign_file_digest(open_page: OpenPage, nss_home: Path, scs_server: RunningServer, algorithm: str) -> None:
    rp = open_page(nss_home, "/")
    document = "A document the page hashes with WebCrypto (digestFile); only the digest goes to the card.\n" * 50
    answer = ok_value(rp.call("runDigestSign", document, algorithm, {"selector": {"keyusages": ["nonrepudiation"]}}))
    assert answer["signatureAlgorithm"] == f"{algorithm}withECDSA"
    # A signature over the digest verifies as a signature over the document itself.
    check_ecdsa(answer, document.encode())


def test_bad_content_is_an_scs_error(open_page: OpenPage, nss_home: Path, scs_server: RunningServer) -> None:
    rp = open_page(nss_home, "/module.html")
    error = failure(rp.call("runSign", {"version": "1.1", "content": "%%% not base64 %%%"}))
    assert error["name"] == "SCSError" and error["isSCSError"]
    assert error["reasonCode"] == 400 and "content" in error["reasonText"]
    assert error["response"]["status"] == "failed" and error["response"]["reasonCode"] == 400
    shown = rp.text("error")
    assert shown.startswith("reasonCode 400: ") and error["reasonText"] in shown
    assert rp.text("status") == "sign: failed"
    screenshot(rp.page, "relying-party-bad-content")


def test_discovery_order_and_diagnosis(open_page: OpenPage, nss_home: Path, scs_server: RunningServer,
                                       site: Site) -> None:
    rp = open_page(nss_home, "/")
    # The first base IN ORDER that answers wins, even when a later one answers sooner; bases are trimmed.
    slow = ok_value(rp.call("runDiscover", {"urls": [f"{site.origin}/slow-scs/", f"https://localhost:{SCS_PORT}"]}))
    assert slow["base"] == f"{site.origin}/slow-scs"
    both = ok_value(rp.call("runDiscover", {"urls": [f"{site.origin}/nothing", f"https://127.0.0.1:{SCS_PORT}",
                                                     f"https://localhost:{SCS_PORT}"]}))
    assert both["base"] == f"https://127.0.0.1:{SCS_PORT}"

    error = failure(rp.call("runDiscover", {"timeout": 400, "urls": [
        f"{site.origin}/nothing", f"{site.origin}/not-scs", f"{site.origin}/hang"]}))
    assert (error["reasonCode"], error["reasonText"]) == (500, "SCS not available")
    assert [(d["url"], d["kind"]) for d in error["diagnosis"]] == [
        (f"{site.origin}/nothing", "http-404"), (f"{site.origin}/not-scs", "not-scs"),
        (f"{site.origin}/hang", "timeout")]
    screenshot(rp.page, "relying-party-diagnosis")


def test_stopped_server(open_page: OpenPage, tmp_path: Path) -> None:
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", port=free_port())
    home = make_home(tmp_path / "home", server.ca)
    urls = [f"https://localhost:{server.port}", f"https://127.0.0.1:{server.port}"]
    try:
        rp = open_page(home, "/")
        assert ok_value(rp.call("runDiscover", {"urls": urls}))["base"] == urls[0]
    finally:
        stop(server)
    # The cached base no longer answers: sign() reports it as VRK's scs.js did ...
    error = failure(rp.call("runSignText", "too late"))
    assert (error["reasonCode"], error["reasonText"]) == (500, "SCS not responding")
    assert rp.text("error") == "reasonCode 500: SCS not responding"
    # ... and discovery finds nothing, saying why for each base.
    error = failure(rp.call("runDiscover", {"urls": urls}))
    assert (error["reasonCode"], error["reasonText"]) == (500, "SCS not available")
    assert [(d["url"], d["kind"]) for d in error["diagnosis"]] == [(url, "network") for url in urls]
    screenshot(rp.page, "relying-party-server-stopped")


def test_untrusted_ca_is_a_network_failure(open_page: OpenPage, scs_server: RunningServer, tmp_path: Path) -> None:
    # A fresh HOME has no NSS database, so the server's certificate is not trusted: fetch() fails exactly as if
    # nothing listened ("Failed to fetch"), on the default list (12 bases, since the page is http:).
    rp = open_page(make_home(tmp_path / "fresh-home", None), "/")
    error = failure(rp.call("runDiscover"))
    assert (error["reasonCode"], error["reasonText"]) == (500, "SCS not available")
    assert [d["url"] for d in error["diagnosis"]] == STANDARD_BASES
    assert {d["kind"] for d in error["diagnosis"]} == {"network"}, error["diagnosis"]
    assert "Failed to fetch" in error["diagnosis"][0]["detail"]
    screenshot(rp.page, "relying-party-untrusted-ca")


def test_local_network_access(open_page: OpenPage, nss_home: Path, scs_server: RunningServer) -> None:
    urls = [f"https://localhost:{SCS_PORT}"]
    # A public page without the permission: blocked before any request (not even a preflight) leaves the
    # browser, and the page sees the same "network" failure as for a stopped server.
    denied = open_page(nss_home, "/", public=True, grant=False)
    error = failure(denied.call("runDiscover", {"urls": urls}))
    assert [d["kind"] for d in error["diagnosis"]] == ["network"], error
    assert any("loopback" in line for line in denied.console), denied.console
    screenshot(denied.page, "relying-party-lna-denied")
    # A page that is itself on loopback needs no permission.
    local = open_page(nss_home, "/", public=False, grant=False)
    assert ok_value(local.call("runDiscover", {"urls": urls}))["base"] == urls[0]
