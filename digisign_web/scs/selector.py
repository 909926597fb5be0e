"""The SCS ``selector``: parsing it, and choosing the card certificates it allows.

Pure functions over :class:`card.CardCertificate` objects, with no HTTP and no card I/O, so the rules can be
tested exhaustively. They follow the decisions in docs/decisions.md:

* D11: ``issuers`` are RFC 4514 DNs (see :mod:`digisign_web.scs.dn`), in RFC 4514 or reversed X.500 order;
* D12: ``akis`` are hex or base64 key identifiers, matched against the leaf's AuthorityKeyIdentifier;
* D13/D14: ``keyalgorithms`` and ``keyusages`` are case-insensitive; members are ANDed, arrays ORed;
* D14a: ``keyalgorithms`` is a preference unless ``strictKeyPolicy`` (request) or the local setting says
  otherwise;
* D50: an expired or not yet valid certificate is never offered (:func:`select_usable`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from card import CardCertificate
from digisign_web.scs.dn import dn_matches, parse_dn
from digisign_web.scs.errors import SelectorError
from digisign_web.scs.expiry import Expiry, Validity

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_USAGES = ("digitalsignature", "nonrepudiation")
_KEY_ALGORITHMS = {"rsa": "rsa", "ec": "ec", "ecc": "ec", "ecdsa": "ec"}


@dataclass(frozen=True)
class Selector:
    """A parsed ``selector``. Empty tuples mean "no constraint"; see :func:`parse_selector`."""

    issuers: tuple[str, ...] = ()  # DN strings, validated by parse_selector
    keyusages: tuple[str, ...] = ()  # "digitalsignature" | "nonrepudiation"
    keyalgorithms: tuple[str, ...] = ()  # "rsa" | "ec"
    akis: tuple[bytes, ...] = ()  # decoded key identifiers
    strict_key_policy: bool | None = None  # the request's strictKeyPolicy (top level or in the selector)


# --------------------------------------------------------------------------------------------------
# Selector parsing


def _string_list(selector: dict, member: str) -> list[str]:
    """A list of strings; a lone string is a 1-list because some clients send one. null or [] = absent."""
    value = selector.get(member)
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise SelectorError(f"selector.{member} must be an array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise SelectorError(f"selector.{member}[{i}] must be a string")
    return value


def _dedupe(items: list[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))


_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})+")
_HEX_SEPARATORS_RE = re.compile(r"[:\s]")
_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")


def _decode_aki(text: str) -> bytes:
    """Hex (either case, ``:`` or space separators) first, then base64 (standard or URL-safe, padding
    optional). Hex wins an ambiguous string: a 40-digit hex string is also valid base64, and hex is how
    tools print key identifiers."""
    compact = _HEX_SEPARATORS_RE.sub("", text)
    if _HEX_RE.fullmatch(compact):
        return bytes.fromhex(compact)
    candidate = text.strip()
    if not candidate.isascii() or not _B64_RE.fullmatch(candidate):
        raise ValueError("neither hex nor base64")
    body = candidate.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        raise ValueError("truncated base64")
    return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)


def _strict_flag(value: object, field: str) -> bool | None:
    """JSON booleans, plus the spellings loose clients produce: "true"/"false" and 0/1."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise SelectorError(f"{field} must be a boolean")


def parse_selector(value: object, top_level_strict: object = None) -> Selector:
    """Parse the request's ``selector`` member (and its top-level ``strictKeyPolicy``).

    Validation happens here, before the card or the user is involved, so a malformed selector is a 400
    naming the field. Unknown members are ignored (D9). ``null`` or an empty array means the member is
    absent: an empty OR would otherwise match nothing, which no client can mean. ``strictKeyPolicy``
    may sit at the top level (as in v1.3) or inside the selector (D14a); the top-level one wins.
    """
    if value is None:
        selector: dict = {}
    elif isinstance(value, dict):
        selector = value
    else:
        raise SelectorError("selector must be a JSON object")

    issuers = _string_list(selector, "issuers")
    for i, dn in enumerate(issuers):
        try:
            parse_dn(dn)
        except SelectorError as exc:
            raise SelectorError(f"selector.issuers[{i}] is not a DN: {exc}") from None

    keyusages = []
    for i, usage in enumerate(_string_list(selector, "keyusages")):
        norm = usage.strip().lower()
        if norm not in KEY_USAGES:
            raise SelectorError(f"selector.keyusages[{i}] {usage!r} is not one of digitalsignature, nonrepudiation")
        keyusages.append(norm)

    keyalgorithms = []
    for i, algorithm in enumerate(_string_list(selector, "keyalgorithms")):
        norm = _KEY_ALGORITHMS.get(algorithm.strip().lower())
        if norm is None:
            raise SelectorError(f"selector.keyalgorithms[{i}] {algorithm!r} is not one of rsa, ec (ecc, ecdsa)")
        keyalgorithms.append(norm)

    akis = []
    for i, text in enumerate(_string_list(selector, "akis")):
        try:
            decoded = _decode_aki(text)
        except (ValueError, binascii.Error):
            decoded = b""
        if not decoded:
            raise SelectorError(f"selector.akis[{i}] {text[:80]!r} is neither hex nor base64 of a key identifier")
        akis.append(decoded)

    inner = _strict_flag(selector.get("strictKeyPolicy"), "selector.strictKeyPolicy")
    outer = _strict_flag(top_level_strict, "strictKeyPolicy")
    return Selector(
        issuers=_dedupe(issuers),
        keyusages=_dedupe(keyusages),
        keyalgorithms=_dedupe(keyalgorithms),
        akis=_dedupe(akis),
        strict_key_policy=outer if outer is not None else inner,
    )


