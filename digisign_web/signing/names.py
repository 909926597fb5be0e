"""What the protocol layer names of the signature formats without loading them: the signature types that
``/version`` advertises, and the error a format raises for a request it cannot serve.

Nothing here imports a cryptography library, so ``serve`` answers its first request before the signers and
the card layer have loaded (D69); :mod:`.formats` builds on these names.
"""

from __future__ import annotations

ADVERTISED_TYPES = ("signature", "signature-plain", "cms", "cms-pades", "pkcs7", "xml")


class FormatError(Exception):
    """A request this format cannot serve. ``code`` is the SCS reasonCode (400 bad input, 501 not offered)."""

    def __init__(self, code: int, text: str):
        super().__init__(text)
        self.code = code
        self.text = text
