"""An expired certificate end to end (D50–D52): `serve --virtual-card --cert-days sign=-1` as a real process
over HTTPS, and a virtual card with an expired signature certificate in pcscd (through vpcd) for `list` and
`sign`. The signature certificate has expired, the authentication one is valid."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from card import CardCertificate
from card.virtual import pki
from tests.support.cli import run_cli
from tests.support.servers import ORIGIN
from tests.support.wait import wait_until

AUTH_CONTENT = f"{ORIGIN};".encode() + b"n" * 64  # what the authentication key may sign (D22)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_serve_never_offers_the_expired_signature_certificate(served, tmp_path: Path) -> None:
    server = served("--cert-days", "sign=-1")
    sign_pem = tmp_path / "s0" / "state" / "virtual-card" / "fineid-v4" / "sign.pem"
    expired_on = CardCertificate.from_pem(sign_pem.read_text()).not_after.date().isoformat()
    expired = asyncio.run(server.post({"content": b64(b"a contract"),
                                       "selector": {"keyusages": ["nonrepudiation"]}}))
    assert expired == {"version": "1.1", "status": "failed", "reasonCode": 404,
                       "reasonText": f"the only matching certificate expired on {expired_on}"}
    # Without a selector the authentication key (valid) is offered, and the automatic dialog signs with it.
    answer = asyncio.run(server.post({"content": b64(AUTH_CONTENT)}))
    assert answer["status"] == "ok", answer
    leaf = CardCertificate.load(base64.b64decode(answer["chain"][0]))
    assert "digital_signature" in leaf.key_usage and "non_repudiation" not in leaf.key_usage
    # /version answers from the card's summary, built in the background when the card was read.
    wait_until(lambda: asyncio.run(server.version())["signatureAlgorithms"], 10, "the card's summary")
    assert asyncio.run(server.version())["signatureAlgorithms"] == "ECDSA"  # the authentication key can sign (D51)
    log = server.log()
    assert "WARNING" in log and "the signature certificate of SPECIMEN-TESTINEN TIINA" in log
    assert f"expired on {expired_on}; it will not be offered for signing" in log


def test_serve_with_every_certificate_expired_has_no_usable_card(served) -> None:
    server = served("--cert-days", "sign=-3,auth=-2")
    answer = asyncio.run(server.post({"content": b64(AUTH_CONTENT)}))
    assert answer["reasonCode"] == 404
    assert answer["reasonText"].startswith("the only matching certificates expired on ")
    wait_until(lambda: "will not be offered" in server.log(), 10, "the card read and logged")
    version = asyncio.run(server.version())
    assert version["hashAlgorithms"] == "" and version["signatureAlgorithms"] == ""


def test_cert_days_needs_the_virtual_card(tmp_path: Path) -> None:
    result = run_cli("serve", "--cert-days", "sign=-1", "--state-dir", str(tmp_path))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--virtual-card" in result.stderr
    result = run_cli("virtual-card", "--cert-days", "root=1")
    assert result.returncode == 2 and "--cert-days" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.pcscd
def test_expired_card_in_pcscd_list_and_sign(vpcd_card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vpcd card process gets the period from the environment; `list` and `sign` read it through pcscd."""
    monkeypatch.setenv(pki.CERT_DAYS_ENV, "sign=-1,auth=10")
    card = vpcd_card("fineid-v4", port=35963)
    monkeypatch.delenv(pki.CERT_DAYS_ENV)  # list and sign read the card, not the variable
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("DIGISIGN_CONF", raising=False)
    listed = run_cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    [token] = [t for t in json.loads(listed.stdout)["tokens"] if t["reader"] == card.reader]
    validity = {c["role"]: c["validity"] for c in token["certificates"] if c["role"] != "ca"}
    assert validity == {"authentication": "expiring", "signature": "expired"}
    text = run_cli("list").stdout
    assert "EXPIRED: expired on " in text and "EXPIRES SOON: expires " in text
    data = tmp_path / "data.txt"
    data.write_bytes(b"hello")
    signed = run_cli("sign", "--type", "signature", "--in", str(data), "--out", str(tmp_path / "s.sig"),
                     "--reader", card.reader, "--pin-stdin")
    assert signed.returncode == 2 and "expired on" in signed.stderr and not (tmp_path / "s.sig").exists()
