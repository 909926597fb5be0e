"""Certificate expiry (D50, D51): the one rule in scs/expiry.py, and every place that applies it — the
selector and the signing service (an expired or not yet valid certificate is never offered; a request that
only they match is a 404 that says so), the dialog's "expires soon", /version, the insertion log, the
playground's status, and the ``list``/``sign`` commands. In-process: the virtual card is given expired,
expiring or not yet valid certificates through its test PKI (card/virtual/pki.py ``cert_days``, D52)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from card import CardManager
from card.virtual import VirtualCard, VirtualReader, pki
from digisign_web.cli.main import main
from digisign_web.scs.card_state import CardState
from digisign_web.scs.expiry import Validity, expiry
from digisign_web.settings import Settings
from digisign_web.web.app import build_app
from digisign_web.web.keys import CORE
from tests.support.inprocess import HOST, ScriptedDialog, Server
from tests.support.wait import async_wait_until

ORIGIN = "https://eservice.example"
AUTH_CONTENT = f"{ORIGIN};".encode() + b"n" * 64  # what the authentication key may sign (D22)
T0 = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- the rule -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("now", "days", "validity"), [
    (T0 - dt.timedelta(days=400), 30, Validity.NOT_YET_VALID),
    (T0 - dt.timedelta(days=365, seconds=1), 30, Validity.NOT_YET_VALID),
    (T0 - dt.timedelta(days=365), 30, Validity.VALID),  # notBefore itself is valid
    (T0 - dt.timedelta(days=30), 30, Validity.VALID),  # exactly 30 days left: not "fewer than 30"
    (T0 - dt.timedelta(days=30) + dt.timedelta(seconds=1), 30, Validity.EXPIRING),
    (T0 - dt.timedelta(days=29), 0, Validity.VALID),  # certExpirationWarningDays=0: never "expiring"
    (T0, 30, Validity.EXPIRING),  # exactly at notAfter: still valid (inclusive, F32)
    (T0, 0, Validity.VALID),
    (T0 + dt.timedelta(seconds=1), 30, Validity.EXPIRED),
    (T0 + dt.timedelta(days=3650), 30, Validity.EXPIRED),
])
def test_expiry_boundaries(now: dt.datetime, days: int, validity: Validity) -> None:
    state = expiry(T0 - dt.timedelta(days=365), T0, days, now)
    assert state.validity is validity
    assert state.validity.usable == (validity in (Validity.VALID, Validity.EXPIRING))


def test_expiry_texts() -> None:
    nb = T0 - dt.timedelta(days=365)
    assert expiry(nb, T0, 30, T0 + dt.timedelta(hours=1)).text() == "expired on 2026-06-01"
    assert expiry(nb, T0, 30, T0 - dt.timedelta(days=10, hours=1)).text() == "expires 2026-06-01 (in 10 days)"
    assert expiry(nb, T0, 30, T0 - dt.timedelta(days=1, hours=1)).text() == "expires 2026-06-01 (in 1 day)"
    assert expiry(nb, T0, 30, nb - dt.timedelta(days=2)).text() == "not valid before 2025-06-01"


def test_cert_days_spec() -> None:
    assert pki.parse_cert_days("") == {}
    assert pki.parse_cert_days("sign=-1, AUTH=10") == {"sign": pki.CertDays(-1.0), "auth": pki.CertDays(10.0)}
    assert pki.parse_cert_days("sign=30:400") == {"sign": pki.CertDays(400.0, 30.0)}
    for bad in ("sign", "root=1", "sign=soon", "sign=5:1", "auth=99999"):
        with pytest.raises(ValueError):
            pki.parse_cert_days(bad)


def test_virtual_card_periods_follow_the_setting_and_default_is_unchanged(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The test setting reissues the leaves (same keys), and without it the card is the default one again."""
    default = pki.load_or_create(tmp_path, "fineid-v4")
    assert "cert_days" not in json.loads((tmp_path / "virtual-card/fineid-v4/card.json").read_text())
    now = dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=1825) < default.sign.cert.not_after - now < dt.timedelta(days=1827)
    monkeypatch.setenv(pki.CERT_DAYS_ENV, "sign=-1")
    expired = pki.load_or_create(tmp_path, "fineid-v4")
    assert expired.sign.cert.not_after < now < expired.auth.cert.not_after
    for old, new in ((default.sign, expired.sign), (default.auth, expired.auth)):  # the keys are kept
        assert new.cert.public_key.public_numbers() == old.cert.public_key.public_numbers()
    monkeypatch.delenv(pki.CERT_DAYS_ENV)
    again = pki.load_or_create(tmp_path, "fineid-v4")
    assert again.sign.cert.not_after > now + dt.timedelta(days=1825)


