"""Run ``digisign-web serve`` at login: a systemd user unit, or an XDG autostart entry where that fits better (D43).

Which one (:func:`choose`): a systemd user unit when a systemd user manager answers; it is wanted by
``graphical-session.target`` when the desktop starts that target (the unit then starts once the desktop has
put ``DISPLAY``/``WAYLAND_DISPLAY`` into the manager's environment, which the web dialog needs to open a
browser), else by ``default.target`` on a machine with no desktop session. A desktop whose session does not
go through systemd (no ``graphical-session.target`` while ``DISPLAY`` is set), or a login with no systemd
user manager at all, gets an XDG autostart entry, which the desktop starts inside its session.

The text builders and both quoting rules are pure functions (F28: systemd's command-line unquoting and the
Desktop Entry ``Exec`` rules differ); :func:`install`, :func:`uninstall` and :func:`status` do the few effects
and return what they did as lines for the command line to print. Files we write carry :data:`MARKER`; a file
without it is the user's, and is neither overwritten nor removed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from digisign_web import settings

UNIT_NAME = "digisign-web.service"
DESKTOP_NAME = "digisign-web.desktop"
MARKER = "# Written by `digisign-web service install`; `digisign-web service uninstall` removes it."
GRAPHICAL = "graphical-session.target"
DEFAULT = "default.target"
SYSTEMCTL_TIMEOUT = 20.0  # seconds for one systemctl call (enable --now waits for the start)

Kind = Literal["systemd", "autostart"]

# Exit codes of `service status` (said in its --help).
RUNNING, NOT_RUNNING, NOT_INSTALLED = 0, 1, 3


class ServiceError(Exception):
    """Something the user must fix (a foreign file in the way, a failed systemctl call): one line, exit 2."""


# --- paths and the command to run ------------------------------------------------------------------------


def config_home(environ: dict[str, str] | None = None) -> Path:
    """Where the unit or the autostart entry goes: the settings' rule (:func:`settings.config_home`)."""
    home = settings.config_home(os.environ if environ is None else environ)
    if home is None:
        raise ServiceError("there is no home directory to install the service for")
    return home


def unit_path(home: Path) -> Path:
    return home / "systemd" / "user" / UNIT_NAME


def desktop_path(home: Path) -> Path:
    return home / "autostart" / DESKTOP_NAME


def program() -> list[str]:
    """The running installation's own command, absolute: its ``digisign-web`` console script when it has one,
    else this interpreter with ``-m digisign_web``. Not resolved: a venv's python is a symlink whose target
    would leave the venv."""
    script = Path(os.path.abspath(sys.executable)).parent / "digisign-web"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [os.path.abspath(sys.executable), "-m", "digisign_web"]


def serve_argv(state_dir: Path, config: Path | None, command: Sequence[str] | None = None) -> list[str]:
    """``serve`` with the state directory always named (absolute): the service must use the CA that
    ``trust install`` put into the browsers, whatever ``XDG_CONFIG_HOME`` the service manager has."""
    argv = [*(command or program()), "serve", "--state-dir", os.path.abspath(state_dir)]
    if config is not None:
        argv += ["--config", os.path.abspath(config)]
    return argv


# --- quoting (F28) --------------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SYSTEMD_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
_DESKTOP_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def systemd_word(arg: str, program: bool = False) -> str:
    """One word of a unit's ``ExecStart=``: ``%`` → ``%%`` (specifiers), ``$`` → ``$$`` (variables; not in the
    program, which systemd never expands), and in double quotes with ``\\`` and ``"`` escaped when it holds
    anything but plain path characters."""
    if _CONTROL.search(arg):
        raise ServiceError(f"cannot put a control character into a unit's command line: {arg!r}")
    escaped = arg.replace("%", "%%") if program else arg.replace("%", "%%").replace("$", "$$")
    if _SYSTEMD_PLAIN.fullmatch(arg):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec(argv: Sequence[str]) -> str:
    return " ".join(systemd_word(arg, program=index == 0) for index, arg in enumerate(argv))


def desktop_word(arg: str) -> str:
    """One argument of a desktop entry's ``Exec=``, before the string-value escape of the whole line:
    quoted when empty or holding a reserved character, with ``"`` ````` ``$`` ``\\`` escaped inside the quotes,
    and ``%`` → ``%%`` (field codes)."""
    if _CONTROL.search(arg):
        raise ServiceError(f"cannot put a control character into a desktop entry's command line: {arg!r}")
    if arg and not _DESKTOP_RESERVED.intersection(arg):
        return arg.replace("%", "%%")
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return '"' + inner.replace("%", "%%") + '"'


