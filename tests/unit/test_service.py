"""`service install` (issue 13, item 1): the pure parts of digisign_web/desktop/autostart.py. Which kind is
chosen, the two quoting rules (F28), and the unit and desktop entry texts. The commands themselves, the files
and the real parsers (systemd-analyze, gio) are in tests/integration/test_service_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from digisign_web.desktop import autostart
from digisign_web.desktop.autostart import (
    DEFAULT,
    GRAPHICAL,
    ServiceError,
    Situation,
    choose,
    desktop_exec,
    desktop_word,
    systemd_exec,
    systemd_word,
)


@pytest.mark.parametrize(("situation", "kind", "target"), [
    (Situation(systemd=True, graphical_target=True, display=True), "systemd", GRAPHICAL),
    (Situation(systemd=True, graphical_target=True, display=False), "systemd", GRAPHICAL),
    (Situation(systemd=True, graphical_target=False, display=False), "systemd", DEFAULT),
    # a desktop that bypasses systemd: a unit would start without its DISPLAY, so the desktop starts the entry
    (Situation(systemd=True, graphical_target=False, display=True), "autostart", ""),
    (Situation(systemd=False, graphical_target=False, display=True), "autostart", ""),
    (Situation(systemd=False, graphical_target=False, display=False), "autostart", ""),
])
def test_choice(situation: Situation, kind: str, target: str) -> None:
    choice = choose(situation)
    assert (choice.kind, choice.target) == (kind, target)
    assert choice.why


@pytest.mark.parametrize(("arg", "word"), [
    ("/usr/bin/digisign-web", "/usr/bin/digisign-web"),
    ("--state-dir", "--state-dir"),
    ("/home/a b/state", '"/home/a b/state"'),
    ("100%", "100%%"),  # % starts a specifier
    ("/x/$HOME", '"/x/$$HOME"'),  # $ starts a variable
    ("/x/%h y", '"/x/%%h y"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("it's", '"it\'s"'),
    ("", '""'),
])
def test_systemd_quoting(arg: str, word: str) -> None:
    assert systemd_word(arg) == word


@pytest.mark.parametrize(("arg", "word"), [
    ("/usr/bin/digisign-web", "/usr/bin/digisign-web"),
    ("/home/a b/state", '"/home/a b/state"'),
    ("100%", "100%%"),  # % starts a field code
    ("a$b", '"a\\$b"'),
    ("a`b", '"a\\`b"'),
    ('a"b', '"a\\"b"'),
    ("a\\b", '"a\\\\b"'),
    ("~user", '"~user"'),
    ("a;b", '"a;b"'),
    ("", '""'),
])
def test_desktop_quoting(arg: str, word: str) -> None:
    assert desktop_word(arg) == word


def test_the_two_rules_differ_and_desktop_escapes_backslashes_twice() -> None:
    """The same argv, two different lines: the desktop entry's string escape doubles every backslash again."""
    argv = ["/opt/d w/digisign-web", "serve", "--state-dir", "/h/50% $x\\y"]
    assert systemd_exec(argv) == '"/opt/d w/digisign-web" serve --state-dir "/h/50%% $$x\\\\y"'
    assert desktop_exec(argv) == '"/opt/d w/digisign-web" serve --state-dir "/h/50%% \\\\$x\\\\\\\\y"'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x1bb"])
def test_control_characters_are_refused(bad: str) -> None:
    with pytest.raises(ServiceError):
        systemd_word(bad)
    with pytest.raises(ServiceError):
        desktop_word(bad)


def test_exec_line_reads_back() -> None:
    """status finds the running server by the entry's own argv: the reader undoes exactly what was written."""
    argv = ["/opt/d w/digisign-web", "serve", "--state-dir", "/h/o'k \"q\" $HOME `id` \\x 100% ~u;&|", ""]
    assert autostart.exec_argv(autostart.desktop_text(argv)) == argv
    assert autostart.exec_argv("[Desktop Entry]\n") is None


@pytest.mark.parametrize("program", ["/opt/a=b/digisign-web", "/opt/50%/digisign-web"])
def test_desktop_program_path_may_not_hold_equals_or_percent(program: str) -> None:
    with pytest.raises(ServiceError, match="'=' or '%'"):
        desktop_exec([program, "serve"])


def test_serve_argv_is_absolute_and_always_names_the_state_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv = autostart.serve_argv(Path("state"), Path("my.conf"), command=["/usr/bin/digisign-web"])
    assert argv == ["/usr/bin/digisign-web", "serve", "--state-dir", str(tmp_path / "state"),
                    "--config", str(tmp_path / "my.conf")]
    assert autostart.serve_argv(Path("/s"), None, command=["/p"]) == ["/p", "serve", "--state-dir", "/s"]


def test_program_is_this_installation() -> None:
    """The console script beside this interpreter (not resolved: a venv's python is a symlink)."""
    command = autostart.program()
    assert Path(command[0]).is_absolute()
    assert command[-1] == "digisign_web" or command[0].endswith("/digisign-web")


def test_unit_text() -> None:
    argv = ["/opt/d w/digisign-web", "serve", "--state-dir", "/s"]
    text = autostart.unit_text(argv, DEFAULT, "https://localhost:1234/")
    lines = text.splitlines()
    assert lines[0] == autostart.MARKER
    for line in ('ExecStart="/opt/d w/digisign-web" serve --state-dir /s', "Restart=on-failure", "RestartSec=5s",
                 "WantedBy=default.target", "Documentation=https://localhost:1234/", "Type=exec", "LimitCORE=0"):
        assert line in lines, line
    assert not any(line.startswith(("PrivateNetwork=", "NoNewPrivileges=", "PartOf=")) for line in lines)
    graphical = autostart.unit_text(argv, GRAPHICAL).splitlines()
    assert {"After=graphical-session.target", "PartOf=graphical-session.target",
            "WantedBy=graphical-session.target"} <= set(graphical)


def test_desktop_text() -> None:
    lines = autostart.desktop_text(["/opt/d w/digisign-web", "serve"]).splitlines()
    assert lines[:2] == [autostart.MARKER, "[Desktop Entry]"]
    for line in ("Type=Application", 'Exec="/opt/d w/digisign-web" serve', "NoDisplay=true",
                 "X-GNOME-Autostart-enabled=true", "Terminal=false"):
        assert line in lines, line


def test_config_home(tmp_path: Path) -> None:
    assert autostart.config_home({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path
    # a relative XDG_CONFIG_HOME is ignored, as the XDG spec says
    assert autostart.config_home({"XDG_CONFIG_HOME": "rel"}) == Path.home() / ".config"
