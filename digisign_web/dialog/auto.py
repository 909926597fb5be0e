"""The automatic dialog: approves or cancels without a person, for automated tests of e-services."""

from __future__ import annotations

import logging

from digisign_web.dialog.protocol import Dialog, DialogAnswer, DialogRefused, DialogRequest

log = logging.getLogger(__name__)


class AutoDialog(Dialog):
    """For automated tests of e-services: approves with the first choice and fixed PINs, or cancels all.

    It serves the virtual card only, unless ``allow_real_cards`` (the loudly named command-line flag):
    approving real signatures without a human is exactly what the dialog exists to prevent.
    """

    shows_pin_status = False  # nobody looks at the counters

    def __init__(self, pin1: str = "1234", pin2: str = "123456", cancel: bool = False,
                 allow_real_cards: bool = False):
        self.pins = {"authentication": pin1, "signature": pin2}
        self.cancel = cancel
        self.allow_real_cards = allow_real_cards

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        log.info("auto dialog: %s", request.summary().replace("\n", " "))
        if self.cancel:
            return DialogAnswer.cancel()
        for index, choice in enumerate(request.choices):
            if choice.virtual or self.allow_real_cards:
                # A PIN entered on the reader: approving is all the automatic dialog does (D62).
                pin = self.pins.get(choice.role) if choice.needs_pin and not choice.pin_on_reader else None
                return DialogAnswer(index, pin)
        raise DialogRefused("the automatic dialog only approves the virtual card "
                            "(start with --auto-approve-real-cards to change that)")
