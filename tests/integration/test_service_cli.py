"""`digisign-web service install|uninstall|status` as subprocesses (issue 13, item 1), against a temporary
XDG_CONFIG_HOME.

There is no systemd user session here, so the XDG autostart path runs for real, and its entry is started by
GLib's own desktop-entry launcher (`gio launch`, what a desktop does at login). The systemd branch runs with
a recording stand-in for `systemctl` first on PATH (:data:`FAKE_SYSTEMCTL`), which proves which commands run
in which order; the unit it leads to is checked by the real `systemd-analyze verify`.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from digisign_web.desktop import autostart
from tests.support.cli import cli_env
from tests.support.net import free_port
from tests.support.paths import ROOT

pytestmark = pytest.mark.process

FAKE_SYSTEMCTL = """#!/bin/sh
# TEST DOUBLE for `systemctl --user`: no systemd user manager can run here (PID 1 is not systemd). It appends
# its arguments to $FAKE_SYSTEMCTL_LOG and answers as a user manager would: show-environment works,
# graphical-session.target is active when $FAKE_GRAPHICAL=1, and the unit reports enabled and active.
echo "$*" >> "$FAKE_SYSTEMCTL_LOG"
case "$*" in
  "--user show-environment") echo "HOME=$HOME"; exit 0 ;;
  "--user is-active --quiet graphical-session.target") [ "$FAKE_GRAPHICAL" = 1 ] && exit 0; exit 3 ;;
  "--user is-enabled digisign-web.service") echo enabled; exit 0 ;;
  "--user is-active digisign-web.service") echo active; exit 0 ;;
esac
exit 0
"""


def run_service(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digisign_web", "service", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No systemd user session (as here), a fresh XDG_CONFIG_HOME, no display."""
    environ = {**cli_env(), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "DIGISIGN_CONF"):
        environ.pop(name, None)
    return environ


@pytest.fixture
def systemd_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """`env` with the recording systemctl stand-in first on PATH and a runtime dir with systemd/ in it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(FAKE_SYSTEMCTL)
    fake.chmod(0o755)
    runtime = tmp_path / "runtime"
    (runtime / "systemd").mkdir(parents=True, mode=0o700)
    return {**env, "PATH": f"{bin_dir}:{env['PATH']}", "XDG_RUNTIME_DIR": str(runtime),
            "FAKE_SYSTEMCTL_LOG": str(tmp_path / "systemctl.log")}


def calls(env: dict[str, str]) -> list[str]:
    """What the stand-in was asked, without the read-only probes."""
    log = Path(env["FAKE_SYSTEMCTL_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    return [line for line in lines if not line.startswith(("--user show-environment", "--user is-"))]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze --user verify`: no error and no warning (an unknown key or a bad value only warns)."""
    runtime = tmp_path / "verify-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# --- the autostart path, for real ------------------------------------------------------------------------