# --- the signing service ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def expiry_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own PKI: its leaves are reissued with other periods, which the rest of the run must not see."""
    return tmp_path_factory.mktemp("expiry-state")


@pytest.fixture
def card_with(aiohttp_client, expiry_state: Path):
    """``await card_with("sign=-1", **settings)`` -> an in-process server whose fineid-v4 card has those periods."""
    async def start(cert_days: str, profile: str = "fineid-v4", **overrides: Any) -> Server:
        identity = pki.load_or_create(expiry_state, profile, pki.parse_cert_days(cert_days))
        card = VirtualCard(profile, identity=identity)
        reader = VirtualReader(card)
        dialog = ScriptedDialog()
        app = build_app(dataclasses.replace(Settings(), **overrides), dialog, reader)
        client = await aiohttp_client(app)
        HOST["Host"] = f"localhost:{client.port}"

        service = app[CORE].build()
        return Server(client, card, reader, service.manager, dialog, service)

    return start


async def test_expired_signature_certificate_is_never_offered(card_with) -> None:
    server = await card_with("sign=-1")
    answer = await server.sign({"content": b64(AUTH_CONTENT)})
    assert answer["status"] == "ok", answer
    [request] = server.dialog.requests
    assert [c.role for c in request.choices] == ["authentication"]  # the expired signature key is not there
    assert not request.choices[0].expiring_soon


