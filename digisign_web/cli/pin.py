"""``digisign-web pin status|change|unblock``: the card's PIN counters, and changing or unblocking a PIN (D49).

The work is :mod:`digisign_web.scs.pin_management`'s, which the "My card" page uses too (D46), with the rules of
:mod:`digisign_web.scs.pin_rules` (D47). The counters are read before any PIN is asked, so a blocked PIN is
refused before the user types; a new PIN is asked twice. PINs are read without echo (getpass) or, with
``--stdin``, one per line; they are never printed. Exit 0 done, 3 wrong PIN or PUK, 2 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys

from card import CardError, CardManager, Token, TransportError, list_readers
from card.virtual import VirtualCard, VirtualReader
from digisign_web.cli.common import CliError, PinInput, card_policy_of, pick_token, settings_of, state_dir
from digisign_web.scs.pin_management import NAMES, PinCounter, PinManagement, PinOperationError, card_pins
from digisign_web.scs.pin_rules import describe

WRONG_PIN_EXIT = 3


def _counter_text(counter: PinCounter) -> str:
    if counter.blocked:
        state = "BLOCKED" + (" (unblock with the PUK: digisign-web pin unblock "
                             f"--{counter.id})" if counter.id != "puk" else " (the PINs can no longer be unblocked)")
    elif counter.tries_left is None:
        state = "tries left unknown"
    else:
        state = f"{counter.tries_left} of {counter.max_tries or '?'} tries left"
    if counter.must_change:
        state += ", must be changed"
    return f"{NAMES[counter.id]:<5} {counter.label}: {state}"


def cmd_pin(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    virtual = VirtualCard(args.virtual_card, state_dir(args.state_dir)) if args.virtual_card else None
    manager = CardManager(card_policy_of(args, settings), VirtualReader(virtual) if virtual is not None else None)
    pins = PinManagement(settings)
    try:
        if virtual is None:
            list_readers()  # fail fast, with the reason, when pcscd is not there
        manager.start()
        manager.wait_settled(timeout=args.wait)
        token = pick_token(args, manager)
        if args.action == "status":
            return _status(args, token, pins)
        which = args.pin_ref or "pin2"
        return _operate(args, token, pins, which)
    except PinOperationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return WRONG_PIN_EXIT if exc.code in ("wrong-pin", "wrong-puk") else 2
    except (CardError, TransportError) as exc:
        raise CliError(str(exc)) from None
    finally:
        manager.stop()


def _status(args: argparse.Namespace, token: Token, pins: PinManagement) -> int:
    counters = pins.status(token)
    if args.pin_ref:
        counters = [c for c in counters if c.id == args.pin_ref]
    if args.json:
        print(json.dumps({"reader": token.reader, "serial": token.serial,
                          "pins": [c.as_json() for c in counters]}, indent=2))
        return 0
    print(f"Card in {token.reader} (serial {token.serial})")
    for counter in counters:
        print("  " + _counter_text(counter))
    return 0


def _operate(args: argparse.Namespace, token: Token, pins: PinManagement, which: str) -> int:
    unblock = args.action == "unblock"
    if unblock:
        pins.check_unblocking_allowed()  # before any prompt
    found = card_pins(token).pins
    if which not in found or (unblock and "puk" not in found):
        raise PinOperationError("no-pin", f"this card has no {NAMES['puk' if which in found else which]}")
    # The counters first: a blocked PIN (or PUK) is refused before anything is typed.
    counters = {c.id: c for c in pins.status(token)}
    first = "puk" if unblock else which
    if counters[first].blocked:
        pins.refuse_blocked(token, first, found[first])  # raises the one message for it
    policies = pins.policies(token)[which]
    name = NAMES[which]
    entry = PinInput(args.stdin, "--stdin")
    left = counters[first].tries_left
    tries = f", {left} tries left" if left is not None else ""
    print(f"{'Unblocking' if unblock else 'Changing'} {found[which].label} on the card in {token.reader}",
          file=sys.stderr)
    if unblock:
        current = entry.read(f"PUK{tries}: ", "PUK")
    else:
        current = entry.read(f"Current {name}{tries}: ", f"current {name}")
    new = entry.read(f"New {name} ({describe(policies['new'])}): ", f"new {name}")
    again = entry.read(f"New {name} again: ", f"new {name} again")
    if unblock:
        after = pins.unblock(token, which, current, new, again)
    else:
        after = pins.change(token, which, current, new, again)
    del current, new, again
    print(f"{name} {'unblocked and set to the new PIN' if unblock else 'changed'}.", file=sys.stderr)
    for counter in after:
        print("  " + _counter_text(counter))
    return 0
