"""Shared test helpers and fixtures. Test modules import helpers only from here (never from each other or
from a conftest), so a test file can be moved, renamed or run alone without breaking another one.

The fixtures are registered for the whole suite by ``pytest_plugins`` in tests/conftest.py."""