async def test_only_expired_matches_is_404_saying_so(card_with) -> None:
    server = await card_with("sign=-1")
    expired_on = server.card.identity.sign.cert.not_after.date().isoformat()
    answer = await server.sign({"content": b64(b"a contract"), "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer == {"version": "1.1", "status": "failed", "reasonCode": 404,
                      "reasonText": f"the only matching certificate expired on {expired_on}"}
    assert server.dialog.requests == []  # nobody was asked to choose a certificate that cannot sign
    # A selector that matches nothing at all still names its field, not the expiry.
    answer = await server.sign({"content": b64(b"x"), "selector": {"akis": ["00" * 20]}})
    assert answer["reasonCode"] == 404 and "selector.akis" in answer["reasonText"]


async def test_every_certificate_expired_is_404_and_no_usable_card_in_version(card_with) -> None:
    server = await card_with("sign=-2,auth=-1")
    answer = await server.sign({"content": b64(AUTH_CONTENT)})
    assert answer["reasonCode"] == 404
    assert answer["reasonText"].startswith("the only matching certificates expired on ")
    await async_wait_until(lambda: server.client.app[CORE].build().state.summaries(), 10, "the card summary")
    version = await (await server.client.get("/version", headers=HOST)).json()
    assert version["hashAlgorithms"] == "" and version["signatureAlgorithms"] == ""  # D51


async def test_version_lists_the_usable_keys(card_with) -> None:
    server = await card_with("sign=-1", profile="fineid-v3")  # RSA authentication, expired EC signature key
    await async_wait_until(lambda: server.client.app[CORE].build().state.summaries(), 10, "the card summary")
    version = await (await server.client.get("/version", headers=HOST)).json()
    assert version["signatureAlgorithms"] == "RSA" and version["hashAlgorithms"] != ""


async def test_not_yet_valid_is_never_offered(card_with) -> None:
    server = await card_with("sign=30:400")
    starts = server.card.identity.sign.cert.not_before.date().isoformat()
    answer = await server.sign({"content": b64(b"a contract"), "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer["reasonCode"] == 404
    assert answer["reasonText"] == f"the only matching certificate is not valid before {starts}"
    assert (await server.sign({"content": b64(AUTH_CONTENT)}))["status"] == "ok"
    assert [c.role for c in server.dialog.requests[0].choices] == ["authentication"]


async def test_expiring_is_offered_with_the_warning(card_with) -> None:
    server = await card_with("sign=10")
    assert (await server.sign({"content": b64(AUTH_CONTENT)}))["status"] == "ok"
    choices = {c.role: c for c in server.dialog.requests[0].choices}
    assert choices["signature"].expiring_soon and not choices["authentication"].expiring_soon
    assert choices["signature"].not_after == server.card.identity.sign.cert.not_after.date().isoformat()
    quiet = await card_with("sign=10", cert_expiration_warning_days=5)  # outside a 5-day window
    assert (await quiet.sign({"content": b64(AUTH_CONTENT)}))["status"] == "ok"
    assert not any(c.expiring_soon for c in quiet.dialog.requests[0].choices)


async def test_just_expired_and_just_valid(card_with) -> None:
    """Seconds either side of notAfter, through the whole service."""
    server = await card_with("sign=-0.0002")  # expired 17 s ago
    answer = await server.sign({"content": b64(b"x"), "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer["reasonCode"] == 404 and "expired on" in answer["reasonText"]
    server = await card_with("sign=0.002")  # three minutes left
    answer = await server.sign({"content": b64(b"x"), "selector": {"keyusages": ["nonrepudiation"]}})
    assert answer["status"] == "ok" and server.dialog.requests[0].choices[0].expiring_soon


async def test_strict_key_policy_with_only_an_expired_key_of_that_algorithm(card_with) -> None:
    """fineid-v3: RSA authentication valid, EC signature key expired. Non-strict, EC is a preference and the
    RSA key is offered; strict, the only EC key is expired and the 404 says so."""
    server = await card_with("sign=-1", profile="fineid-v3")
    answer = await server.sign({"content": b64(AUTH_CONTENT), "selector": {"keyalgorithms": ["ec"]}})
    assert answer["status"] == "ok" and server.dialog.requests[0].relaxed_algorithm
    strict = await server.sign({"content": b64(AUTH_CONTENT), "selector": {"keyalgorithms": ["ec"]},
                                "strictKeyPolicy": True})
    assert strict["reasonCode"] == 404 and strict["reasonText"].startswith("the only matching certificate expired")


# --- insertion, playground ---------------------------------------------------------------------


def test_insertion_logs_expired_and_expiring(expiry_state: Path, caplog: pytest.LogCaptureFixture) -> None:
    identity = pki.load_or_create(expiry_state, "fineid-v4", pki.parse_cert_days("sign=-1,auth=10"))
    manager = CardManager(source=VirtualReader(VirtualCard("fineid-v4", identity=identity)))
    state = CardState(manager, warning_days=30)
    manager.start()
    try:
        manager.wait_settled(5)
        [reader] = manager.readers()
        with caplog.at_level(logging.WARNING, logger="digisign_web.scs.card_state"):
            state.refresh(reader)
    finally:
        manager.stop()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    cn = "SPECIMEN-TESTINEN TIINA 99901001P"
    expired_on = identity.sign.cert.not_after.date().isoformat()
    assert len(lines) == 2, lines
    assert any(cn in line and "signature" in line and f"expired on {expired_on}" in line
               and "not be offered" in line for line in lines), lines
    assert any(cn in line and "authentication" in line and "(in 9 days)" in line
               and "certExpirationWarningDays=30" in line for line in lines), lines
    [summary] = state.summaries()
    assert [c["validity"] for c in summary.certificates] == ["expiring", "expired", "valid", "valid"]


def test_insertion_of_a_valid_card_logs_nothing(expiry_state: Path, caplog: pytest.LogCaptureFixture) -> None:
    identity = pki.load_or_create(expiry_state, "fineid-v4", pki.parse_cert_days("auth=10"))
    manager = CardManager(source=VirtualReader(VirtualCard("fineid-v4", identity=identity)))
    state = CardState(manager, warning_days=9)  # 9 days 23 hours left: outside the window
    manager.start()
    try:
        manager.wait_settled(5)
        with caplog.at_level(logging.WARNING, logger="digisign_web.scs.card_state"):
            state.refresh(next(iter(manager.readers())))
    finally:
        manager.stop()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_playground_status_has_the_badges_data(card_with) -> None:
    server = await card_with("sign=-1,auth=10")
    await async_wait_until(lambda: server.client.app[CORE].build().state.summaries(), 10, "the card summary")
    status = await (await server.client.get("/playground/status", headers=HOST)).json()
    certificates = status["readers"][0]["token"]["certificates"]
    by_role = {c["role"]: c for c in certificates if c["role"] != "ca"}
    assert by_role["signature"]["validity"] == "expired" and by_role["signature"]["daysLeft"] < 0
    assert by_role["authentication"]["validity"] == "expiring" and by_role["authentication"]["daysLeft"] == 9


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, expiry_state: Path) -> Path:
    """An empty XDG_CONFIG_HOME (no DigiSign.conf but the test's) for in-process ``main``."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DIGISIGN_CONF", raising=False)
    return tmp_path


def run_main(*args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_expiry(cli_home: Path, expiry_state: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(pki.CERT_DAYS_ENV, "sign=-1,auth=10")
    common = ("list", "--virtual-card", "fineid-v4", "--state-dir", str(expiry_state), "--wait", "1")
    code, out, _err = run_main(*common, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0
    sign = pki.load_or_create(expiry_state, "fineid-v4").sign.cert.not_after.date().isoformat()
    assert f"validity:  EXPIRED: expired on {sign}; never offered for signing" in out
    assert "validity:  EXPIRES SOON: expires " in out and "(in 9 days)" in out
    assert "validity:  expires " in out  # the CA certificates
    code, out, _err = run_main(*common, "--json", monkeypatch=monkeypatch, capsys=capsys)
    certificates = json.loads(out)["tokens"][0]["certificates"]
    assert [(c["role"], c["validity"]) for c in certificates] == [
        ("authentication", "expiring"), ("signature", "expired"), ("ca", "valid"), ("ca", "valid")]
    assert certificates[0]["days_left"] == 9 and certificates[1]["days_left"] < 0
    # certExpirationWarningDays from DigiSign.conf: a 5-day window leaves 9 days outside it.
    config = cli_home / "DigiSign.conf"
    config.write_text("certExpirationWarningDays=5\n")
    code, out, _err = run_main(*common, "--json", "--config", str(config), monkeypatch=monkeypatch, capsys=capsys)
    assert json.loads(out)["tokens"][0]["certificates"][0]["validity"] == "valid"


def test_sign_refuses_an_expired_key_and_warns_of_an_expiring_one(cli_home: Path, expiry_state: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data, out = cli_home / "data.txt", cli_home / "data.sig"
    data.write_bytes(b"hello")
    common = ("sign", "--type", "signature", "--in", str(data), "--out", str(out), "--virtual-card", "fineid-v4",
              "--state-dir", str(expiry_state), "--pin-stdin", "--wait", "1")
    monkeypatch.setenv(pki.CERT_DAYS_ENV, "sign=-1,auth=10")
    code, _out, err = run_main(*common, monkeypatch=monkeypatch, capsys=capsys, stdin="123456\n")
    assert code == 2 and "expired on" in err and "cannot be used to sign" in err and not out.exists()
    code, _out, err = run_main(*common, "--key", "auth", monkeypatch=monkeypatch, capsys=capsys, stdin="1234\n")
    assert code == 0, err
    assert "warning: the authentication certificate expires" in err and "(in 9 days)" in err and out.exists()
