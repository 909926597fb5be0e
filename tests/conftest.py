"""The suite's lanes and shared fixtures.

Fixtures live in tests/support/ (registered below as plugins); test modules import helpers only from
tests.support, never from each other or from a conftest.

Lanes (markers, registered in pyproject.toml) are applied here by directory and by fixture use, so a test
cannot land in the wrong lane by forgetting a decorator:

* ``browser``: drives Debian's Chromium (all of tests/browser, and any test using the Chromium fixtures);
* ``process``: starts `digisign-web` subprocesses (serve, virtual-card) — all of tests/integration,
  tests/browser and tests/security, and unit tests that say so with ``@pytest.mark.process``;
* ``pcscd``: needs a running pcscd with vpcd (any test using the ``pcscd`` fixture, e.g. through
  ``vpcd_card``).

``make unit`` runs tests/unit without those three; ``make test`` runs everything."""

from __future__ import annotations

from pathlib import Path

import pytest

# The helpers' asserts get pytest's detailed messages too (they are imported, not collected).
pytest.register_assert_rewrite("tests.support")

pytest_plugins = [
    "tests.support.virtual",
    "tests.support.pcsc",
    "tests.support.inprocess",
    "tests.support.servers",
    "tests.support.browser",
    "tests.support.relying_party",
    "tests.support.card_cache",
    "tests.support.softhsm",
    "tests.support.opensc",
]

_HERE = Path(__file__).resolve().parent
_BY_DIRECTORY = {
    "browser": ("browser", "process"),
    "integration": ("process",),
    "security": ("process",),
}
_BY_FIXTURE = {
    "pcscd": "pcscd",
    "chromium_path": "browser",
    "served": "process",
    "web_server": "process",
    "softhsm_token": "process",  # SoftHSM2 tokens are made by child processes (tests/support/softhsm.py)
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(_HERE).parts[0]
        except ValueError:
            continue
        names = set(_BY_DIRECTORY.get(top, ()))
        fixtures = set(getattr(item, "fixturenames", ()))
        names |= {marker for fixture, marker in _BY_FIXTURE.items() if fixture in fixtures}
        for name in sorted(names - {m.name for m in item.iter_markers()}):
            item.add_marker(getattr(pytest.mark, name))
