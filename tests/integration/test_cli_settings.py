"""`list` and `sign` read DigiSign.conf as `serve` does (D52), through the real stack: two virtual cards in
pcscd (vpcd slots 00 and 01), a DigiSign.conf whose excludeReader leaves one of them, from
$XDG_CONFIG_HOME/digisign-web/DigiSign.conf and from --config; the command line's options win over the file;
a missing --config file is one line and exit 2; the file's warnings are shown once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_env, run_cli
from tests.support.paths import ROOT

pytestmark = pytest.mark.pcscd

SLOT0, SLOT1 = "Virtual PCD 00 00", "Virtual PCD 00 01"


@pytest.fixture
def two_cards(vpcd_card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """fineid-v4 in slot 00 and fineid-v3 in slot 01; an empty XDG_CONFIG_HOME whose path is returned."""
    vpcd_card("fineid-v4", port=35963)
    vpcd_card("fineid-v3", port=35964)
    config_home = tmp_path / "config"
    (config_home / "digisign-web").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.delenv("DIGISIGN_CONF", raising=False)
    return config_home


def listed(*args: str) -> dict[str, str]:
    """`list --json ARGS` -> {reader: profile} of the tokens it found (and it must have succeeded)."""
    result = run_cli("list", "--json", *args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    readers = {r["name"] for r in data["readers"]}
    tokens = {t["reader"]: t["profile"] for t in data["tokens"]}
    assert set(tokens) <= readers
    return tokens


def signed_in(tmp_path: Path, *args: str) -> str:
    """`sign --type cms ARGS` with PIN2 on stdin -> the reader it says it signed in (it must have succeeded)."""
    data, out = tmp_path / "data.txt", tmp_path / "data.p7s"
    data.write_bytes(b"which card?")
    out.unlink(missing_ok=True)
    result = subprocess.run([sys.executable, "-m", "digisign_web", "sign", "--type", "cms", "--in", str(data),
                             "--out", str(out), "--pin-stdin", *args], cwd=ROOT, env=cli_env(), input="123456\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0
    line = next(line for line in result.stderr.splitlines() if line.startswith("Signing "))
    return line.rsplit(" in ", 1)[1]


def test_user_file_exclude_reader_applies_to_list_and_sign(two_cards: Path, tmp_path: Path) -> None:
    assert listed() == {SLOT0: "fineid-v4", SLOT1: "fineid-v3"}  # no file: both cards
    (two_cards / "digisign-web" / "DigiSign.conf").write_text("excludeReader=*PCD*00\n")
    assert listed() == {SLOT1: "fineid-v3"}
    assert signed_in(tmp_path) == SLOT1  # without the file, sign takes the first card: slot 00
    # The command line wins over the file.
    assert listed("--exclude-reader", "*PCD*01") == {SLOT0: "fineid-v4"}
    assert signed_in(tmp_path, "--exclude-reader", "*PCD*01") == SLOT0


def test_config_option_applies_and_wins_over_the_user_file(two_cards: Path, tmp_path: Path) -> None:
    (two_cards / "digisign-web" / "DigiSign.conf").write_text("excludeReader=*PCD*00\n")
    config = tmp_path / "other.conf"
    config.write_text("excludeReader=*PCD*01\nnoSuchSetting=1\n")
    result = run_cli("list", "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert {t["reader"] for t in json.loads(result.stdout)["tokens"]} == {SLOT0}
    assert result.stderr.count("unknown setting noSuchSetting") == 1  # the file's warning, once
    assert signed_in(tmp_path, "--config", str(config)) == SLOT0
    # A label filter from the file applies too: fineid-v4's token is labelled FINEID, like the other one.
    config.write_text("validTokenInfoLabel=NOT-THIS-CARD*\n")
    result = run_cli("list", "--json", "--config", str(config))
    data = json.loads(result.stdout)
    assert data["tokens"] == [] and all("validTokenInfoLabel" in (r["problem"] or "") for r in data["readers"]
                                        if r["name"] in (SLOT0, SLOT1))


@pytest.mark.parametrize("command", [["list"], ["sign", "--type", "cms", "--in", "/dev/null", "--out", "OUT"]])
def test_missing_config_file_is_one_line(pcscd: None, tmp_path: Path, command: list[str]) -> None:
    args = [str(tmp_path / "out.p7s") if a == "OUT" else a for a in command]
    result = run_cli(*args, "--config", str(tmp_path / "missing.conf"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "missing.conf" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
