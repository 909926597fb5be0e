"""The virtual FINEID card that ships with digisign-web: the card OS (:mod:`.card`), its test PKI
(:mod:`.pki`), the T=0 card side shared with recorded real cards (:mod:`.cardside`, :mod:`.replay`), the
in-process reader source (:mod:`.source`) and the vpcd bridge into pcscd (:mod:`.vpcd`).

It imports ``card`` like any other user of the card layer; ``card`` never imports it."""

from card.virtual.card import LAYOUTS, VIRTUAL_PROFILES, VirtualCard
from card.virtual.source import InProcessTransport, VirtualReader

__all__ = ["LAYOUTS", "VIRTUAL_PROFILES", "InProcessTransport", "VirtualCard", "VirtualReader"]