def desktop_exec(argv: Sequence[str]) -> str:
    """The ``Exec=`` value: each argument quoted, then the string escape (``\\`` → ``\\\\``), which a reader
    undoes first."""
    if "=" in argv[0] or "%" in argv[0]:  # '=': the spec; '%': GLib looks the program up before undoing %% (F28)
        raise ServiceError(f"a desktop entry cannot start a program whose path holds '=' or '%': {argv[0]}")
    return " ".join(desktop_word(arg) for arg in argv).replace("\\", "\\\\")


# --- the two files --------------------------------------------------------------------------------------


def unit_text(argv: Sequence[str], target: str = DEFAULT, documentation: str = "https://localhost:53952/") -> str:
    """The systemd user unit (D43)."""
    session = (f"After={GRAPHICAL}\nPartOf={GRAPHICAL}\n") if target == GRAPHICAL else ""
    return f"""{MARKER}
[Unit]
Description=digisign-web: local signing server for the Finnish ID card (SCS and WebSigner)
# The playground of the running server
Documentation={documentation}
{session}StartLimitIntervalSec=120
StartLimitBurst=5

[Service]
Type=exec
ExecStart={systemd_exec(argv)}
Environment=PYTHONUNBUFFERED=1
# A crash restarts it; `systemctl --user stop` sends SIGTERM, on which serve releases the card and exits 0.
Restart=on-failure
RestartSec=5s
TimeoutStopSec=20s
# Only the server is stopped: a browser that the web dialog started stays open.
KillMode=process
# No core files: PINs pass through this process's memory.
LimitCORE=0
# No NoNewPrivileges=, seccomp or namespace sandboxing: the browser the web dialog may start inherits them
# (a snap browser cannot start under NoNewPrivileges=, browsers build their own sandboxes), and
# PrivateNetwork= would hide the loopback port from the browser. pcscd is reached at /run/pcscd.

[Install]
WantedBy={target}
"""


def desktop_text(argv: Sequence[str]) -> str:
    """The XDG autostart entry."""
    return f"""{MARKER}
[Desktop Entry]
Type=Application
Name=digisign-web
Comment=Local signing server for the Finnish ID card (SCS and WebSigner)
Exec={desktop_exec(argv)}
Terminal=false
NoDisplay=true
X-GNOME-Autostart-enabled=true
"""


# --- which one ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Situation:
    """What :func:`choose` decides from (probed by :func:`probe`)."""

    systemd: bool  # a systemd user manager answers
    graphical_target: bool  # its graphical-session.target is active
    display: bool  # DISPLAY or WAYLAND_DISPLAY is set here


@dataclass(frozen=True)
class Choice:
    kind: Kind
    target: str  # systemd only: the [Install] target
    why: str


def choose(situation: Situation) -> Choice:
    """The systemd unit where a manager answers, unless a desktop session that bypasses systemd would leave the
    unit without the display (then the autostart entry, which runs inside that session)."""
    if situation.systemd and situation.graphical_target:
        return Choice("systemd", GRAPHICAL, "the systemd user manager runs your desktop session")
    if situation.systemd and not situation.display:
        return Choice("systemd", DEFAULT, "a systemd user manager runs, with no desktop session")
    if situation.systemd:
        return Choice("autostart", "", "your desktop session does not start graphical-session.target, so a "
                                        "systemd unit would not see its display; the desktop starts the entry instead")
    return Choice("autostart", "", "there is no systemd user session here")


