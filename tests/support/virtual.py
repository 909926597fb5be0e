"""The in-process virtual card: one PKI state directory for the whole run, and a card and token per test."""

from __future__ import annotations

from pathlib import Path

import pytest

from card import Token
from card.virtual import VirtualCard
from card.virtual.source import InProcessTransport


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI for the whole run: key generation (RSA-3072 above all) is the slow part of making a card, so
    each profile's keys are made once and every test's fresh VirtualCard reads them from here."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(params=["fineid-v4", "fineid-v3"])
def profile(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def vcard(state_dir: Path, profile: str) -> VirtualCard:
    """A fresh virtual card (fresh PIN counters) of ``profile``, with the run's keys."""
    return VirtualCard(profile, state_dir)


@pytest.fixture
def token(vcard: VirtualCard) -> Token:
    return Token.open(InProcessTransport(vcard))
