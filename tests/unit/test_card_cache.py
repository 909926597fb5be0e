"""The smart-card cache (SmartCardSNCache 0-3, SmartCardCachePath; D56-D59) with the in-process virtual card.

A known card's certificates come from the cache without one READ BINARY of a certificate file (counted by
the card itself), a card that changed is read again, and a cache file that is damaged, foreign, of another
version, mode or card is ignored and rewritten, never trusted."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import logging
import os
import stat
import types
from collections import Counter
from pathlib import Path

import pytest

from card import CardManager, CardPolicy, CardRemovedError, Token
from card import token as token_module
from card.cache import FIXED_KEY, MAGIC, CardCache, CardSnapshot, MachineUserKey
from card.pkcs15 import FID_OD
from card.virtual import VirtualCard
from card.virtual.pki import LeafMaterial, load_or_create
from card.virtual.source import InProcessTransport, VirtualReader
from digisign_web.settings import Settings, card_policy
from tests.support.cards import PIN1, PIN2, by_role, verify

CERT_FIDS = {"4331", "4332", "4333", "4334", "4335", "4336"}  # every certificate file of every virtual layout


class FileReadingCard(VirtualCard):
    """The virtual card, also noting which file each READ BINARY reads (the card's own current EF)."""

    def __init__(self, *args, **kwargs):
        self.file_reads: Counter[str] = Counter()
        super().__init__(*args, **kwargs)

    def _read_binary(self, c):
        if self._current_ef is not None:
            self.file_reads[self._current_ef.fid.hex().upper()] += 1
        return super()._read_binary(c)

    @property
    def certificate_reads(self) -> int:
        return sum(n for fid, n in self.file_reads.items() if fid in CERT_FIDS)


def machine_key(directory: Path, user: str = "me") -> MachineUserKey:
    return MachineUserKey(directory / f"{user}.key")


def make_cache(directory: Path, mode: int, user: str = "me") -> CardCache:
    return CardCache(directory / "cards", mode, machine_key(directory, user) if mode == 3 else None)


def insert(card: FileReadingCard, cache: CardCache | None) -> Token:
    """A fresh insertion: counters reset, token opened, certificates (and so PINs and keys) read."""
    card.stats.reset()
    card.file_reads.clear()
    card.insert()
    token = Token.open(InProcessTransport(card), cache=cache)
    token.certificates()
    return token


def snapshot_of(token: Token) -> tuple:
    return ([c.der for c in token.certificates()], token.pins, token.keys, token.token_info)


@pytest.fixture
def v4(state_dir: Path) -> FileReadingCard:
    return FileReadingCard("fineid-v4", state_dir)


# -- cold, then cached ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", [1, 2, 3])
def test_a_known_card_is_served_without_reading_a_certificate_file(v4: FileReadingCard, tmp_path: Path,
                                                                   mode: int) -> None:
    cache = make_cache(tmp_path, mode)
    cold = insert(v4, cache)
    cold_apdus, cold_bytes = v4.stats.apdus, v4.stats.bytes_sent
    assert cold.cache_state == "stored"
    assert v4.file_reads["4331"] > 1 and v4.certificate_reads >= 4 * 3  # four certificates of 0xB5-byte blocks

    warm = insert(v4, cache)
    assert warm.cache_state == "cached"
    assert v4.certificate_reads == 0, dict(v4.file_reads)
    # What was read: EF.TokenInfo and the PKCS#15 directory (compared with the cache), one block each.
    assert set(v4.file_reads) == {"5032", "5031", "4401", "4402", "4404"}
    assert v4.stats.apdus < cold_apdus and v4.stats.bytes_sent < cold_bytes / 3
    assert snapshot_of(warm) == snapshot_of(cold)
    # The cached token signs, and the signature is under the cached certificate's key.
    digest = hashlib.sha384(b"cached").digest()
    signature = warm.sign_digest(by_role(warm, "signature"), "SHA384", digest, pin=PIN2)
    verify(by_role(warm, "signature"), "SHA384", digest, signature)


@pytest.mark.parametrize("profile", ["fineid-org"])  # DF.ESIGN under the MF, a DF-local key
def test_other_layouts_are_cached_too(state_dir: Path, tmp_path: Path, profile: str) -> None:
    card = FileReadingCard(profile, state_dir)
    cache = make_cache(tmp_path, 3)
    cold = insert(card, cache)
    assert card.certificate_reads > 0
    warm = insert(card, cache)
    assert warm.cache_state == "cached" and card.certificate_reads == 0
    assert snapshot_of(warm) == snapshot_of(cold)


def test_a_card_without_pkcs15_directory_files_is_cached_by_its_known_layout(v4: FileReadingCard,
                                                                             tmp_path: Path) -> None:
    """As the real FINEID cards seem to be (EF.TokenInfo, no readable EF.OD): the absent files are checked
    to be still absent, the certificate files by their FCP size."""
    del v4.app.children[FID_OD]
    cache = make_cache(tmp_path, 3)
    cold = insert(v4, cache)
    assert cold._known_layout and v4.certificate_reads > 0
    warm = insert(v4, cache)
    assert warm.cache_state == "cached" and warm._known_layout
    assert v4.certificate_reads == 0 and set(v4.file_reads) == {"5032"}
    assert snapshot_of(warm) == snapshot_of(cold)


def test_a_card_without_a_serial_is_not_cached(state_dir: Path, tmp_path: Path) -> None:
    """The recordings of real cards hold no EF.TokenInfo: nothing to key a cache file on."""
    card = FileReadingCard("fineid-v4", state_dir, pkcs15=False)
    cache = make_cache(tmp_path, 3)
    for _ in range(2):
        token = insert(card, cache)
        assert token.cache_state == "uncacheable" and card.certificate_reads > 0
    assert not (tmp_path / "cards").exists()


def test_mode_0_is_no_cache_and_the_settings_build_the_others(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert card_policy(Settings(smart_card_sn_cache=0)).cache is None
    with pytest.raises(ValueError):
        CardCache(tmp_path, 0)
    default = card_policy(Settings()).cache
    assert default is not None and default.mode == 3  # the vendor's default
    assert default.directory == tmp_path / "xdg" / "digisign-web" / "cards"
    assert isinstance(default.key, MachineUserKey)
    assert default.key.secret_path == tmp_path / "xdg" / "digisign-web" / "card-cache.key"
    shared = card_policy(Settings(smart_card_sn_cache=2, smart_card_cache_path=str(tmp_path / "shared"))).cache
    assert shared is not None and shared.directory == tmp_path / "shared" and shared.key() == FIXED_KEY
    plain = card_policy(Settings(smart_card_sn_cache=1)).cache
    assert plain is not None and plain.mode == 1 and plain.key is None
    assert not (tmp_path / "xdg").exists()  # nothing is created before a card is read


def test_plain_and_encrypted_files(v4: FileReadingCard, tmp_path: Path) -> None:
    cert = v4.identity.auth.cert.der
    for mode in (1, 2, 3):
        cache = make_cache(tmp_path / str(mode), mode)
        token = insert(v4, cache)
        raw = cache.path_for(token.serial).read_bytes()
        assert raw.startswith(MAGIC + bytes((1, mode)))
        readable = base64.b64encode(cert) in raw
        assert readable == (mode == 1)  # modes 2 and 3 hold no certificate text
        assert token.serial.encode() not in cache.path_for(token.serial).name.encode()


def test_files_are_private_and_written_atomically(v4: FileReadingCard, tmp_path: Path) -> None:
    loose = tmp_path / "cards"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    cache = make_cache(tmp_path, 3)
    token = insert(v4, cache)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700  # ours, and was open to others: tightened
    assert stat.S_IMODE(cache.path_for(token.serial).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "me.key").stat().st_mode) == 0o600
    assert [p.name for p in loose.iterdir()] == [cache.path_for(token.serial).name]  # no temp file left
    nested = make_cache(tmp_path / "a" / "b", 1)
    insert(v4, nested)
    assert stat.S_IMODE(nested.directory.stat().st_mode) == 0o700


# -- files not to be trusted ---------------------------------------------------------------------------

_BAD_JSON = b'{"format": 1, "serial": '


def _flip(raw: bytes) -> bytes:
    return raw[:-5] + bytes((raw[-5] ^ 0x01,)) + raw[-4:]


DAMAGE = {
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[: len(raw) // 2],
    "header only": lambda raw: raw[: len(MAGIC) + 2],
    "garbage": lambda raw: os.urandom(len(raw)),
    "one bit flipped": _flip,
    "newer format": lambda raw: MAGIC + bytes((2,)) + raw[len(MAGIC) + 1:],
    # Checksummed, so that it is the parser that refuses it.
    "not json": lambda raw: raw[: len(MAGIC) + 2] + hashlib.sha256(_BAD_JSON).digest() + _BAD_JSON,
}


# Every damage to a plain file; an encrypted one is authenticated before it is parsed, so fewer cases differ.
@pytest.mark.parametrize(("mode", "damage"), [(1, damage) for damage in DAMAGE]
                         + [(3, damage) for damage in ("truncated", "one bit flipped", "newer format")])
def test_a_damaged_file_is_ignored_and_rewritten(v4: FileReadingCard, tmp_path: Path, mode: int, damage: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    cache = make_cache(tmp_path, mode)
    cold = insert(v4, cache)
    path = cache.path_for(cold.serial)
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    caplog.set_level(logging.INFO, "card")
    again = insert(v4, cache)
    assert again.cache_state == "stored" and v4.certificate_reads > 0  # read normally, then rewritten
    assert snapshot_of(again) == snapshot_of(cold)
    ignored = [r for r in caplog.records if "ignored" in r.getMessage()]
    assert ignored and all(r.levelno in (logging.INFO, logging.WARNING) for r in ignored)
    assert all(cold.serial not in r.getMessage() and "MII" not in r.getMessage() for r in caplog.records)
    assert insert(v4, cache).cache_state == "cached" and v4.certificate_reads == 0


def test_a_file_of_another_card_or_owner_is_ignored(v4: FileReadingCard, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "card")
    for mode in (1, 3):
        cache = make_cache(tmp_path / str(mode), mode)
        cold = insert(v4, cache)
        path = cache.path_for(cold.serial)
        # Another card's snapshot under this card's name: plain says so, encrypted fails to authenticate.
        other = cache.path_for("FI000000999999999")
        cache.store(dataclasses.replace(cache.load(cold.serial, cold.atr), serial="FI000000999999999"))
        other.replace(path)
        assert insert(v4, cache).cache_state == "stored" and v4.certificate_reads > 0
        # A file others could write is not trusted, whatever it holds; nor is a symlink.
        path.chmod(0o644)
        assert insert(v4, cache).cache_state == "stored" and v4.certificate_reads > 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        target = tmp_path / f"elsewhere{mode}"
        path.replace(target)
        path.symlink_to(target)
        assert insert(v4, cache).cache_state == "stored" and v4.certificate_reads > 0
        assert not path.is_symlink()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "holds another card" in messages and "not a private file" in messages


def test_mode_3_is_bound_to_the_user_and_the_machine(v4: FileReadingCard, tmp_path: Path) -> None:
    mine = make_cache(tmp_path, 3, user="me")
    insert(v4, mine)
    theirs = make_cache(tmp_path, 3, user="someone-else")  # the same file, another user's secret
    assert insert(v4, theirs).cache_state == "stored" and v4.certificate_reads > 0
    assert insert(v4, mine).cache_state == "stored"  # and now theirs is foreign to me
    machine_id = tmp_path / "other-machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    elsewhere = CardCache(mine.directory, 3, MachineUserKey(tmp_path / "me.key", machine_id_paths=(str(machine_id),)))
    assert insert(v4, elsewhere).cache_state == "stored" and v4.certificate_reads > 0
    other_uid = CardCache(mine.directory, 3, MachineUserKey(tmp_path / "me.key", uid=os.getuid() + 1))
    assert insert(v4, other_uid).cache_state == "stored"


def test_modes_2_and_3_do_not_read_each_other(v4: FileReadingCard, tmp_path: Path) -> None:
    three, two = make_cache(tmp_path, 3), make_cache(tmp_path, 2)
    serial = insert(v4, three).serial
    path = three.path_for(serial)
    assert insert(v4, two).cache_state == "stored" and v4.certificate_reads > 0  # a mode-3 file, ignored
    raw = path.read_bytes()  # now mode 2: relabelled as mode 3 it does not decrypt
    path.write_bytes(raw[: len(MAGIC) + 1] + b"\x03" + raw[len(MAGIC) + 2:])
    assert insert(v4, three).cache_state == "stored" and v4.certificate_reads > 0
    raw = path.read_bytes()  # a mode-3 file relabelled as mode 2 does not decrypt with the fixed key either
    path.write_bytes(raw[: len(MAGIC) + 1] + b"\x02" + raw[len(MAGIC) + 2:])
    assert insert(v4, two).cache_state == "stored" and v4.certificate_reads > 0


def test_a_mode_2_file_is_shared_between_computers(v4: FileReadingCard, tmp_path: Path) -> None:
    here = make_cache(tmp_path / "here", 2)
    serial = insert(v4, here).serial
    there = make_cache(tmp_path / "there", 2)
    there.directory.mkdir(parents=True, mode=0o700)
    there.path_for(serial).write_bytes(here.path_for(serial).read_bytes())
    there.path_for(serial).chmod(0o600)
    assert insert(v4, there).cache_state == "cached" and v4.certificate_reads == 0


def test_a_cache_that_fails_never_fails_the_card(v4: FileReadingCard, tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    bad_key = CardCache(tmp_path / "cards", 2, lambda: b"too short")
    for cache in (CardCache(in_the_way / "cards", 1), bad_key, bad_key):
        token = insert(v4, cache)
        assert token.cache_state == "cold" and v4.certificate_reads > 0
        assert [c.role for c in token.certificates()] == ["authentication", "signature", "ca", "ca"]


# -- a card that changed ---------------------------------------------------------------------------------

def _repersonalised(state_dir: Path, tmp_path: Path, card: VirtualCard) -> object:
    """The same card number with a new PKI (keys and certificates) from another state directory."""
    return dataclasses.replace(load_or_create(tmp_path / "other-state", card.name), serial=card.identity.serial)


def test_a_repersonalised_card_is_read_again(v4: FileReadingCard, state_dir: Path, tmp_path: Path) -> None:
    """Re-personalised as PKCS#15 asks (a new EF.TokenInfo): the same serial, new keys and certificates."""
    cache = make_cache(tmp_path, 3)
    insert(v4, cache)
    card = FileReadingCard("fineid-v4", identity=_repersonalised(state_dir, tmp_path, v4),
                           token_label="FINEID 2")
    token = insert(card, cache)
    assert token.serial == v4.identity.serial and card.certificate_reads > 0
    assert by_role(token, "authentication").der == card.identity.auth.cert.der
    assert insert(card, cache).cache_state == "cached"  # the file now holds the new card


def test_a_replaced_certificate_file_is_seen_by_its_size(v4: FileReadingCard, tmp_path: Path) -> None:
    """Nothing but one certificate file changed: its FCP size tells."""
    cache = make_cache(tmp_path, 3)
    insert(v4, cache)
    auth = v4.app.children[bytes.fromhex("4331")]
    replacement = v4.identity.root.der
    assert len(replacement) != len(auth.data)
    auth.data = replacement
    token = insert(v4, cache)
    assert token.cache_state == "stored" and v4.file_reads["4331"] > 0
    assert replacement in [c.der for c in token.certificates()]


def test_a_rekeyed_card_with_unchanged_files_never_signs_under_a_cached_certificate(
        v4: FileReadingCard, state_dir: Path, tmp_path: Path) -> None:
    """The case no cheap check sees (same files, new keys): the first signature is checked against the
    cached certificate, refused, the cache entry dropped, and the next insertion reads the card."""
    cache = make_cache(tmp_path, 3)
    insert(v4, cache)
    new = _repersonalised(state_dir, tmp_path, v4)
    old = v4.identity
    rekeyed = dataclasses.replace(old, auth=LeafMaterial(new.auth.key, old.auth.cert),
                                  signs=(LeafMaterial(new.sign.key, old.sign.cert),))
    card = FileReadingCard("fineid-v4", identity=rekeyed)
    token = insert(card, cache)
    assert token.cache_state == "cached"  # the files cannot tell
    digest = hashlib.sha384(b"x").digest()
    with pytest.raises(CardRemovedError, match="keys changed"):
        token.sign_digest(by_role(token, "authentication"), "SHA384", digest, pin=PIN1)
    assert token.removed and not cache.path_for(old.serial).exists()
    assert insert(card, cache).cache_state == "stored" and card.certificate_reads > 0


def test_an_expired_cached_certificate_sends_the_card_to_be_read(v4: FileReadingCard, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Certificates are renewed when they run out (OpenSC served expired ones from its cache, F35)."""
    cache = make_cache(tmp_path, 3)
    insert(v4, cache)

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2100, 1, 1, tzinfo=tz)

    monkeypatch.setattr(token_module, "datetime", types.SimpleNamespace(datetime=Later, UTC=datetime.UTC))
    assert insert(v4, cache).cache_state == "stored" and v4.certificate_reads > 0


# -- through the card manager ----------------------------------------------------------------------------

def test_the_manager_reads_a_reinserted_card_from_the_cache(v4: FileReadingCard, tmp_path: Path) -> None:
    cache = make_cache(tmp_path, 3)
    reader = VirtualReader(v4)
    manager = CardManager(CardPolicy(cache=cache), reader)
    manager.start()
    try:
        [token] = manager.tokens()
        first = [c.der for c in token.certificates()]
        assert v4.certificate_reads > 0
        reader.remove()
        v4.file_reads.clear()
        reader.insert()
        [token] = manager.tokens()
        assert [c.der for c in token.certificates()] == first
        assert token.cache_state == "cached" and v4.certificate_reads == 0
    finally:
        manager.stop()


def test_snapshot_round_trip_refuses_bad_shapes() -> None:
    snapshot = CardSnapshot("S1", b"\x3b\x00", ())
    assert CardSnapshot.from_json(snapshot.to_json()) == snapshot
    for body in (b"[]", b'{"format": 1}', b'{"format": 1, "serial": "S", "atr": "3b", '
                 b'"files": [{"path": "50", "kind": "check", "data": null, "size": null}]}'):
        with pytest.raises(ValueError):
            CardSnapshot.from_json(body)