@dataclass
class Systemctl:
    """``systemctl --user``, found on PATH; every call that ran is kept in :attr:`ran`."""

    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    ran: list[list[str]] = field(default_factory=list)

    @property
    def path(self) -> str | None:
        return shutil.which("systemctl", path=self.environ.get("PATH"))

    def reachable(self) -> bool:
        """A user manager answers: ``$XDG_RUNTIME_DIR/systemd`` exists and ``show-environment`` succeeds."""
        runtime = self.environ.get("XDG_RUNTIME_DIR", "")
        if not self.path or not runtime or not os.path.isdir(os.path.join(runtime, "systemd")):
            return False
        return self.run("show-environment", record=False).returncode == 0

    def run(self, *args: str, record: bool = True) -> subprocess.CompletedProcess[str]:
        command = [self.path or "systemctl", "--user", *args]
        if record:
            self.ran.append(["systemctl", "--user", *args])
        try:
            return subprocess.run(command, env=self.environ, capture_output=True, text=True,
                                  timeout=SYSTEMCTL_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess(command, 1, "", str(exc))

    def must(self, *args: str) -> None:
        result = self.run(*args)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            raise ServiceError(f"`systemctl --user {' '.join(args)}` failed: {detail[-1] if detail else 'no output'}")


def probe(systemctl: Systemctl) -> Situation:
    env = systemctl.environ
    systemd = systemctl.reachable()
    graphical = systemd and systemctl.run("is-active", "--quiet", GRAPHICAL, record=False).returncode == 0
    return Situation(systemd, graphical, bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")))


# --- files ----------------------------------------------------------------------------------------------


def ours(path: Path) -> bool | None:
    """True: a file we wrote; False: someone else's (or a symlink); None: nothing there."""
    if not path.is_symlink() and not path.exists():
        return None
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as stream:
            return stream.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def _make_dirs(directory: Path) -> None:
    """Missing directories are made 0700, as the XDG base directory spec asks; existing ones are left as they are."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)


def write_file(path: Path, text: str) -> None:
    """0644 (a unit or a desktop entry is no secret), replaced atomically; a symlink there is replaced, not followed."""
    _make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- the three actions ----------------------------------------------------------------------------------


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    code: int = 0

    def say(self, line: str) -> None:
        self.lines.append(line)


def _show_file(report: Report, path: Path, text: str) -> None:
    report.say(f"would write {path} (0644):")
    report.lines += ["    " + line if line else "" for line in text.splitlines()]


def install(argv: Sequence[str], systemctl: Systemctl, home: Path, *, dry_run: bool = False,
            documentation: str = "https://localhost:53952/") -> Report:
    """Write, enable and start the unit, or write the autostart entry; the other kind, if ours, goes."""
    report = Report()
    choice = choose(probe(systemctl))
    unit, entry = unit_path(home), desktop_path(home)
    path, other = (unit, entry) if choice.kind == "systemd" else (entry, unit)
    text = unit_text(argv, choice.target, documentation) if choice.kind == "systemd" else desktop_text(argv)
    if ours(path) is False:
        raise ServiceError(f"{path} exists and was not written by digisign-web: remove it or move it away first")
    report.say(f"{'systemd user unit' if choice.kind == 'systemd' else 'XDG autostart entry'}: {choice.why}")
    previous = path.read_text(encoding="utf-8") if ours(path) else None
    commands: list[tuple[str, ...]] = []
    if choice.kind == "systemd":
        commands.append(("daemon-reload",))
        if previous is not None and previous != text:
            commands.append(("try-restart", UNIT_NAME))  # a running service picks up the new unit
        commands.append(("enable", "--now", UNIT_NAME))
    if dry_run:
        _show_file(report, path, text)
        for command in commands:
            report.say(f"would run: systemctl --user {' '.join(command)}")
        if ours(other):
            report.say(f"would remove {other} (the other way of starting it)")
        report.say("dry run: nothing was changed")
        return report
    if ours(other):
        _remove_other(report, other, systemctl)
    write_file(path, text)
    report.say(f"wrote {path}")
    for command in commands:
        systemctl.must(*command)
        report.say(f"ran: systemctl --user {' '.join(command)}")
    if choice.kind == "systemd":
        report.say(f"digisign-web runs now and at every login (as {UNIT_NAME}); "
                   f"logs: journalctl --user -u {UNIT_NAME}")
    else:
        report.say("digisign-web starts at your next login; to start it now, run: digisign-web serve")
    return report


def _remove_other(report: Report, path: Path, systemctl: Systemctl) -> None:
    if path.name == UNIT_NAME:
        _remove_unit(report, path, systemctl)
    else:
        argv = exec_argv(path.read_text(encoding="utf-8", errors="replace"))
        path.unlink()
        report.say(f"removed {path}")
        pid = _running(argv) if argv else None
        if pid:
            report.say(f"the server it started still runs (pid {pid}) until you log out, or: kill {pid}")


def _remove_unit(report: Report, path: Path, systemctl: Systemctl) -> None:
    """Stop and disable it when the manager answers; the enable symlinks go by hand when it does not."""
    reachable = systemctl.reachable()
    if reachable:
        systemctl.must("disable", "--now", UNIT_NAME)
        report.say(f"ran: systemctl --user disable --now {UNIT_NAME}")
    else:
        report.say("no systemd user manager answers here: the unit was neither stopped nor disabled by systemctl")
        for target in (DEFAULT, GRAPHICAL):
            link = path.parent / f"{target}.wants" / UNIT_NAME
            if link.is_symlink():
                link.unlink()
                report.say(f"removed {link}")
    path.unlink()
    report.say(f"removed {path}")
    if reachable:
        systemctl.must("daemon-reload")
        report.say("ran: systemctl --user daemon-reload")


def uninstall(systemctl: Systemctl, home: Path, *, dry_run: bool = False) -> Report:
    """Undo :func:`install`, whichever kind it wrote; nothing there is no error."""
    report = Report()
    found = False
    for path in (unit_path(home), desktop_path(home)):
        mine = ours(path)
        if mine is None:
            continue
        found = True
        if mine is False:
            report.say(f"left alone: {path} was not written by digisign-web")
        elif dry_run:
            report.say(f"would remove {path}")
            if path.name == UNIT_NAME:
                report.say(f"would run: systemctl --user disable --now {UNIT_NAME}")
                report.say("would run: systemctl --user daemon-reload")
        else:
            _remove_other(report, path, systemctl)
    if not found:
        report.say("not installed: nothing to remove")
    elif dry_run:
        report.say("dry run: nothing was changed")
    return report


def exec_argv(text: str) -> list[str] | None:
    """The argv of a desktop entry's ``Exec=`` line (the reverse of :func:`desktop_exec`), None if it has none."""
    line = next((line for line in text.splitlines() if line.startswith("Exec=")), None)
    if line is None:
        return None
    value = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), line[5:])
    argv: list[str] = []
    word: list[str] | None = None
    quoted = escaped = False
    for c in value:
        if escaped:
            word = [*(word or []), c]
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted = not quoted
            word = word if word is not None else []
        elif c == " " and not quoted:
            if word is not None:
                argv.append("".join(word))
            word = None
        else:
            word = [*(word or []), c]
    if word is not None:
        argv.append("".join(word))
    return [arg.replace("%%", "%") for arg in argv]


