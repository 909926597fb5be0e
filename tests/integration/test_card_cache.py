"""The smart-card cache through pcscd and vpcd (D56, D57): `list --stats` twice, and `serve` with a card pulled
out and pushed back in. Run with `flock /tmp/vpcd.lock` (the pcscd lane shares the vpcd ports)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from card.readers import reader_atr
from tests.support.cli import run_cli
from tests.support.wait import wait_until

# What a known fineid-v4 card is still read for: EF.TokenInfo, EF.OD, AODF, PrKDF and CDF, one block each.
DIRECTORY_FILES = 5


def _list(config: Path) -> tuple[list[dict], dict]:
    result = run_cli("list", "--json", "--stats", "--config", str(config))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [stats] = data["apdu_stats"]
    return data["tokens"], stats


def test_list_twice_reads_no_certificate_file_the_second_time(vpcd_card, tmp_path: Path) -> None:
    vpcd_card("fineid-v4")
    cards = tmp_path / "shared" / "cards"
    config = tmp_path / "DigiSign.conf"
    config.write_text(f"SmartCardSNCache=2\nSmartCardCachePath={cards}\n")
    cold_tokens, cold = _list(config)
    [cached_file] = cards.iterdir()
    assert stat.S_IMODE(cached_file.stat().st_mode) == 0o600 and stat.S_IMODE(cards.stat().st_mode) == 0o700
    warm_tokens, warm = _list(config)
    assert warm_tokens == cold_tokens
    # Four certificates in 0xB5-byte blocks the first time; the second time only the directory files.
    assert cold["by_command"]["READ BINARY"] >= DIRECTORY_FILES + 4 * 3
    assert warm["by_command"]["READ BINARY"] == DIRECTORY_FILES, warm["by_command"]
    assert warm["apdus"] < cold["apdus"] and warm["bytes_received"] < cold["bytes_received"] / 3
    # SmartCardSNCache=0: no cache, every run cold.
    config.write_text(f"SmartCardSNCache=0\nSmartCardCachePath={tmp_path / 'off'}\n")
    _, off = _list(config)
    assert off["by_command"]["READ BINARY"] == cold["by_command"]["READ BINARY"]
    assert not (tmp_path / "off").exists()


def test_serve_reads_a_reinserted_card_from_the_cache(vpcd_card, served) -> None:
    card = vpcd_card("fineid-v4")
    server = served("--dialog", "auto", virtual_card=None)  # the default: mode 3 under $XDG_CACHE_HOME
    cards = Path(os.environ["XDG_CACHE_HOME"]) / "digisign-web" / "cards"
    wait_until(lambda: cards.is_dir() and any(cards.iterdir()), 15, "the card read at start to be cached")
    assert "certificates from the card cache" not in server.log()
    card.toggle()
    wait_until(lambda: reader_atr(card.reader) is None, 10, "card removal")
    card.toggle()
    wait_until(lambda: "certificates from the card cache" in server.log(), 15, "the re-inserted card from the cache")
    assert stat.S_IMODE((cards.parent / "card-cache.key").stat().st_mode) == 0o600
