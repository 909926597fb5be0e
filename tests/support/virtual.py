"""The in-process virtual card: one PKI state directory for the whole run, and a card and token per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from card import CardCertificate, Token
from card.virtual import VirtualCard, pki
from card.virtual.source import InProcessTransport


@pytest.fixture(scope="session")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI for the whole run: each profile's keys are made once, and every test's fresh VirtualCard reads
    them from here."""
    return tmp_path_factory.mktemp("state")


@pytest.fixture(scope="session", autouse=True)
def _parsed_pki_cache() -> Iterator[None]:
    """Each VirtualCard reads its keys and certificates from the state directory, and parsing a PEM RSA key
    runs OpenSSL's full key check (about 40 ms for RSA-3072): the unit lane's hundreds of cards spent a third
    of its time there. Keys and certificates are cached by the file's exact bytes, so a file that a test
    rewrites is parsed afresh; both are immutable values, so sharing one between cards changes nothing a
    test can observe."""
    load_key, load_cert = pki._load_key, pki._load_cert
    keys: dict[bytes, pki.PrivateKey] = {}
    certificates: dict[tuple[bytes, str], CardCertificate] = {}

    def cached_key(path: Path) -> pki.PrivateKey:
        pem = path.read_bytes()
        if pem not in keys:
            keys[pem] = load_key(path)
        return keys[pem]

    def cached_certificate(path: Path) -> CardCertificate:
        entry = (path.read_bytes(), str(path))  # the path is the certificate's label
        if entry not in certificates:
            certificates[entry] = load_cert(path)
        return certificates[entry]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pki, "_load_key", cached_key)
        patch.setattr(pki, "_load_cert", cached_certificate)
        yield


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
