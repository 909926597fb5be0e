"""What every command shares: one-line errors, checked paths, argparse types and the card policy options.

A bad path or file on the command line is a :class:`CliError`: ``main`` prints it as one line and exits 2,
found before any card work or PIN prompt where it can be; never a traceback.
"""

from __future__ import annotations

import argparse
import os
import stat

TYPE_CHECKING = False  # typing costs milliseconds that --help should not pay
if TYPE_CHECKING:
    from pathlib import Path

    from card import CardManager, CardPolicy, Token
    from digisign_web.settings import Settings


class CliError(Exception):
    """Something the user must fix (a bad path or file, no pcscd): ``main`` prints it as one line, exit 2."""


def why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def read_input(path: Path, option: str = "") -> bytes:
    """The bytes of a file named on the command line (``option`` names it in the error, e.g. ``--in``)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{option} {path}: {why(exc)}".lstrip()) from None


def check_output(path: Path, what: str) -> None:
    """Refuse an output file that cannot be written before any card work (or PIN) is spent on it."""
    parent = path.parent
    if path.is_dir():
        raise CliError(f"{what} {path}: is a directory")
    if not parent.exists():
        raise CliError(f"{what} {path}: the directory {parent} does not exist")
    if not parent.is_dir():
        raise CliError(f"{what} {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CliError(f"{what} {path}: not writable")


def state_dir(path: Path, write: bool = True) -> Path:
    """``--state-dir``: created (0700) when missing if the command writes there; an CliError when it is
    not a directory or cannot be written."""
    if write:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:
            pass  # a file in the way: reported just below
        except OSError as exc:
            raise CliError(f"--state-dir {path}: cannot create it: {why(exc)}") from None
    if path.exists() and not path.is_dir():
        raise CliError(f"--state-dir {path}: not a directory")
    if write and not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"--state-dir {path}: not writable (the TLS keys and virtual card live there)")
    return path


def check_config(path: Path) -> None:
    """``--config``: an existing, readable DigiSign.conf-style text file (a pipe is left to the reader)."""
    from digisign_web.settings import MAX_FILE_BYTES

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CliError(f"--config {path}: {why(exc)}") from None
    if stat.S_ISDIR(mode):
        raise CliError(f"--config {path}: is a directory")
    if not stat.S_ISREG(mode):
        return
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"--config {path}: {why(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CliError(f"--config {path}: larger than {MAX_FILE_BYTES} bytes, not a settings file")
    if b"\0" in data:
        raise CliError(f"--config {path}: binary data, not a DigiSign.conf-style settings file (key=value lines)")


def hex_atr(text: str) -> bytes:
    """argparse type of ``--atr``: hex bytes, spaces and colons allowed."""
    try:
        atr = bytes.fromhex(text.replace(" ", "").replace(":", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex bytes: {text!r}") from None
    if not 2 <= len(atr) <= 33:
        raise argparse.ArgumentTypeError(f"an ATR is 2 to 33 bytes, not {len(atr)}")
    return atr


def port_number(text: str) -> int:
    """argparse type of a TCP port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def path_arg(text: str) -> Path:
    """argparse type of a path (pathlib is imported when a command runs, not for ``--help``)."""
    from pathlib import Path

    return Path(text)


def default_state_dir_text() -> str:
    """``$XDG_CONFIG_HOME/digisign-web`` (``~/.config/digisign-web``): TLS material and the virtual card's PKI.

    Text, not a Path: argparse converts a text default with the option's type, when a command runs."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "digisign-web")


def add_card_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exclude-reader", default="", metavar="PATTERNS",
                        help="space-separated reader name wildcards to ignore, e.g. '*O2* *CCID*'")
    parser.add_argument("--allow-unknown-cards", type=int, choices=(0, 1), default=1,
                        help="read cards with an unknown ATR generically if they carry PKCS#15 (default 1)")
    parser.add_argument("--valid-token-info-label", default="", metavar="PATTERNS",
                        help="accept only tokens whose TokenInfo label matches one of these wildcards")


def settings_of(args: argparse.Namespace) -> Settings:
    """DigiSign.conf as ``serve`` reads it (all layers, then ``--config``), for every command that uses a card.

    A missing ``--config`` file is one line and exit 2 (CliError), never a silent default."""
    from digisign_web.settings import load_settings

    config = getattr(args, "config", None)
    if config is not None:
        check_config(config)
    return load_settings(config)


def card_policy_of(args: argparse.Namespace, settings: Settings | None = None) -> CardPolicy:
    """The card policy of ``settings`` (default: none read), with the command line's options winning."""
    from digisign_web.settings import Settings, card_policy

    return card_policy(settings or Settings(), exclude_reader=args.exclude_reader,
                       allow_unknown_cards=bool(args.allow_unknown_cards),
                       valid_token_info_label=args.valid_token_info_label,
                       pkcs11_modules=tuple(str(p) for p in getattr(args, "pkcs11_module", None) or ()))


def pick_token(args: argparse.Namespace, manager: CardManager) -> Token:
    """The first usable card, or the one in ``--reader``: how ``sign`` and ``pin`` choose."""
    tokens = [t for t in manager.tokens() if not args.reader or t.reader == args.reader]
    if not tokens:
        problems = "; ".join(f"{r}: {p}" for r, p in manager.problems().items())
        where = f" in {args.reader}" if args.reader else ""
        raise CliError(f"no usable card{where}" + (f" ({problems})" if problems else "") +
                       ("" if args.virtual_card else "; is the card in the reader?"))
    return tokens[0]


class PinInput:
    """Where PINs come from: the terminal without echo, or standard input one per line (``option``, e.g.
    ``--stdin``). An ended input is one line of error, never an empty PIN sent to the card."""

    def __init__(self, from_stdin: bool, option: str):
        self.from_stdin = from_stdin
        self.option = option
        self.line = 0

    def read(self, prompt: str, what: str) -> str:
        import getpass
        import sys

        if not self.from_stdin:
            try:
                return getpass.getpass(prompt)
            except EOFError:
                raise CliError(f"no {what} entered") from None
        self.line += 1
        line = sys.stdin.readline()
        if not line:
            raise CliError(f"{self.option}: line {self.line} ({what}) is missing")
        return line.rstrip("\r\n")