# --------------------------------------------------------------------------------------------------
# Certificate properties


def aki_of(cert: CardCertificate) -> bytes | None:
    """The leaf's AuthorityKeyIdentifier.keyIdentifier, or None when absent."""
    return cert.authority_key_id


def key_algorithm_of(cert: CardCertificate) -> str:
    """``"rsa"`` or ``"ec"``: the only key types a card certificate is read with."""
    return cert.key_algorithm.lower()


def key_usages_of(cert: CardCertificate) -> set[str]:
    """The selector-relevant usages in KeyUsage. Without the extension the set is empty: a ``keyusages``
    selector is how a page picks PIN1 or PIN2, and a certificate that says neither cannot be placed."""
    usage = cert.key_usage
    out = set()
    if "digital_signature" in usage:
        out.add("digitalsignature")
    if "non_repudiation" in usage:
        out.add("nonrepudiation")
    return out


# --------------------------------------------------------------------------------------------------
# Selection


@dataclass(frozen=True)
class Selection(Generic[T]):
    """The outcome of :func:`select`."""

    matches: list[T]  # in the candidates' order
    reason: str  # when matches is empty: why, naming the selector field that excluded everything
    relaxed_algorithm: bool  # keyalgorithms could not be met and was ignored (non-strict)
    unusable: bool = False  # nothing usable matches, but expired or not yet valid certificates do (D50)


def select(
    candidates: Sequence[T],
    cert_of: Callable[[T], CardCertificate],
    selector: Selector,
    strict_setting: bool,
) -> Selection[T]:
    """Filter ``candidates`` by ``selector``: AND across members, OR within each array (D14).

    ``keyalgorithms`` is a preference (DigiSign, D14a): it narrows the choice when it can, and otherwise
    is dropped unless ``strictKeyPolicy`` (the request's, else ``strict_setting``) is on. The members are
    applied in the order issuers, akis, keyusages, so the reason names the first one that left nothing.
    """
    pool = list(candidates)
    if not pool:
        return Selection([], "there are no certificates to choose from", False)

    filters: list[tuple[str, tuple, Callable[[CardCertificate], bool]]] = [
        ("issuers", selector.issuers, lambda c: any(dn_matches(dn, c.issuer) for dn in selector.issuers)),
        ("akis", tuple(a.hex() for a in selector.akis), lambda c: aki_of(c) in selector.akis),
        ("keyusages", selector.keyusages, lambda c: bool(key_usages_of(c) & set(selector.keyusages))),
    ]
    for field, shown, accepts in filters:
        if not shown:
            continue
        before = len(pool)
        pool = [candidate for candidate in pool if accepts(cert_of(candidate))]
        log.debug("selector.%s kept %d of %d certificates", field, len(pool), before)
        if not pool:
            why = f"selector.{field} {list(shown)} matches no certificate (of {before} available)"
            return Selection([], why, False)

    if not selector.keyalgorithms:
        return Selection(pool, "", False)
    preferred = [candidate for candidate in pool if key_algorithm_of(cert_of(candidate)) in selector.keyalgorithms]
    if preferred:
        return Selection(preferred, "", False)
    wanted = " or ".join(selector.keyalgorithms)
    if selector.strict_key_policy is not None:
        strict, source = selector.strict_key_policy, "strictKeyPolicy is on"
    else:
        strict, source = strict_setting, "the strictSCSKeyPolicy setting is on"
    if strict:
        plural = "" if len(pool) == 1 else "s"
        return Selection(
            [], f"selector.keyalgorithms: no {wanted} key among the {len(pool)} certificate{plural} matching the "
                f"rest of the selector, and {source}", False)
    log.info("no %s key among %d matching certificates; offering the others (strictKeyPolicy off)", wanted, len(pool))
    return Selection(pool, "", True)


def select_usable(
    candidates: Sequence[T],
    cert_of: Callable[[T], CardCertificate],
    selector: Selector,
    strict_setting: bool,
    expiry_of: Callable[[T], Expiry],
) -> Selection[T]:
    """:func:`select` among the certificates valid now: an expired or not yet valid one is never offered (D50).

    When nothing valid matches, the selector is run once more over every certificate: if only unusable
    ones match, the selection says so (``unusable``, and a reason with their dates, e.g. "the only
    matching certificate expired on 2026-01-31"); otherwise its reason names the selector field, as ever.
    """
    usable = [c for c in candidates if expiry_of(c).validity.usable]
    selection = select(usable, cert_of, selector, strict_setting)
    if selection.matches or len(usable) == len(candidates):
        return selection
    everything = select(candidates, cert_of, selector, strict_setting)
    stale = [c for c in everything.matches if not expiry_of(c).validity.usable]
    if not stale:
        return everything if not everything.matches else selection
    log.info("only %d expired or not yet valid certificate(s) match the request; none is offered", len(stale))
    return Selection([], unusable_reason([expiry_of(c) for c in stale]), False, unusable=True)


def unusable_reason(expiries: Sequence[Expiry]) -> str:
    """"the only matching certificate expired on 2026-01-31" (dates in UTC; no names: the page reads it)."""
    expired = sorted({e.not_after.date().isoformat() for e in expiries if e.validity is Validity.EXPIRED})
    early = sorted({e.not_before.date().isoformat() for e in expiries
                    if e.validity is Validity.NOT_YET_VALID and e.not_before is not None})
    many = len(expiries) > 1
    parts = []
    if expired:
        parts.append(f"expired on {', '.join(expired)}")
    if early:
        parts.append(f"{'are' if many else 'is'} not valid before {', '.join(early)}")
    return f"the only matching certificate{'s' if many else ''} {' or '.join(parts)}"
