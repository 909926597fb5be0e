"""The virtual FINEID card that ships with digisign-web: the card OS (:mod:`.card`), its test PKI
(:mod:`.pki`), the T=0 card side shared with recorded real cards (:mod:`.cardside`, :mod:`.replay`), the
in-process reader source (:mod:`.source`) and the vpcd bridge into pcscd (:mod:`.vpcd`).

It imports ``card`` like any other user of the card layer; ``card`` never imports it.

Names are imported on first use (PEP 562), so that a command that needs none of them (``--help``)
does not pay for cryptography, asn1crypto and pyscard."""

from __future__ import annotations

from card.lazy import lazy_attributes

TYPE_CHECKING = False  # typing costs milliseconds that ``--help`` should not pay

# The profiles the virtual card can be (card.virtual.card.LAYOUTS holds each one's layout).
VIRTUAL_PROFILES = ("fineid-v4", "fineid-v3", "fineid-v3.1", "fineid-v3-dual", "fineid-org")
VPCD_PORT = 35963  # vsmartcard vpcd's default TCP port, where pcscd listens for the card side

if TYPE_CHECKING:
    from card.virtual.card import LAYOUTS, VirtualCard
    from card.virtual.source import InProcessTransport, VirtualReader

_HOMES = {
    "LAYOUTS": "card.virtual.card",
    "VirtualCard": "card.virtual.card",
    "InProcessTransport": "card.virtual.source",
    "VirtualReader": "card.virtual.source",
}

__all__ = [
    "LAYOUTS",
    "VIRTUAL_PROFILES",
    "InProcessTransport",
    "VirtualCard",
    "VirtualReader",
]


__getattr__ = lazy_attributes(_HOMES, globals())
