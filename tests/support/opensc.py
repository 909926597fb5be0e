"""OpenSC (Debian's ``opensc``) as an independent reader of the virtual FINEID card through pcscd: its tools
(pkcs15-tool, the interop test) and its PKCS#11 module (opensc-pkcs11.so, the PKCS#11 token source's tests).

Why OPENSC_CONF: OpenSC 0.23 (Debian 12) has no driver whose ATR table matches FINEID v3/v4 (its FINEID driver
came later), and it keeps the catch-all "default" driver off unless ``enable_default_driver`` is set. With it,
OpenSC binds the card as "Unsupported card" and reads the PKCS#15 application generically: a standard-conformance
check we did not write. That driver registers no algorithms, so opensc-pkcs11 offers no signature mechanism for
the card (F41)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

OPENSC_MODULE = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")


def opensc_conf(path: Path, debug_file: Path | None = None) -> Path:
    """An opensc.conf at ``path`` that enables the generic PKCS#15 driver (and logs at debug level 3 to
    ``debug_file``, where each APDU is an "Outgoing APDU" entry)."""
    lines = ["    enable_default_driver = true;"]
    if debug_file is not None:
        lines += ["    debug = 3;", f"    debug_file = {debug_file};"]
    path.write_text("app default {\n" + "\n".join(lines) + "\n}\n")
    return path


def _require_opensc() -> None:
    if shutil.which("pkcs15-tool") is None or not OPENSC_MODULE.exists():
        pytest.fail("OpenSC is missing: install Debian's `opensc` (scripts/test-deps.sh does)", pytrace=False)


@pytest.fixture(scope="session")
def opensc_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for OpenSC's tools: this process's, with OPENSC_CONF enabling the generic driver."""
    _require_opensc()
    conf = opensc_conf(tmp_path_factory.mktemp("opensc") / "opensc.conf")
    return {**os.environ, "OPENSC_CONF": str(conf)}


@dataclass(frozen=True)
class OpenScModule:
    """opensc-pkcs11.so and the environment it needs (OPENSC_CONF); unpacks as (module, env)."""

    module: Path
    env: dict[str, str]
    log: Path  # OpenSC's debug log

    def __iter__(self) -> Iterator[Any]:
        return iter((self.module, self.env))

    def apdus(self) -> list[str]:
        """The header (CLA INS P1 P2, hex) of each command APDU OpenSC has sent so far, from its debug log."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(errors="replace").splitlines()
        return [" ".join(lines[i + 1].split()[:4]) if i + 1 < len(lines) else ""
                for i, line in enumerate(lines) if line.startswith("Outgoing APDU")]


@pytest.fixture
def opensc_pkcs11(pcscd: None, tmp_path: Path) -> OpenScModule:
    """OpenSC's PKCS#11 module over pcscd (insert a card with ``vpcd_card``), with the generic PKCS#15 driver and
    a debug log for counting APDUs. Only the module's env sets OPENSC_CONF: pass it to the process loading it."""
    _require_opensc()
    directory = tmp_path / "opensc"
    directory.mkdir(exist_ok=True)
    log = directory / "opensc-debug.log"
    conf = opensc_conf(directory / "opensc.conf", debug_file=log)
    return OpenScModule(OPENSC_MODULE, {"OPENSC_CONF": str(conf)}, log)
