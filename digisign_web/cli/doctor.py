"""``digisign-web doctor [--json]``: the checks live in :mod:`digisign_web.doctor`; this builds their options
from the command line and DigiSign.conf (as ``serve`` reads it) and prints one line per check (D53)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
from pathlib import Path

from digisign_web.cli.common import card_policy_of, default_state_dir_text, settings_of, state_dir


def cmd_doctor(args: argparse.Namespace) -> int:
    """0 when signing from a browser would work, 1 when not; a usage error is 2 (CliError, in ``main``)."""
    from digisign_web.doctor import DoctorOptions, report, run_checks, verdict

    # Doctor prints every settings warning as a line of its own; logged too, each would show twice.
    settings_log = logging.getLogger("digisign_web.settings")
    level = settings_log.level
    settings_log.setLevel(logging.ERROR)
    try:
        settings = settings_of(args)
    finally:
        settings_log.setLevel(level)
    options = DoctorOptions(
        state_dir=state_dir(args.state_dir, write=False),
        home=Path(os.path.expanduser("~")),
        settings=settings,
        policy=card_policy_of(args, settings),
        ports=(args.port,) if args.port else settings.https_ports,
        wait=max(0.0, args.wait),
        state_option="" if args.state_dir == Path(default_state_dir_text()) else
        f" --state-dir {shlex.quote(str(args.state_dir))}",
    )
    checks = run_checks(options)
    ok = verdict(checks)
    if args.json:
        print(json.dumps(report(checks), indent=2))
    else:
        for check in checks:
            print(check.line())
        print("Signing from a browser should work." if ok else
              "Signing from a browser will not work until the FAIL lines above are fixed.")
    return 0 if ok else 1
