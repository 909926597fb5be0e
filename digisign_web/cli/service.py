"""``digisign-web service install|uninstall|status``: the server at login. The work is in
:mod:`digisign_web.desktop.autostart` (D43); this only checks the arguments and prints."""

from __future__ import annotations

import argparse

from digisign_web.cli.common import CliError, settings_of, state_dir


def cmd_service(args: argparse.Namespace) -> int:
    from digisign_web.desktop import autostart

    settings = settings_of(args)  # a bad --config is one line before anything is written
    state_dir(args.state_dir, write=False)
    systemctl = autostart.Systemctl()
    home = autostart.config_home(systemctl.environ)
    try:
        if args.action == "install":
            port = settings.https_ports[0]
            argv = autostart.serve_argv(args.state_dir, args.config)
            report = autostart.install(argv, systemctl, home, dry_run=args.dry_run,
                                       documentation=f"https://localhost:{port}/")
        elif args.action == "uninstall":
            report = autostart.uninstall(systemctl, home, dry_run=args.dry_run)
        else:
            report = autostart.status(systemctl, home)
    except autostart.ServiceError as exc:
        raise CliError(str(exc)) from None
    for line in report.lines:
        print(line)
    return report.code
