"""DigiSign-style wildcard lists (excludeReader, validTokenInfoLabel) and profile recognition by ATR."""

from __future__ import annotations

import pytest

from card import match_profile
from card.profiles import PROFILES
from card.readers import filter_readers
from card.virtual.card import LAYOUTS
from digisign_web.wildcards import matcher, matches_wildcards


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        ("*O2* *CCID*", "O2Micro OZ776 00 00", True),
        ("*O2* *CCID*", "Generic CCID Reader 01 00", True),
        ("*O2* *CCID*", "gemalto usb smartcard reader ccid 00 00", True),  # case-insensitive
        ("*O2* *CCID*", "Virtual PCD 00 00", False),
        ("Virtual*00", "Virtual PCD 00 00", True),  # a pattern must match the whole name
        ("Virtual", "Virtual PCD 00 00", False),
        ("*PCD*01", "Virtual PCD 00 01", True),
        ("*PCD*01", "Virtual PCD 00 00", False),
        ("Virtual PCD 00 00", "Virtual PCD 00 00", False),  # a space separates patterns: use *
        ("*[x]*", "reader [x] 1", True),  # regex characters are literal
        ("*[x]*", "reader x 1", False),
        ("", "anything", False),
    ],
)
def test_wildcards(patterns: str, name: str, expected: bool) -> None:
    assert matches_wildcards(patterns, name) is expected


def test_filter_readers_keeps_order() -> None:
    readers = ["A CCID 00", "Virtual PCD 00 00", "O2 thing", "Virtual PCD 00 01"]
    assert filter_readers(readers, matcher("*ccid* *O2*")) == ["Virtual PCD 00 00", "Virtual PCD 00 01"]
    assert filter_readers(readers, matcher("  ")) == readers


@pytest.mark.parametrize(
    ("atr", "name"),
    [
        ("3B7F96000080318065B0855956FB120FFE829000", "idprime"),
        ("3B7F96000080 31B865B085050011122460829000", "fineid-v4"),
        ("3B7F96000080 31B865B085051024122460829000", "fineid-v4"),  # the newer "FinEID 2025" build
        ("3B7F96000080 31B865B08504021B1200F6829000", "fineid-v3"),
        ("3B7F96000080 31B865B0850300EF1200F6829000", "fineid-v3"),
        ("3B8580014D79454944 78", "myeid"),
        ("3BF518000081 31FE454D7945494410", "myeid"),  # historical bytes end in "MyEID"
        ("3BD2180081 31FE58C90217", "cardos-5.3"),
        ("3BDD96008031FE450031B8640429ECC173940180 8248", "fineid-org"),  # IDEMIA ID.me
        ("3BDD96008031FE450031B8640429ECC173940180 8349", "fineid-org"),  # IDEMIA Cosmo X
    ],
)
def test_profiles_by_atr(atr: str, name: str) -> None:
    profile = match_profile(bytes.fromhex(atr.replace(" ", "")))
    assert profile is not None and profile.name == name


def test_finnish_passport_is_not_fineid() -> None:
    # Listed in docs/decisions.md F22 precisely so that it is excluded.
    assert match_profile(bytes.fromhex("3B8C800180 31D865B085050011829000 32".replace(" ", ""))) is None


def test_every_profile_says_how_it_is_tested() -> None:
    emulated = {layout.profile.name for layout in LAYOUTS.values()}
    assert emulated == {"fineid-v4", "fineid-v3", "fineid-org"}
    for profile in PROFILES:
        assert profile.tested
        assert (profile.name in emulated) == profile.name.startswith("fineid")
