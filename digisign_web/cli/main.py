"""The ``digisign-web`` command line: the parser, and ``main``, which turns every user error into one line.

Commands live in :mod:`.cards` (``list``, ``virtual-card``), :mod:`.signing` (``sign``, ``verify``) and here
(``serve``, ``trust``: each builds its typed options and calls the library).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from card.virtual import VIRTUAL_PROFILES, VPCD_PORT
from digisign_web.cli.common import (
    CliError,
    add_card_policy,
    check_config,
    default_state_dir_text,
    hex_atr,
    path_arg,
    port_number,
    state_dir,
    why,
)

TYPE_CHECKING = False  # typing costs milliseconds that --help should not pay
if TYPE_CHECKING:
    from collections.abc import Callable

DESCRIPTION = """Commands: ``serve``, ``list``, ``sign``, ``verify``, ``pin``, ``doctor``, ``service``,
``virtual-card`` and ``trust``.

A bad path or file on the command line (missing, a directory, unreadable, not the expected format, an
output directory that does not exist, a state directory that cannot be written) is one line on stderr and
exit code 2, found before any card work or PIN prompt where it can be; never a traceback.
"""



def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A command imported when it runs: ``--help`` and a command's parsing load none of the others."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"digisign_web.cli.{module}"), name)(args)

    return run


cmd_list = _command("cards", "cmd_list")
cmd_virtual_card = _command("cards", "cmd_virtual_card")
cmd_sign = _command("signing", "cmd_sign")
cmd_verify = _command("signing", "cmd_verify")
cmd_pin = _command("pin", "cmd_pin")
cmd_doctor = _command("doctor", "cmd_doctor")
cmd_service = _command("service", "cmd_service")


def cmd_serve(args: argparse.Namespace) -> int:
    from digisign_web.web.serve import ServeOptions, listen_address, serve

    try:
        listen = listen_address(args.listen)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.config is not None:
        check_config(args.config)
    state_dir(args.state_dir)
    if args.cert_days:  # the virtual card reads it where serve builds it (card.virtual.pki, D52)
        if not args.virtual_card:
            raise CliError("--cert-days sets the virtual card's certificates: use it with --virtual-card")
        import os

        from card.virtual.pki import CERT_DAYS_ENV

        os.environ[CERT_DAYS_ENV] = args.cert_days
    return serve(ServeOptions(
        state_dir=args.state_dir, config=args.config, port=args.port, listen=listen, dialog=args.dialog,
        virtual_card=args.virtual_card, auto_pin1=args.auto_pin1, auto_pin2=args.auto_pin2,
        auto_cancel=args.auto_cancel, auto_approve_real_cards=args.auto_approve_real_cards,
        exclude_reader=args.exclude_reader, allow_unknown_cards=bool(args.allow_unknown_cards),
        valid_token_info_label=args.valid_token_info_label,
        pkcs11_modules=tuple(str(p) for p in args.pkcs11_module or ())))


def cmd_trust(args: argparse.Namespace) -> int:
    from digisign_web.tls.trust import run

    state_dir(args.state_dir, write=args.action == "install")
    return run(args)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of this command (usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from digisign_web.text import inert_line

        self.exit(2, f"{self.prog}: error: {inert_line(message, limit=1000)} (see --help)\n")


def _version() -> str:
    from digisign_web import __version__

    return __version__


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=path_arg,
                        help="DigiSign.conf-style settings file, read after the usual ones (later wins)")


def _add_pkcs11(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pkcs11-module", action="append", type=path_arg, metavar="PATH",
                        help="also use the tokens of this PKCS#11 module (repeatable; adds to pkcs11Module)")


def _cert_days(text: str) -> str:
    """argparse type of ``--cert-days`` (the virtual card's validity periods): checked here, kept as text."""
    from card.virtual.pki import parse_cert_days

    try:
        parse_cert_days(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


_CERT_DAYS_HELP = ("for tests: the virtual card's certificates valid for these days from now, e.g. sign=-1 (expired "
                   "yesterday), auth=10 (expires in 10 days), sign=30:400 (not yet valid); same as "
                   "$DIGISIGN_WEB_VIRTUAL_CERT_DAYS")


def _add_card_options(parser: argparse.ArgumentParser, *, pkcs11: bool = True) -> None:
    """What every command that reads cards takes: the state directory, how long to wait for readers, the
    settings file, PKCS#11 modules and the card policy's overrides."""
    parser.add_argument("--state-dir", type=path_arg, default=default_state_dir_text())
    parser.add_argument("--wait", type=float, default=2.0, help="seconds to wait for readers to appear")
    _add_config(parser)
    if pkcs11:
        _add_pkcs11(parser)
    add_card_policy(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="digisign-web", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    parser.add_argument("--version", action="version", version=f"digisign-web {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the local HTTPS signing server")
    _add_config(p)
    p.add_argument("--state-dir", type=path_arg, default=default_state_dir_text())
    p.add_argument("--port", type=port_number, default=None,
                   help="first HTTPS port to try (default: httpsPorts, i.e. 53952, then 23124, then 8089)")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES,
                   help="serve an in-process virtual card instead of PC/SC readers")
    p.add_argument("--cert-days", type=_cert_days, metavar="ROLE=DAYS[,...]", help=_CERT_DAYS_HELP)
    p.add_argument("--dialog", choices=("web", "terminal", "auto"), default="web",
                   help="how the user is asked: web (browser; falls back to terminal until it exists), terminal, "
                        "or auto (automated tests: approves with the PINs below, virtual card only)")
    p.add_argument("--auto-pin1", default="1234", help="PIN1 the auto dialog enters (default: the virtual card's)")
    p.add_argument("--auto-pin2", default="123456", help="PIN2 the auto dialog enters (default: the virtual card's)")
    p.add_argument("--auto-cancel", action="store_true", help="the auto dialog cancels every request instead")
    p.add_argument("--auto-approve-real-cards", action="store_true",
                   help="DANGEROUS: let the auto dialog sign with real cards, with nobody asked")
    p.add_argument("--listen", metavar="ADDR",
                   help="listen on this address instead of loopback (containers in CI; logged as a warning)")
    _add_pkcs11(p)
    add_card_policy(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("list", help="list readers, tokens, certificates and PIN status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--stats", action="store_true", help="also report the APDUs this listing cost")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES,
                   help="list an in-process virtual card instead of PC/SC readers")
    _add_card_options(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("sign", help="sign a local file with the card (or the virtual card)")
    p.add_argument("--type", required=True,
                   choices=("signature", "signature-plain", "cms", "pkcs7", "cms-pades", "xml", "pades"),
                   help="pades: a signed PDF (PAdES-B-B); cms-pades: the detached CMS over the file's digest")
    p.add_argument("--in", dest="infile", type=path_arg, required=True)
    p.add_argument("--out", dest="outfile", type=path_arg, required=True)
    p.add_argument("--key", choices=("sign", "auth"), default="sign",
                   help="sign: the non-repudiation key (PIN2, default); auth: the authentication key (PIN1)")
    p.add_argument("--hash", default="SHA256", help="SHA1 (raw types only), SHA224, SHA256, SHA384, SHA512")
    p.add_argument("--content-type", choices=("data", "digest"), default="data",
                   help="digest: the input file holds the hash itself")
    p.add_argument("--key-algorithm", choices=("rsa", "ec"),
                   help="on a card with both (dual-algorithm FINEID v3), the key type to use")
    p.add_argument("--rsa-pss", action="store_true",
                   help="raw types with an RSA key: RSASSA-PSS (salt = hash length) instead of PKCS#1 v1.5")
    p.add_argument("--pin-stdin", action="store_true", help="read the PIN from one line of standard input")
    p.add_argument("--allow-expired", action="store_true",
                   help="sign even with an expired or not yet valid certificate (to test how a relying party "
                        "handles one; the server never does this)")
    p.add_argument("--reader", help="use the card in this reader (default: the first usable card)")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES)
    _add_card_options(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a CMS, PDF or XMLDSig signature")
    p.add_argument("file", type=path_arg)
    p.add_argument("--detached", type=path_arg, help="the signed content, for a detached CMS")
    p.add_argument("--trust", type=path_arg, action="append", help="PEM file of trusted root certificate(s)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("pin", help="PIN status, change, and unblock with the PUK")
    p.add_argument("action", choices=("status", "change", "unblock"))
    which = p.add_mutually_exclusive_group()
    which.add_argument("--pin1", dest="pin_ref", action="store_const", const="pin1",
                       help="the authentication PIN (PIN1)")
    which.add_argument("--pin2", dest="pin_ref", action="store_const", const="pin2",
                       help="the signature PIN (PIN2; the default for change and unblock)")
    p.add_argument("--stdin", action="store_true",
                   help="read the PINs from standard input, one per line, instead of asking without echo")
    p.add_argument("--json", action="store_true", help="machine-readable output (status)")
    p.add_argument("--reader", help="use the card in this reader (default: the first usable card)")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES)
    _add_card_options(p, pkcs11=False)
    p.set_defaults(func=cmd_pin)

    p = sub.add_parser("doctor", help="check everything that browser signing needs, one line per check")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--port", type=port_number, default=None, help="the SCS port to check (default: httpsPorts)")
    _add_card_options(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("service", help="run the server at login (systemd user unit, or XDG autostart)",
                       description="install: write, enable and start a systemd user unit "
                                   "($XDG_CONFIG_HOME/systemd/user/digisign-web.service), or, where the desktop "
                                   "session does not run through systemd, an XDG autostart entry "
                                   "($XDG_CONFIG_HOME/autostart/digisign-web.desktop). uninstall: undo it. status: "
                                   "exit code 0 installed and running, 1 installed but not running, 3 not installed.")
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument("--dry-run", action="store_true", help="print what would be written or run, change nothing")
    p.add_argument("--state-dir", type=path_arg, default=default_state_dir_text())
    _add_config(p)
    p.set_defaults(func=cmd_service)

    p = sub.add_parser("virtual-card", help="plug the virtual FINEID card into pcscd through vpcd")
    p.add_argument("--profile", choices=VIRTUAL_PROFILES, default="fineid-v4")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_number, default=VPCD_PORT)
    p.add_argument("--state-dir", type=path_arg, default=default_state_dir_text())
    p.add_argument("--atr", type=hex_atr,
                   help="present this ATR instead of the profile's (tests unknown-card handling)")
    p.add_argument("--label", default="FINEID", help="TokenInfo label (default FINEID)")
    p.add_argument("--slow-ms", type=float, default=0.0, help="delay every APDU by this many ms")
    p.add_argument("--no-pkcs15", action="store_true",
                   help="leave out the PKCS#15 directory files, as recordings of real cards do")
    p.add_argument("--cert-days", type=_cert_days, metavar="ROLE=DAYS[,...]", help=_CERT_DAYS_HELP)
    p.add_argument("--replay", type=path_arg, metavar="RECORDING.json",
                   help="instead of the virtual card, replay a recording of a real card "
                        "(e.g. tests/data/recordings/fineid-v4-2023.json)")
    p.set_defaults(func=cmd_virtual_card)

    p = sub.add_parser("trust", help="make browsers (and optionally the system) trust the local CA")
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument("--state-dir", type=path_arg, default=default_state_dir_text())
    p.add_argument("--system", action="store_true",
                   help="also the system store (update-ca-certificates; needs root)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trust)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging  # not before: --help and argument errors need none of it

    log = logging.getLogger("digisign_web")
    level = logging.WARNING - 10 * args.verbose
    if args.command in ("serve", "virtual-card"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The format shows neither the caller's file and line nor thread or process names: the logging HOWTO's
    # "Optimization" section turns their collection off, which halves the cost of a record (one per request).
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (CliError, OSError) as exc:
        # OSError: a file or directory that went bad past the checks (e.g. a state directory's tls/ that
        # another user owns). The traceback is for -vv only.
        log.debug("%s", exc, exc_info=True)
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if exc.filename else ""
            message = f"{where}{why(exc)}"
        else:
            message = str(exc)
        from digisign_web.text import inert_line

        print(f"error: {inert_line(message, limit=1000)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
