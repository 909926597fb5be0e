"""The ``digisign-web`` command: ``serve``, ``list``, ``sign``, ``verify``, ``virtual-card`` and ``trust``.

A bad path or file on the command line (missing, a directory, unreadable, not the expected format, an
output directory that does not exist, a state directory that cannot be written) is one line on stderr and
exit code 2, found before any card work or PIN prompt where it can be; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hashlib
import json
import logging
import os
import signal
import stat
import sys
import threading
from pathlib import Path

from card import (
    CardError,
    CardManager,
    CardPolicy,
    Certificate,
    Token,
    TransportError,
    WrongPinError,
    list_readers,
)
from card.virtual import VIRTUAL_PROFILES, VirtualCard, VirtualReader, vpcd
from card.virtual.cardside import CardSide
from card.virtual.replay import RecordedCard
from digisign_web.settings import Settings, card_policy
from digisign_web.text import inert_line

log = logging.getLogger("digisign_web")


class CliError(Exception):
    """Something the user must fix (a bad path or file, no pcscd): ``main`` prints it as one line, exit 2."""


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _read_input(path: Path, option: str = "") -> bytes:
    """The bytes of a file named on the command line (``option`` names it in the error, e.g. ``--in``)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"{option} {path}: {_why(exc)}".lstrip()) from None


def _check_output(path: Path, what: str) -> None:
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


def _state_dir(path: Path, write: bool = True) -> Path:
    """``--state-dir``: created (0700) when missing if the command writes there; an CliError when it is
    not a directory or cannot be written."""
    if write:
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except FileExistsError:
            pass  # a file in the way: reported just below
        except OSError as exc:
            raise CliError(f"--state-dir {path}: cannot create it: {_why(exc)}") from None
    if path.exists() and not path.is_dir():
        raise CliError(f"--state-dir {path}: not a directory")
    if write and not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"--state-dir {path}: not writable (the TLS keys and virtual card live there)")
    return path


def _check_config(path: Path) -> None:
    """``--config``: an existing, readable DigiSign.conf-style text file (a pipe is left to the reader)."""
    from digisign_web.settings import MAX_FILE_BYTES

    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise CliError(f"--config {path}: {_why(exc)}") from None
    if stat.S_ISDIR(mode):
        raise CliError(f"--config {path}: is a directory")
    if not stat.S_ISREG(mode):
        return
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CliError(f"--config {path}: {_why(exc)}") from None
    if len(data) > MAX_FILE_BYTES:
        raise CliError(f"--config {path}: larger than {MAX_FILE_BYTES} bytes, not a settings file")
    if b"\0" in data:
        raise CliError(f"--config {path}: binary data, not a DigiSign.conf-style settings file (key=value lines)")


