"""Running ``python -m digisign_web`` from the working tree (not the installed copy) in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import ROOT


def cli_env() -> dict[str, str]:
    """The environment for a CLI subprocess: the repository first on PYTHONPATH, so it runs this tree's code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``digisign-web ARGS...`` to completion, output captured as text."""
    return subprocess.run([sys.executable, "-m", "digisign_web", *args], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
