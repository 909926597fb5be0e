"""Whose PIN a card holds (D27, D28): the origin for which each card connection's verified PINs were verified.

A card keeps PIN1 verified after an operation, so a second request could sign without a PIN. That is allowed
only for the origin that entered it, on the same card connection: any other origin, a reinserted or reopened
card (a new token has no owner), or a PIN verified by another program makes the card log out first, so it
checks the PIN entered now. PIN2 is never reused.
"""

from __future__ import annotations

import logging

from card import CardError, Certificate, Token

log = logging.getLogger(__name__)


class PinSessions:
    """Per reader: the token (card connection) and the origin for which we last used it."""

    def __init__(self) -> None:
        self._owner: dict[str, tuple[Token, str | None]] = {}

    def owned_by(self, token: Token, origin: str | None) -> bool:
        """Whether the card's verified PINs (if any) were verified by us, on this connection, for ``origin``."""
        owner = self._owner.get(token.reader)
        return owner is not None and owner[0] is token and owner[1] == origin

    def may_reuse(self, token: Token, cert: Certificate, origin: str | None) -> bool:
        """Whether ``cert``'s PIN could be used without asking, from memory: PIN1 only, for the origin it was
        verified for. Whether the card still holds it is :meth:`reusable`'s question, an APDU."""
        return cert.role == "authentication" and cert.pin is not None and self.owned_by(token, origin)

    def reusable(self, token: Token, cert: Certificate, origin: str | None) -> bool:
        """Whether ``cert``'s PIN may be used without asking: :meth:`may_reuse`, while the card still holds it
        (the settings that forbid any reuse are the caller's to check first)."""
        return self.may_reuse(token, cert, origin) and token.pin_verified(cert.pin)

    def take(self, token: Token, origin: str | None, *, log_out: bool = False) -> None:
        """Before an operation for ``origin``: unless the card's PINs are already this origin's (and ``log_out``
        is off, as scsRequestsPinAlways turns it on), the card forgets every verified PIN, so it checks the one
        entered now and a PIN verified for another origin (or by another program) is never used for this one."""
        if log_out or not self.owned_by(token, origin):
            token.logout()
        self._owner[token.reader] = (token, origin)

    def drop(self, token: Token) -> None:
        """dropAuthentication: the card forgets every verified PIN after the operation, whatever its outcome."""
        self._owner.pop(token.reader, None)  # a failed logout leaves no owner: the next use logs out first
        try:
            token.logout()
        except CardError as exc:
            log.info("could not log the card out after the operation (%s)", exc)