def _hex_atr(text: str) -> bytes:
    """argparse type of ``--atr``: hex bytes, spaces and colons allowed."""
    try:
        atr = bytes.fromhex(text.replace(" ", "").replace(":", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex bytes: {text!r}") from None
    if not 2 <= len(atr) <= 33:
        raise argparse.ArgumentTypeError(f"an ATR is 2 to 33 bytes, not {len(atr)}")
    return atr


def _port(text: str) -> int:
    """argparse type of a TCP port."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, not {port}")
    return port


def default_state_dir() -> Path:
    """``$XDG_CONFIG_HOME/digisign-web`` (``~/.config/digisign-web``): TLS material and the virtual card's PKI."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "digisign-web"


def _add_card_policy(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exclude-reader", default="", metavar="PATTERNS",
                        help="space-separated reader name wildcards to ignore, e.g. '*O2* *CCID*'")
    parser.add_argument("--allow-unknown-cards", type=int, choices=(0, 1), default=1,
                        help="read cards with an unknown ATR generically if they carry PKCS#15 (default 1)")
    parser.add_argument("--valid-token-info-label", default="", metavar="PATTERNS",
                        help="accept only tokens whose TokenInfo label matches one of these wildcards")


def _policy(args: argparse.Namespace) -> CardPolicy:
    return card_policy(Settings(), exclude_reader=args.exclude_reader,
                       allow_unknown_cards=bool(args.allow_unknown_cards),
                       valid_token_info_label=args.valid_token_info_label)


def _token_report(token: Token) -> dict[str, object]:
    certs = []
    for cert in token.certificates():
        entry: dict[str, object] = {
            "label": cert.label,
            "role": cert.role,
            "subject": cert.subject,
            "issuer": cert.issuer,
            "serial_number": format(cert.certificate.serial_number, "X"),
            "not_after": cert.certificate.not_after.isoformat(),
            "key_usage": cert.key_usage,
            "key_algorithm": cert.key_algorithm,
            "key_size": cert.key_size,
            "curve": cert.curve,
        }
        if cert.key is not None:
            entry["key_reference"] = cert.key.key_reference
        if cert.pin is not None:
            status = token.pin_status(cert.pin)
            entry["pin"] = {
                "label": cert.pin.label,
                "reference": cert.pin.reference,
                "tries_left": status.tries_left,
                "max_tries": status.max_tries,
                "blocked": status.blocked,
                "must_change": status.must_change,
            }
        certs.append(entry)
    return {
        "reader": token.reader,
        "atr": token.atr.hex(" ").upper(),
        "profile": token.profile.name,
        "serial": token.serial,
        "label": token.label,
        "certificates": certs,
    }


def _print_text(readers: dict[str, bytes | None], reports: list[dict[str, object]],
                problems: dict[str, str]) -> None:
    if not readers:
        print("No readers found.")
    by_reader = {r["reader"]: r for r in reports}
    for reader, atr in readers.items():
        print(f"Reader: {reader}")
        if atr is None:
            print("  (no card)")
            continue
        report = by_reader.get(reader)
        if report is None:
            print(f"  ATR {atr.hex(' ').upper()}: not usable: {problems.get(reader, 'unknown reason')}")
            continue
        print(f"  Token: {report['profile']}  serial {report['serial']}  label {report['label']!r}")
        print(f"  ATR:   {report['atr']}")
        for cert in report["certificates"]:  # type: ignore[attr-defined]
            algo = f"{cert['key_algorithm']} {cert['curve'] or cert['key_size']}"
            print(f"  - [{cert['role']}] {cert['label']}")
            print(f"      subject:   {cert['subject']}")
            print(f"      issuer:    {cert['issuer']}")
            print(f"      key usage: {', '.join(cert['key_usage'])}   key: {algo}")
            pin = cert.get("pin")
            if pin:
                state = "BLOCKED (unblock with the PUK)" if pin["blocked"] else (
                    f"{pin['tries_left']} of {pin['max_tries'] or '?'} tries left")
                if pin["must_change"]:
                    state += ", must be changed"
                print(f"      PIN:       {pin['label']} ({state})")


def cmd_list(args: argparse.Namespace) -> int:
    virtual = None
    if args.virtual_card:
        virtual = VirtualCard(args.virtual_card, _state_dir(args.state_dir))
    manager = CardManager(_policy(args), VirtualReader(virtual) if virtual is not None else None)
    try:
        if virtual is None:
            list_readers()  # fail fast, with the reason, when pcscd is not there
        manager.start()
        manager.wait_settled(timeout=args.wait)
        reports = []
        stats = []
        for token in manager.tokens():
            try:
                reports.append(_token_report(token))
                stats.append({"reader": token.reader, **token.transport.stats.snapshot()})
            except CardError as exc:
                log.error("%s: %s", token.reader, exc)
        readers, problems = manager.readers(), manager.problems()
    except TransportError as exc:
        raise CliError(str(exc)) from None
    finally:
        manager.stop()
    if args.json:
        out: dict[str, object] = {
            "readers": [{"name": r, "card": a is not None, "problem": problems.get(r)}
                        for r, a in readers.items()],
            "tokens": reports,
        }
        if args.stats:
            out["apdu_stats"] = stats
        print(json.dumps(out, indent=2))
    else:
        _print_text(readers, reports, problems)
        if args.stats:
            for entry in stats:
                print(f"APDUs for {entry['reader']}: {entry['apdus']} "
                      f"({entry['bytes_sent']} bytes sent, {entry['bytes_received']} received)")
    return 0


def cmd_virtual_card(args: argparse.Namespace) -> int:
    card: CardSide
    if args.replay:
        try:
            card = RecordedCard.load(args.replay)
        except ValueError as exc:
            raise CliError(f"--replay {exc}") from None
        description = f"{card.name} (from {args.replay})"
    else:
        card = VirtualCard(args.profile, _state_dir(args.state_dir), atr=args.atr, token_label=args.label,
                           pkcs15=not args.no_pkcs15)
        description = f"virtual card {args.profile} (serial {card.identity.serial})"
    card.faults.delay = args.slow_ms / 1000.0
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    def on_usr1(signum: int, frame: object) -> None:
        if card.present:
            card.remove()
        else:
            card.insert()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_usr1)
    print(f"{description} -> vpcd {args.host}:{args.port}; "
          f"PKI in {Path(args.state_dir) / 'virtual-card'}; SIGUSR1 toggles removal, SIGTERM stops",
          flush=True)
    vpcd.run(card, args.host, args.port, stop)
    return 0


def _pick_certificate(args: argparse.Namespace, manager: CardManager) -> tuple[Token, Certificate]:
    tokens = [t for t in manager.tokens() if not args.reader or t.reader == args.reader]
    if not tokens:
        problems = "; ".join(f"{r}: {p}" for r, p in manager.problems().items())
        raise CardError("no usable card" + (f" ({problems})" if problems else "") +
                        ("" if args.virtual_card else "; is the card in the reader?"))
    token = tokens[0]
    role = "signature" if args.key == "sign" else "authentication"
    keys = [c for c in token.certificates() if c.role == role and c.key is not None]
    if args.key_algorithm:
        keys = [c for c in keys if c.key_algorithm == args.key_algorithm.upper()]
    if not keys:
        algorithm = f" {args.key_algorithm.upper()}" if args.key_algorithm else ""
        raise CardError(f"the card in {token.reader} has no{algorithm} {role} key")
    return token, keys[0]


def _read_pin(args: argparse.Namespace, token: Token, cert: Certificate) -> str:
    """The PIN, from the terminal (never echoed) or, with --pin-stdin, one line of standard input."""
    if cert.pin is None:
        raise CardError("no PIN object is linked to this key")
    status = token.pin_status(cert.pin)
    if status.blocked:
        raise CardError(f"{cert.pin.label} is blocked: unblock it with the PUK first")
    if args.pin_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    left = f", {status.tries_left} tries left" if status.tries_left is not None else ""
    return getpass.getpass(f"{cert.pin.label}{left}: ")


def cmd_sign(args: argparse.Namespace) -> int:
    from digisign_web.signing import formats
    from digisign_web.signing.signers import CardSigner

    content = _read_input(args.infile, "--in")
    _check_output(args.outfile, "--out")
    if args.type == "pades":
        _check_pdf(content, args.infile)
    size = len(content)
    virtual = VirtualCard(args.virtual_card, _state_dir(args.state_dir)) if args.virtual_card else None
    manager = CardManager(_policy(args), VirtualReader(virtual) if virtual is not None else None)
    hash_algorithm = args.hash.upper().replace("-", "")
    try:
        manager.start()
        manager.wait_settled(timeout=args.wait)
        token, cert = _pick_certificate(args, manager)
        content_type = args.content_type
        if args.type == "cms-pades" and content_type == "data":
            content, content_type = hashlib.new(hash_algorithm.lower(), content).digest(), "digest"
        request = formats.SignRequest(content, content_type, hash_algorithm)
        if args.type != "pades":
            formats.preflight(args.type, request)  # refuse before asking for the PIN
        print(f"Signing {args.infile} ({size} bytes) as {args.type} with "
              f"{cert.subject} [{cert.role} key] in {token.reader}", file=sys.stderr)
        if args.rsa_pss and (args.type not in ("signature", "signature-plain") or cert.key_algorithm != "RSA"):
            raise ValueError("--rsa-pss makes a raw RSA signature: use it with --type signature and an RSA key")
        pin = _read_pin(args, token, cert)
        signer = CardSigner(token, cert, pin)
        if args.rsa_pss:
            digest = formats.message_digest(request)
            output = token.sign_digest(cert, hash_algorithm, digest, pin=pin, pss=True)
        elif args.type == "pades":
            from digisign_web.signing.pdf import sign_pdf

            output = asyncio.run(sign_pdf(signer, content, hash_algorithm))
        else:
            output = asyncio.run(formats.sign(args.type, signer, request)).signature
    except WrongPinError as exc:
        print(f"error: wrong PIN ({exc.tries_left} tries left); nothing was signed", file=sys.stderr)
        return 3
    except (CardError, formats.FormatError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        manager.stop()
    try:
        args.outfile.write_bytes(output)
    except OSError as exc:
        raise CliError(f"--out {args.outfile}: {_why(exc)} (the signature was not written)") from None
    print(f"wrote {args.outfile} ({len(output)} bytes)", file=sys.stderr)
    return 0


def _check_pdf(content: bytes, path: Path) -> None:
    """``--type pades`` needs a PDF that pyHanko can read: say so before the PIN prompt, not after."""
    from digisign_web.signing.pdf import PdfError, signature_count

    try:
        signature_count(content)
    except PdfError as exc:
        raise CliError(f"--in {path}: not a PDF that can be signed ({exc})") from None


def cmd_verify(args: argparse.Namespace) -> int:
    from lxml.etree import LxmlError
    from pyhanko.pdf_utils.misc import PdfError

    from card import load_pem_certificates
    from digisign_web.signing.validation import verify_bytes

    trust = []
    for path in args.trust or []:
        try:
            found = load_pem_certificates(_read_input(path, "--trust"), str(path))
        except (ValueError, CardError) as exc:
            raise CliError(f"--trust {exc}") from None
        if not found:
            raise CliError(f"--trust {path}: no PEM certificate in it")
        trust += found
    detached = _read_input(args.detached, "--detached") if args.detached else None
    data = _read_input(args.file)
    try:
        reports = verify_bytes(data, detached, trust)
    except PdfError as exc:
        raise CliError(f"{args.file}: not a readable PDF ({exc})") from None
    except LxmlError as exc:
        raise CliError(f"{args.file}: not well-formed XML ({exc})") from None
    except (ValueError, CardError) as exc:
        raise CliError(f"{args.file}: {exc}") from None
    for report in reports:
        print(report.text())
    return 0 if all(r.ok for r in reports) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from digisign_web.web.serve import ServeOptions, serve

    if args.config is not None:
        _check_config(args.config)
    _state_dir(args.state_dir)
    return serve(ServeOptions(
        state_dir=args.state_dir, config=args.config, port=args.port, dialog=args.dialog,
        virtual_card=args.virtual_card, auto_pin1=args.auto_pin1, auto_pin2=args.auto_pin2,
        auto_cancel=args.auto_cancel, auto_approve_real_cards=args.auto_approve_real_cards,
        exclude_reader=args.exclude_reader, allow_unknown_cards=bool(args.allow_unknown_cards),
        valid_token_info_label=args.valid_token_info_label))


def cmd_trust(args: argparse.Namespace) -> int:
    from digisign_web.tls.trust import run

    _state_dir(args.state_dir, write=args.action == "install")
    return run(args)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors, like every other error of this command (usage is one --help away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {inert_line(message, limit=1000)} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="digisign-web", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv: debug)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the local HTTPS signing server")
    p.add_argument("--config", type=Path, help="DigiSign.conf-style settings file")
    p.add_argument("--state-dir", type=Path, default=default_state_dir())
    p.add_argument("--port", type=_port, default=None,
                   help="first HTTPS port to try (default: httpsPorts, i.e. 53952, then 23124, then 8089)")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES,
                   help="serve an in-process virtual card instead of PC/SC readers")
    p.add_argument("--dialog", choices=("web", "terminal", "auto"), default="web",
                   help="how the user is asked: web (browser; falls back to terminal until it exists), terminal, "
                        "or auto (automated tests: approves with the PINs below, virtual card only)")
    p.add_argument("--auto-pin1", default="1234", help="PIN1 the auto dialog enters (default: the virtual card's)")
    p.add_argument("--auto-pin2", default="123456", help="PIN2 the auto dialog enters (default: the virtual card's)")
    p.add_argument("--auto-cancel", action="store_true", help="the auto dialog cancels every request instead")
    p.add_argument("--auto-approve-real-cards", action="store_true",
                   help="DANGEROUS: let the auto dialog sign with real cards, with nobody asked")
    _add_card_policy(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("list", help="list readers, tokens, certificates and PIN status")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--stats", action="store_true", help="also report the APDUs this listing cost")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES,
                   help="list an in-process virtual card instead of PC/SC readers")
    p.add_argument("--state-dir", type=Path, default=default_state_dir())
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for readers to appear")
    _add_card_policy(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("sign", help="sign a local file with the card (or the virtual card)")
    p.add_argument("--type", required=True,
                   choices=("signature", "signature-plain", "cms", "pkcs7", "cms-pades", "xml", "pades"),
                   help="pades: a signed PDF (PAdES-B-B); cms-pades: the detached CMS over the file's digest")
    p.add_argument("--in", dest="infile", type=Path, required=True)
    p.add_argument("--out", dest="outfile", type=Path, required=True)
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
    p.add_argument("--reader", help="use the card in this reader (default: the first usable card)")
    p.add_argument("--virtual-card", choices=VIRTUAL_PROFILES)
    p.add_argument("--state-dir", type=Path, default=default_state_dir())
    p.add_argument("--wait", type=float, default=2.0, help="seconds to wait for readers to appear")
    _add_card_policy(p)
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a CMS, PDF or XMLDSig signature")
    p.add_argument("file", type=Path)
    p.add_argument("--detached", type=Path, help="the signed content, for a detached CMS")
    p.add_argument("--trust", type=Path, action="append", help="PEM file of trusted root certificate(s)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("virtual-card", help="plug the virtual FINEID card into pcscd through vpcd")
    p.add_argument("--profile", choices=VIRTUAL_PROFILES, default="fineid-v4")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=vpcd.DEFAULT_PORT)
    p.add_argument("--state-dir", type=Path, default=default_state_dir())
    p.add_argument("--atr", type=_hex_atr,
                   help="present this ATR instead of the profile's (tests unknown-card handling)")
    p.add_argument("--label", default="FINEID", help="TokenInfo label (default FINEID)")
    p.add_argument("--slow-ms", type=float, default=0.0, help="delay every APDU by this many ms")
    p.add_argument("--no-pkcs15", action="store_true",
                   help="leave out the PKCS#15 directory files, as recordings of real cards do")
    p.add_argument("--replay", type=Path, metavar="RECORDING.json",
                   help="instead of the virtual card, replay a recording of a real card "
                        "(e.g. tests/data/recordings/fineid-v4-2023.json)")
    p.set_defaults(func=cmd_virtual_card)

    p = sub.add_parser("trust", help="make browsers (and optionally the system) trust the local CA")
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument("--state-dir", type=Path, default=default_state_dir())
    p.add_argument("--system", action="store_true",
                   help="also the system store (update-ca-certificates; needs root)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_trust)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * args.verbose
    if args.command in ("serve", "virtual-card"):
        level = min(level, logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
            message = f"{where}{_why(exc)}"
        else:
            message = str(exc)
        print(f"error: {inert_line(message, limit=1000)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