def _running(argv: Sequence[str]) -> int | None:
    """The pid of a process of this user running exactly ``argv`` (what the autostart entry starts), if any."""
    prefix = list(argv)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if words[-1:] == [""]:
            words.pop()  # cmdline ends with a NUL
        # a console script started through its #! line shows as [interpreter, script, ...]
        if prefix in (words, words[1:]):
            return int(entry.name)
    return None


def status(systemctl: Systemctl, home: Path) -> Report:
    """Which kind is installed and whether it runs: exit 0 installed and running, 1 installed but not running,
    3 not installed."""
    report = Report(code=NOT_INSTALLED)
    unit, entry = unit_path(home), desktop_path(home)
    if ours(unit):
        report.say(f"installed: systemd user unit {unit}")
        if systemctl.reachable():
            enabled = systemctl.run("is-enabled", UNIT_NAME, record=False).stdout.strip() or "unknown"
            active = systemctl.run("is-active", UNIT_NAME, record=False).stdout.strip() or "unknown"
            report.say(f"enabled: {enabled}; active: {active}")
            report.code = RUNNING if active == "active" else NOT_RUNNING
        else:
            report.say("no systemd user manager answers here: cannot tell whether it runs")
            report.code = NOT_RUNNING
    if ours(entry):
        report.say(f"installed: XDG autostart entry {entry} (started by the desktop at login)")
        argv = exec_argv(entry.read_text(encoding="utf-8", errors="replace"))
        pid = _running(argv) if argv else None
        report.say(f"running: pid {pid}" if pid else "running: no `digisign-web serve` of this installation runs now")
        report.code = min(report.code, RUNNING if pid else NOT_RUNNING)
    for path in (unit, entry):
        if ours(path) is False:
            report.say(f"not ours: {path} exists but was not written by digisign-web")
    if report.code == NOT_INSTALLED:
        report.say(f"not installed (neither {unit} nor {entry})")
    return report