def test_autostart_install_status_uninstall(env: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config"
    entry = config / "autostart" / "digisign-web.desktop"
    state = tmp_path / "my state"  # a space: quoted in Exec

    assert run_service(env, "status").returncode == 3

    result = run_service(env, "install", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert "XDG autostart entry" in result.stdout and "no systemd user session" in result.stdout
    assert f"wrote {entry}" in result.stdout
    assert mode(entry) == 0o644
    assert mode(entry.parent) == 0o700 and mode(config) == 0o700  # created by us, per the XDG spec
    text = entry.read_text()
    assert f'Exec={autostart.program()[0]} serve --state-dir "{state}"' in text.splitlines()

    status = run_service(env, "status")
    assert status.returncode == 1, status.stdout  # installed, not running
    assert str(entry) in status.stdout

    again = run_service(env, "install", "--state-dir", str(state))  # idempotent: our own file is rewritten
    assert again.returncode == 0, again.stderr

    gone = run_service(env, "uninstall")
    assert gone.returncode == 0 and f"removed {entry}" in gone.stdout
    assert not entry.exists()
    assert run_service(env, "status").returncode == 3
    twice = run_service(env, "uninstall")
    assert twice.returncode == 0 and "nothing to remove" in twice.stdout


def test_the_desktop_starts_the_entry_and_status_sees_it_run(env: dict[str, str], tmp_path: Path) -> None:
    """GLib's launcher runs the installed entry's Exec line, as the desktop does at login: the server runs,
    status says so (exit 0), and SIGTERM stops it cleanly (exit 0, through its cleanup)."""
    port = free_port()
    conf = tmp_path / "digi sign.conf"
    conf.write_text(f"httpsPorts={port}\nexcludeReader=*\n")  # no hands on the shared pcscd's cards
    result = run_service(env, "install", "--state-dir", str(tmp_path / "state"), "--config", str(conf))
    assert result.returncode == 0, result.stderr
    entry = tmp_path / "config" / "autostart" / "digisign-web.desktop"
    subprocess.run(["gio", "launch", str(entry)], env=env, check=True, timeout=30)
    deadline = time.monotonic() + 60
    status = run_service(env, "status")
    while status.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        status = run_service(env, "status")
    assert status.returncode == 0, status.stdout
    pid = int(re.search(r"running: pid (\d+)", status.stdout).group(1))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert str(conf).encode() in cmdline  # the path with a space arrived as one argument
    try:
        deadline = time.monotonic() + 60  # until it listens on the configured port
        while time.monotonic() < deadline and f":{port:04X} " not in Path("/proc/net/tcp").read_text():
            time.sleep(0.2)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            time.sleep(0.1)
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    assert run_service(env, "status").returncode == 1
    assert run_service(env, "uninstall").returncode == 0


def test_sigterm_is_a_clean_shutdown(served) -> None:
    """systemd stops the unit with SIGTERM: serve leaves through its cleanup and exits 0 (before: killed)."""
    server = served()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(20) == 0
    assert "stopping (SIGTERM)" in server.log(wait=0)


def test_desktop_quoting_through_gio(tmp_path: Path) -> None:
    """Every awkward argument reaches the program unchanged through a real desktop-entry parser (GLib)."""
    bin_dir = tmp_path / "a dir $x `y` \"q\" o'k"  # '%' in the program's path is refused (GLib, F28)
    bin_dir.mkdir()
    recorder = bin_dir / "record"
    out = tmp_path / "argv.txt"
    recorder.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > "{out}"\n')
    recorder.chmod(0o755)
    argv = [str(recorder), "serve", "--state-dir", "/h/o'k \"q\" $HOME `id` \\x 100% ~u;&|<>*?#()", "--x", ""]
    entry = tmp_path / "t.desktop"
    entry.write_text(autostart.desktop_text(argv))
    subprocess.run(["gio", "launch", str(entry)], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert out.read_bytes().split(b"\0")[:-1] == [a.encode() for a in argv[1:]]


def test_dry_run_writes_nothing(env: dict[str, str], systemd_env: dict[str, str], tmp_path: Path) -> None:
    for environ in (env, systemd_env):
        result = run_service(environ, "install", "--dry-run")
        assert result.returncode == 0, result.stderr
        assert "dry run: nothing was changed" in result.stdout
        assert "would write" in result.stdout
        assert not (tmp_path / "config").exists()
    assert "would run: systemctl --user daemon-reload" in result.stdout
    assert "would run: systemctl --user enable --now digisign-web.service" in result.stdout
    assert "ExecStart=" in result.stdout and "WantedBy=default.target" in result.stdout  # the full unit
    assert calls(systemd_env) == []  # only the read-only probes ran


# --- the systemd branch, with the recording stand-in --------------------------------------------------


def test_systemd_install_status_uninstall(systemd_env: dict[str, str], tmp_path: Path) -> None:
    unit = tmp_path / "config" / "systemd" / "user" / "digisign-web.service"
    result = run_service(systemd_env, "install", "--state-dir", str(tmp_path / "st ate"))
    assert result.returncode == 0, result.stderr
    assert calls(systemd_env) == ["--user daemon-reload", "--user enable --now digisign-web.service"]
    assert mode(unit) == 0o644 and mode(unit.parent) == 0o700
    text = unit.read_text()
    assert "WantedBy=default.target" in text
    assert f'serve --state-dir "{tmp_path / "st ate"}"' in text
    verify(unit, tmp_path)

    status = run_service(systemd_env, "status")
    assert status.returncode == 0, status.stdout
    assert "enabled: enabled; active: active" in status.stdout

    # A changed unit (another state dir) restarts the running service; the same one does not.
    Path(systemd_env["FAKE_SYSTEMCTL_LOG"]).unlink()
    assert run_service(systemd_env, "install", "--state-dir", str(tmp_path / "other")).returncode == 0
    assert calls(systemd_env) == ["--user daemon-reload", "--user try-restart digisign-web.service",
                                  "--user enable --now digisign-web.service"]

    Path(systemd_env["FAKE_SYSTEMCTL_LOG"]).unlink()
    gone = run_service(systemd_env, "uninstall")
    assert gone.returncode == 0, gone.stderr
    assert calls(systemd_env) == ["--user disable --now digisign-web.service", "--user daemon-reload"]
    assert not unit.exists() and f"removed {unit}" in gone.stdout
    assert run_service(systemd_env, "status").returncode == 3


def test_systemd_graphical_session(systemd_env: dict[str, str], tmp_path: Path) -> None:
    environ = {**systemd_env, "FAKE_GRAPHICAL": "1", "DISPLAY": ":0"}
    assert run_service(environ, "install").returncode == 0
    unit = tmp_path / "config" / "systemd" / "user" / "digisign-web.service"
    lines = unit.read_text().splitlines()
    assert "WantedBy=graphical-session.target" in lines and "PartOf=graphical-session.target" in lines
    verify(unit, tmp_path)


def test_a_desktop_outside_systemd_gets_the_autostart_entry(systemd_env: dict[str, str], tmp_path: Path) -> None:
    """A user manager runs but the desktop session does not start graphical-session.target (DISPLAY is set):
    a unit would not see the display, so the entry is written; switching kinds removes the other one."""
    assert run_service(systemd_env, "install").returncode == 0  # headless: the unit
    unit = tmp_path / "config" / "systemd" / "user" / "digisign-web.service"
    assert unit.exists()
    Path(systemd_env["FAKE_SYSTEMCTL_LOG"]).unlink()
    result = run_service({**systemd_env, "DISPLAY": ":0"}, "install")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "config" / "autostart" / "digisign-web.desktop").exists()
    assert not unit.exists() and f"removed {unit}" in result.stdout
    assert calls(systemd_env) == ["--user disable --now digisign-web.service", "--user daemon-reload"]


def test_uninstall_without_a_manager_removes_the_enable_links(systemd_env: dict[str, str], env: dict[str, str],
                                                               tmp_path: Path) -> None:
    assert run_service(systemd_env, "install").returncode == 0
    unit = tmp_path / "config" / "systemd" / "user" / "digisign-web.service"
    wants = unit.parent / "default.target.wants"
    wants.mkdir()
    (wants / unit.name).symlink_to(unit)  # what `enable` leaves
    gone = run_service(env, "uninstall")  # no user manager answers now
    assert gone.returncode == 0, gone.stderr
    assert not unit.exists() and not (wants / unit.name).is_symlink()
    assert "neither stopped nor disabled" in gone.stdout


def test_a_foreign_file_is_left_alone(env: dict[str, str], tmp_path: Path) -> None:
    entry = tmp_path / "config" / "autostart" / "digisign-web.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nType=Application\nExec=/usr/bin/true\n")
    result = run_service(env, "install")
    assert result.returncode == 2 and "not written by digisign-web" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # one line, no traceback
    assert run_service(env, "uninstall").returncode == 0
    assert entry.read_text().endswith("Exec=/usr/bin/true\n")


def test_bad_config_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    result = run_service(env, "install", "--config", str(tmp_path / "missing.conf"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "missing.conf" in result.stderr


def test_unit_with_awkward_paths_verifies(tmp_path: Path) -> None:
    """systemd-analyze checks that ExecStart's program exists: a wrongly quoted path with a space, % or $ in
    it would not be found."""
    program = tmp_path / "bin 50% $HOME" / "digisign-web"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    unit = tmp_path / "units" / autostart.UNIT_NAME
    unit.parent.mkdir()
    unit.write_text(autostart.unit_text(autostart.serve_argv(tmp_path / "s t", None, command=[str(program)])))
    verify(unit, tmp_path)
    program.unlink()
    runtime = tmp_path / "verify-runtime"
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert "is not executable" in result.stderr  # the check is real: a missing program is reported
