"""``make demo``, the first command of the README, as a new user runs it (issue 13 item 0): from a clean
``git clone`` (only what is committed), its system packages checked the way ``make test`` does (as root
here, where apt finds them all installed, so that step is a no-op), ``.venv`` created and the project
installed into it, then ``serve`` with the embedded virtual card until Ctrl-C.

The non-root path, where nothing may be installed: one ``sudo apt-get install`` line and a stop, with a
package that is surely not installed put in the list through ``DIGISIGN_APT_PACKAGES``."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.net import free_port
from tests.support.paths import ROOT

NOT_INSTALLED = "digisign-web-test-surely-not-installed"
START_TIMEOUT = 600  # a clean clone creates its venv and installs every dependency (~30 s here, more when loaded)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _version(port: int, ca: Path) -> dict:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://localhost:{port}/version", context=context, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("git") is None,
                    reason="as root (apt may run) with git: the non-root path is the test below")
def test_make_demo_from_a_clean_clone_serves_until_interrupted(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    state = tmp_path / "state"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}  # no DigiSign.conf of this machine
    for name in ("DIGISIGN_CONF", "DIGISIGN_APT_PACKAGES", "VIRTUAL_ENV", "PYTHONPATH"):
        env.pop(name, None)
    # ARGS: a free port (53952 may be taken here) and a state directory of its own (no CA in root's home).
    make = subprocess.Popen(["make", "demo", f"ARGS=--port {free_port()} --state-dir {state}"], cwd=clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    try:
        assert make.stdout is not None
        port = None
        deadline = time.monotonic() + START_TIMEOUT
        while port is None and time.monotonic() < deadline and make.poll() is None:
            if select.select([make.stdout], [], [], 1)[0]:
                line = make.stdout.readline()
                output.append(line)
                match = re.search(r"listening on https://localhost:(\d+)/", line)
                port = int(match.group(1)) if match else None
        assert port is not None, "make demo did not start serving:\n" + "".join(output)
        text = "".join(output)
        assert "demo-deps.sh: system packages present" in text, text  # apt had nothing to do
        assert (clone / ".venv" / "bin" / "digisign-web").exists()

        version = _version(port, state / "tls" / "ca.pem")
        assert version["version"] == "1.1", version

        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in the terminal: make and the server it runs
        make.wait(20)
        deadline = time.monotonic() + 20
        while _group_alive(make.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(make.pid), "the server outlived make demo"
        with pytest.raises(OSError):
            _version(port, state / "tls" / "ca.pem")
        rest = make.stdout.read()
        assert "Traceback" not in rest, rest
    finally:
        if _group_alive(make.pid):
            os.killpg(make.pid, signal.SIGKILL)
        make.wait(10)


@pytest.mark.skipif(shutil.which("setpriv") is None or os.geteuid() != 0, reason="needs setpriv and root to drop to")
def test_make_demo_as_non_root_prints_the_one_sudo_line_and_stops(tmp_path: Path) -> None:
    env = {**os.environ, "DIGISIGN_APT_PACKAGES": f"gcc {NOT_INSTALLED} libpcsclite-dev", "HOME": str(tmp_path)}
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "make", "-s", "demo"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    sudo = [line for line in (result.stdout + result.stderr).splitlines() if "sudo apt-get install" in line]
    assert len(sudo) == 1, result.stderr
    assert sudo[0].split() == ["sudo", "apt-get", "install", "-y", "--no-install-recommends", NOT_INSTALLED]
    assert "missing system packages" in result.stderr
    assert "venv.sh" not in result.stdout + result.stderr  # stopped before any install
    assert "listening" not in result.stdout
