"""Every test gets its own smart-card cache directory (``XDG_CACHE_HOME``): the cache is on by default (D56),
and the suite must neither write the user's ``~/.cache`` nor meet a card that another test cached."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_numbers = itertools.count()


@pytest.fixture(scope="session")
def _card_cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def _own_card_cache(_card_cache_root: Path) -> Iterator[None]:
    """Set, not created: a test that reads no card costs nothing. Subprocesses inherit it (cli_env)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(_card_cache_root / str(next(_numbers)))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before
