"""``digisign-web sign`` and ``digisign-web verify``: one signature from the command line, and checking one."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path

from card import CardError, CardManager, Certificate, Token, WrongPinError
from card.token import pin_on_reader
from card.virtual import VirtualCard, VirtualReader
from digisign_web.cli.common import (
    CliError,
    PinInput,
    card_policy_of,
    check_output,
    pick_token,
    read_input,
    settings_of,
    state_dir,
    why,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from digisign_web.settings import Settings


def _pick_certificate(args: argparse.Namespace, manager: CardManager, warning_days: int) -> tuple[Token, Certificate]:
    """The first usable card's key of the asked role (and algorithm). ``--key-algorithm`` is the user's own
    choice, so it is always strict (strictSCSKeyPolicy is for pages' preferences, D52). An expired or not yet
    valid certificate is never used (D50); one within certExpirationWarningDays is used, with a warning."""
    from digisign_web.scs.expiry import Validity, expiry

    token = pick_token(args, manager)
    role = "signature" if args.key == "sign" else "authentication"
    keys = [c for c in token.certificates() if c.role == role and c.key is not None]
    if args.key_algorithm:
        keys = [c for c in keys if c.key_algorithm == args.key_algorithm.upper()]
    if not keys:
        algorithm = f" {args.key_algorithm.upper()}" if args.key_algorithm else ""
        raise CardError(f"the card in {token.reader} has no{algorithm} {role} key")
    states = [expiry(c.certificate.not_before, c.certificate.not_after, warning_days) for c in keys]
    usable = [(c, state) for c, state in zip(keys, states, strict=True) if state.validity.usable]
    if not usable and args.allow_expired:  # D67: the user's own explicit, local choice; never over SCS
        print(f"warning: --allow-expired: signing with a certificate that {states[0].text()}", file=sys.stderr)
        usable = [(keys[0], states[0])]
    if not usable:
        why = "; ".join(sorted({state.text() for state in states}))
        raise CardError(f"the {role} certificate in {token.reader} {why}: it cannot be used to sign "
                        "(--allow-expired signs anyway, e.g. to test a relying party's expiry check)")
    cert, state = usable[0]
    if state.validity is Validity.EXPIRING:
        print(f"warning: the {role} certificate {state.text()} (certExpirationWarningDays={warning_days})",
              file=sys.stderr)
    return token, cert


def _read_pin(args: argparse.Namespace, token: Token, cert: Certificate) -> str | None:
    """The PIN, from the terminal (never echoed) or, with --pin-stdin, one line of standard input; None when
    the PIN is entered on the reader (a PKCS#11 protected authentication path, D62)."""
    if cert.pin is None:
        raise CardError("no PIN object is linked to this key")
    status = token.pin_status(cert.pin)
    if status.blocked:
        raise CardError(f"{cert.pin.label} is blocked: unblock it with the PUK first")
    if pin_on_reader(cert.pin):
        print(f"Enter {cert.pin.label} on the reader.", file=sys.stderr)
        return None
    left = f", {status.tries_left} tries left" if status.tries_left is not None else ""
    return PinInput(args.pin_stdin, "--pin-stdin").read(f"{cert.pin.label}{left}: ", cert.pin.label)


def cmd_sign(args: argparse.Namespace) -> int:
    from digisign_web.signing import formats
    from digisign_web.signing.signers import CardSigner

    content = read_input(args.infile, "--in")
    check_output(args.outfile, "--out")
    if args.type == "pades":
        _check_pdf(content, args.infile)
    size = len(content)
    settings: Settings = settings_of(args)  # DigiSign.conf as serve reads it; its warnings are logged once
    virtual = VirtualCard(args.virtual_card, state_dir(args.state_dir)) if args.virtual_card else None
    manager = CardManager(card_policy_of(args, settings), VirtualReader(virtual) if virtual is not None else None)
    hash_algorithm = args.hash.upper().replace("-", "")
    try:
        manager.start()
        manager.wait_settled(timeout=args.wait)
        token, cert = _pick_certificate(args, manager, settings.cert_expiration_warning_days)
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
        if args.type == "pades":
            from digisign_web.signing.pdf import sign_pdf

            output = asyncio.run(sign_pdf(signer, content, hash_algorithm))
        else:
            output = formats.sign(args.type, signer, request, pss=args.rsa_pss).signature
    except WrongPinError as exc:
        left = "" if exc.tries_left is None else f" ({exc.tries_left} tries left)"  # a PKCS#11 token may not say
        print(f"error: wrong PIN{left}; nothing was signed", file=sys.stderr)
        return 3
    except (CardError, formats.FormatError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        manager.stop()
    try:
        args.outfile.write_bytes(output)
    except OSError as exc:
        raise CliError(f"--out {args.outfile}: {why(exc)} (the signature was not written)") from None
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
            found = load_pem_certificates(read_input(path, "--trust"), str(path))
        except (ValueError, CardError) as exc:
            raise CliError(f"--trust {exc}") from None
        if not found:
            raise CliError(f"--trust {path}: no PEM certificate in it")
        trust += found
    detached = read_input(args.detached, "--detached") if args.detached else None
    data = read_input(args.file)
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


