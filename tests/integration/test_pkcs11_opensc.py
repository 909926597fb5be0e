"""OpenSC's PKCS#11 module (opensc-pkcs11.so, a stack we did not write) reading the virtual FINEID card through
pcscd and vpcd, as `digisign-web list --pkcs11-module` shows it, next to our direct driver's view of the same card.

OpenSC 0.23 (Debian 12) binds the card with its generic PKCS#15 driver only (tests/support/opensc.py), which
registers no algorithms: the module lists the card's certificates and keys but offers no signature mechanism, so
a signature through it fails with CKR_MECHANISM_INVALID (F41). The test proves that failure is clean; a
signature through OpenSC that verifies needs an OpenSC with a FINEID driver. Run with ``flock /tmp/vpcd.lock``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.cli import cli_env
from tests.support.opensc import OpenScModule
from tests.support.paths import ROOT

MODULE_SUFFIX = "(PKCS#11: opensc-pkcs11.so)"


def cli(opensc: OpenScModule, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digisign_web", *args], cwd=ROOT, env={**cli_env(), **opensc.env},
                          input=stdin, capture_output=True, text=True, timeout=120)


def listing(opensc: OpenScModule, *args: str) -> dict:
    result = cli(opensc, "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def certificates(tokens: list[dict]) -> set[tuple[str, str]]:
    return {(c["role"], c["serial_number"]) for token in tokens for c in token["certificates"]}


def test_list_through_opensc_shows_the_cards_certificates(vpcd_card, opensc_pkcs11: OpenScModule) -> None:
    card = vpcd_card("fineid-v4")
    direct = listing(opensc_pkcs11, "--stats")  # our driver over PC/SC, no module
    ours = [t for t in direct["tokens"] if t["reader"] == card.reader]
    assert len(ours) == 1
    stats = next(s for s in direct["apdu_stats"] if s["reader"] == card.reader)
    direct_apdus = stats["apdus"]

    before = len(opensc_pkcs11.apdus())
    through = listing(opensc_pkcs11, "--pkcs11-module", str(opensc_pkcs11.module), "--exclude-reader", "*")
    sent = opensc_pkcs11.apdus()[before:]
    opensc_apdus = len(sent)
    theirs = [t for t in through["tokens"] if t["reader"].startswith(card.reader + " ")]
    # OpenSC makes one slot per PIN: the authentication certificate in the PIN1 slot, the signature one in PIN2's.
    assert len(theirs) == 2, [t["reader"] for t in through["tokens"]]
    assert all(t["reader"].endswith(MODULE_SUFFIX) for t in theirs)
    assert certificates(theirs) == certificates(ours)
    roles = {t["reader"]: {c["role"] for c in t["certificates"]} for t in theirs}
    assert sorted(r - {"ca"} for r in roles.values()) == [{"authentication"}, {"signature"}], roles
    # F41: what reading the card costs each stack (recorded in docs/decisions.md).
    by_ins = Counter(header.split()[1] for header in sent if header)
    print(f"list APDUs: direct driver {direct_apdus} {stats['by_command']}, OpenSC {opensc_apdus} by INS {by_ins}")
    assert 0 < direct_apdus < opensc_apdus


def test_the_same_card_through_both_appears_once(vpcd_card, opensc_pkcs11: OpenScModule, tmp_path: Path) -> None:
    card = vpcd_card("fineid-v4")
    both = listing(opensc_pkcs11, "--pkcs11-module", str(opensc_pkcs11.module))
    readers = [t["reader"] for t in both["tokens"] if t["reader"].startswith(card.reader)]
    assert readers == [card.reader], readers  # the direct driver is preferred

    conf = tmp_path / "DigiSign.conf"
    conf.write_text("pkcs11Preferred=1\n")
    preferred = listing(opensc_pkcs11, "--pkcs11-module", str(opensc_pkcs11.module), "--config", str(conf))
    readers = [t["reader"] for t in preferred["tokens"] if t["reader"].startswith(card.reader)]
    assert readers and all(r.endswith(MODULE_SUFFIX) for r in readers), readers


def test_a_signature_through_opensc_fails_cleanly(vpcd_card, opensc_pkcs11: OpenScModule, tmp_path: Path) -> None:
    """F41: OpenSC 0.23's generic driver offers no signature mechanism; the CLI says so in one line."""
    card = vpcd_card("fineid-v4")
    through = listing(opensc_pkcs11, "--pkcs11-module", str(opensc_pkcs11.module), "--exclude-reader", "*")
    (pin2_slot,) = [t["reader"] for t in through["tokens"]
                    if t["reader"].startswith(card.reader) and any(c["role"] == "signature" for c in t["certificates"])]
    (tmp_path / "doc.txt").write_bytes(b"hello")
    result = cli(opensc_pkcs11, "sign", "--type", "cms", "--in", str(tmp_path / "doc.txt"), "--out",
                 str(tmp_path / "doc.p7s"), "--pkcs11-module", str(opensc_pkcs11.module), "--exclude-reader", "*",
                 "--reader", pin2_slot, "--pin-stdin", stdin="123456\n")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error:") and "CKR_MECHANISM_INVALID" in error, result.stderr
    assert not (tmp_path / "doc.p7s").exists()
