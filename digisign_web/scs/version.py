"""The ``/version`` answer (D6–D8), from the card state's summaries: no APDU, and no card layer needed.

Importing this loads no cryptography: ``serve`` answers ``/version`` as soon as its port listens, before the
card layer has loaded and the cards present have been read (D69); until then there is no usable card, so
``hashAlgorithms`` and ``signatureAlgorithms`` are empty (D7) and pages poll, as they do for a card not yet
inserted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from digisign_web.signing.names import ADVERTISED_TYPES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from digisign_web.scs.card_state import CardSummary


def version_payload(summaries: Iterable[CardSummary], version: str = "1.1") -> dict[str, object]:
    """The six mPollux fields (plus v1.2's signatureAlgorithms), from memory: no APDU."""
    algorithms: list[str] = []
    now = dt.datetime.now(dt.UTC)
    for summary in summaries:  # only keys that can sign now: a card with expired ones alone is no usable card (D51)
        algorithms += [a for a in summary.usable_key_algorithms(now) if a not in algorithms]
    hash_list = ""
    if algorithms:  # a card has been read, so the card layer (whose table names the hashes) is loaded
        from digisign_web.scs.request import HASH_LIST as hash_list
    return {
        "version": version,
        "httpMethods": "GET, POST",
        "contentTypes": "data, digest",
        "signatureTypes": ",".join(ADVERTISED_TYPES),
        "selectorAvailable": True,
        "hashAlgorithms": hash_list,
        "signatureAlgorithms": ",".join(algorithms),
    }
