"""Where things are: the repository root and the test data, independent of which test file asks."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
DATA = TESTS / "data"
RECORDINGS = DATA / "recordings"
ARTIFACTS = TESTS / "artifacts"  # screenshots the browser tests leave for a human to look at
STATIC = ROOT / "static"
