"""``digisign-web list`` and ``digisign-web virtual-card``: what the readers hold, and the virtual card in pcscd."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import threading
from pathlib import Path

from card import CardError, CardManager, Token, TransportError, list_readers
from card.virtual import VirtualCard, VirtualReader, vpcd
from card.virtual.cardside import CardSide
from card.virtual.replay import RecordedCard
from digisign_web.cli.common import CliError, card_policy_of, settings_of, state_dir
from digisign_web.scs.expiry import Validity, expiry

log = logging.getLogger("digisign_web")


def _token_report(token: Token, warning_days: int, now: dt.datetime | None = None) -> dict[str, object]:
    certs = []
    for cert in token.certificates():
        x509 = cert.certificate
        state = expiry(x509.not_before, x509.not_after, warning_days, now)
        entry: dict[str, object] = {
            "label": cert.label,
            "role": cert.role,
            "subject": cert.subject,
            "issuer": cert.issuer,
            "serial_number": format(cert.certificate.serial_number, "X"),
            "not_before": x509.not_before.isoformat(),
            "not_after": cert.certificate.not_after.isoformat(),
            # valid | expiring (within certExpirationWarningDays) | expired | not-yet-valid (D50)
            "validity": str(state.validity),
            "days_left": state.days_left,
            "validity_text": state.text(),
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
        if report["atr"]:  # a PKCS#11 module gives none
            print(f"  ATR:   {report['atr']}")
        for cert in report["certificates"]:  # type: ignore[attr-defined]
            algo = f"{cert['key_algorithm']} {cert['curve'] or cert['key_size']}"
            print(f"  - [{cert['role']}] {cert['label']}")
            print(f"      subject:   {cert['subject']}")
            print(f"      issuer:    {cert['issuer']}")
            print(f"      key usage: {', '.join(cert['key_usage'])}   key: {algo}")
            print(f"      validity:  {_validity_text(cert)}")
            pin = cert.get("pin")
            if pin:
                state = "BLOCKED (unblock with the PUK)" if pin["blocked"] else (
                    f"{pin['tries_left']} of {pin['max_tries'] or '?'} tries left" if pin["tries_left"] is not None
                    else "tries left not known")
                if pin["must_change"]:
                    state += ", must be changed"
                print(f"      PIN:       {pin['label']} ({state})")


def _validity_text(cert: dict) -> str:
    """"expires 2027-05-01 (in 500 days)", with EXPIRES SOON, EXPIRED or NOT YET VALID in front when so."""
    text = str(cert["validity_text"])
    validity = cert["validity"]
    if validity == Validity.EXPIRING:
        return f"EXPIRES SOON: {text}"
    never = "; never offered for signing" if cert.get("key_reference") is not None else ""
    if validity == Validity.EXPIRED:
        return f"EXPIRED: {text}{never}"
    if validity == Validity.NOT_YET_VALID:
        return f"NOT YET VALID: {text}{never}"
    return text


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_of(args)  # DigiSign.conf as serve reads it; its warnings are logged once, here
    virtual = None
    if args.virtual_card:
        virtual = VirtualCard(args.virtual_card, state_dir(args.state_dir))
    manager = CardManager(card_policy_of(args, settings), VirtualReader(virtual) if virtual is not None else None)
    try:
        if virtual is None and manager.pkcs11 is None:
            list_readers()  # fail fast, with the reason, when pcscd is not there (a PKCS#11 module may not need it)
        manager.start()
        manager.wait_settled(timeout=args.wait)
        reports = []
        stats = []
        for token in manager.tokens():
            try:
                reports.append(_token_report(token, settings.cert_expiration_warning_days))
                transport = getattr(token, "transport", None)  # a PKCS#11 module's APDUs are not ours to count
                if transport is not None:
                    stats.append({"reader": token.reader, **transport.stats.snapshot()})
            except CardError as exc:
                log.error("%s: %s", token.reader, exc)
        readers, problems = manager.readers(), manager.problems()
        twins = {r: t for r in readers if (t := manager.shadowed(r))}
        modules = manager.pkcs11.modules() if manager.pkcs11 is not None else {}
    except TransportError as exc:
        raise CliError(str(exc)) from None
    finally:
        manager.stop()
    if args.json:
        out: dict[str, object] = {
            "readers": [{"name": r, "card": a is not None, "problem": problems.get(r), "same_card_as": twins.get(r)}
                        for r, a in readers.items()],
            "tokens": reports,
            "pkcs11_modules": [{"path": m, "problem": p} for m, p in modules.items()],
        }
        if args.stats:
            out["apdu_stats"] = stats
        print(json.dumps(out, indent=2))
    else:
        _print_text(readers, reports, {**problems, **{r: f"the same card as in {t}: listed there (D63)"
                                                       for r, t in twins.items()}})
        for module, problem in modules.items():
            print(problem or f"PKCS#11 module {module}: loaded")
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
        identity = None
        if getattr(args, "cert_days", None):  # for tests: expired, expiring or not yet valid certificates (D52)
            from card.virtual.pki import load_or_create, parse_cert_days

            identity = load_or_create(state_dir(args.state_dir), args.profile, parse_cert_days(args.cert_days))
        card = VirtualCard(args.profile, state_dir(args.state_dir), identity=identity, atr=args.atr,
                           token_label=args.label, pkcs15=not args.no_pkcs15)
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


