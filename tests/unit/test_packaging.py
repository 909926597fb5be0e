"""The non-editable install (``pip install .``, which ``make test`` does) carries everything the server
needs at run time: run the installed console script away from the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def installed_script() -> Path:
    script = Path(sys.executable).parent / "digisign-web"
    if not script.exists():
        pytest.fail(f"{script} is missing: run the suite through `make test`, which does `pip install '.[test]'`",
                    pytrace=False)
    return script


@pytest.mark.process  # the installed console script, away from the source tree
def test_installed_script_runs_outside_the_source_tree(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import card, digisign_web, static; print(card.__file__); print(static.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    for path in probe.stdout.split():
        assert Path(path).is_relative_to(sys.prefix), f"{path} comes from the source tree, not the install"
    result = subprocess.run([str(installed_script()), "list", "--virtual-card", "fineid-v3", "--json",
                             "--state-dir", str(tmp_path / "state")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (token,) = json.loads(result.stdout)["tokens"]
    assert token["profile"] == "fineid-v3"
    assert [c["role"] for c in token["certificates"]] == ["authentication", "signature", "ca", "ca"]
