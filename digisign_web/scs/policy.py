"""Request policy for SCS ``/sign``: the selector, the authentication-key origin rule, origin lists and
cancel-spam defence.

Pure functions over :class:`card.CardCertificate` objects, with no HTTP and no card I/O, so the
rules can be tested exhaustively. The rules follow the decisions of the SCS reference
(shared/reference/scs-interface.md §16):

* D11: ``issuers`` are RFC 4514 DNs compared attribute by attribute (type OIDs exactly, values
  case-insensitively with whitespace trimmed and collapsed), in RFC 4514 or reversed X.500 order;
* D12: ``akis`` are hex or base64 key identifiers, matched against the leaf's AuthorityKeyIdentifier;
* D13/D14: ``keyalgorithms`` and ``keyusages`` are case-insensitive; members are ANDed, arrays ORed;
* D14a: ``keyalgorithms`` is a preference unless ``strictKeyPolicy`` (request) or the local setting says
  otherwise;
* D22: the authentication key signs only ``data`` that starts with the requesting origin, a separator
  and a nonce of at least 64 octets (see :func:`check_authentication_content` for where we are stricter).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

from asn1crypto import core as asn1
from cryptography.x509.oid import NameOID, ObjectIdentifier

from card import CardCertificate, Name

log = logging.getLogger(__name__)

T = TypeVar("T")

KEY_USAGES = ("digitalsignature", "nonrepudiation")
_KEY_ALGORITHMS = {"rsa": "rsa", "ec": "ec", "ecc": "ec", "ecdsa": "ec"}
AUTH_NONCE_MIN = 64  # octets after the origin and its separator (mPollux; v1.3 says ">= 64 octets")
_AUTH_SEPARATORS = (b";", b"\n")


class SelectorError(ValueError):
    """The selector is malformed; str(e) names the field (becomes an SCS 400 reasonText)."""


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
            _parse_dn(dn)
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
# Distinguished names

_ATTRIBUTE_TYPES: dict[str, ObjectIdentifier] = {
    name.casefold(): oid
    for names, oid in [
        (("CN", "commonName"), NameOID.COMMON_NAME),
        (("C", "countryName"), NameOID.COUNTRY_NAME),
        (("O", "organizationName"), NameOID.ORGANIZATION_NAME),
        (("OU", "organizationalUnitName"), NameOID.ORGANIZATIONAL_UNIT_NAME),
        (("L", "localityName"), NameOID.LOCALITY_NAME),
        (("ST", "S", "stateOrProvinceName"), NameOID.STATE_OR_PROVINCE_NAME),
        (("STREET", "streetAddress"), NameOID.STREET_ADDRESS),
        (("DC", "domainComponent"), NameOID.DOMAIN_COMPONENT),
        (("UID", "userId"), NameOID.USER_ID),
        (("serialNumber",), NameOID.SERIAL_NUMBER),
        # RFC 4519 and OpenSSL: SN is the surname (DVV leaves carry SN and GN), not serialNumber.
        (("SN", "surname"), NameOID.SURNAME),
        (("GN", "givenName", "G"), NameOID.GIVEN_NAME),
        (("T", "title"), NameOID.TITLE),
        (("E", "email", "emailAddress"), NameOID.EMAIL_ADDRESS),
        (("initials",), NameOID.INITIALS),
        (("generationQualifier",), NameOID.GENERATION_QUALIFIER),
        (("dnQualifier",), NameOID.DN_QUALIFIER),
        (("pseudonym",), NameOID.PSEUDONYM),
        (("postalCode",), NameOID.POSTAL_CODE),
        (("businessCategory",), NameOID.BUSINESS_CATEGORY),
        (("organizationIdentifier",), NameOID.ORGANIZATION_IDENTIFIER),
        (("name",), ObjectIdentifier("2.5.4.41")),
    ]
    for name in names
}
_OID_RE = re.compile(r"(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))+")
_DESCR_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_HEXPAIR_RE = re.compile(r"[0-9A-Fa-f]{2}")
_RDN_SEPARATORS = ",;"  # ';' is RFC 2253's legacy separator, still written by some tools
_VALUE_END = ",;+"

_Rdn = tuple[tuple[str, str], ...]  # sorted (dotted OID, normalised value) pairs


def _normalise(value: str) -> str:
    return " ".join(value.split()).casefold()


def _attribute_type(text: str) -> ObjectIdentifier:
    text = text.strip()
    if text[:4].casefold() == "oid.":  # RFC 2253 legacy "OID.2.5.4.3"
        text = text[4:]
    if _OID_RE.fullmatch(text):
        return ObjectIdentifier(text)
    if not _DESCR_RE.fullmatch(text):
        raise SelectorError(f"bad attribute type {text!r}")
    oid = _ATTRIBUTE_TYPES.get(text.casefold())
    if oid is None:
        raise SelectorError(f"unknown attribute type {text!r} (use the dotted OID)")
    return oid


def _der_string(hex_text: str) -> str:
    """RFC 4514 ``#hex`` values are the DER of the attribute value; only string types can match."""
    try:
        parsed = asn1.load(bytes.fromhex(hex_text), strict=True)
        if isinstance(parsed, asn1.AbstractString):
            return parsed.native
    except (ValueError, TypeError, OverflowError):
        pass
    raise SelectorError(f"#{hex_text} is not a DER-encoded string")


class _DnReader:
    """A lenient RFC 4514 reader: spaces around separators, ``;`` between RDNs, quoted values (RFC 1779),
    ``\\`` escapes (one special character or hex pairs of UTF-8), and ``#hex`` DER values.

    cryptography's ``Name.from_rfc4514_string`` is strict about exactly what relying parties get wrong
    (a space after a comma, ``cn=`` in lower case), so the selector gets its own reader.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] == " ":
            self.pos += 1

    def parse(self) -> tuple[_Rdn, ...]:
        if not self.text.strip():
            raise SelectorError("empty DN")
        rdns: list[_Rdn] = []
        while True:
            pairs = [self._attribute()]
            while self.pos < len(self.text) and self.text[self.pos] == "+":
                self.pos += 1
                pairs.append(self._attribute())
            rdns.append(tuple(sorted(pairs)))
            if self.pos >= len(self.text):
                return tuple(rdns)
            self.pos += 1  # an RDN separator, as _attribute stops only at one

    def _attribute(self) -> tuple[str, str]:
        equals = self.text.find("=", self.pos)
        if equals < 0:
            raise SelectorError(f"no '=' after position {self.pos}")
        oid = _attribute_type(self.text[self.pos:equals])
        self.pos = equals + 1
        self._skip_spaces()
        value = self._value()
        self._skip_spaces()
        if self.pos < len(self.text) and self.text[self.pos] not in _VALUE_END:
            raise SelectorError(f"unexpected {self.text[self.pos]!r} at position {self.pos}")
        return oid.dotted_string, _normalise(value)

    def _value(self) -> str:
        text = self.text
        if text.startswith("#", self.pos):
            start = self.pos = self.pos + 1
            while self.pos < len(text) and text[self.pos] not in _VALUE_END and text[self.pos] != " ":
                self.pos += 1
            hex_text = text[start:self.pos]
            if not _HEX_RE.fullmatch(hex_text):
                raise SelectorError(f"bad hex value #{hex_text}")
            return _der_string(hex_text)
        quoted = text.startswith('"', self.pos)
        if quoted:
            self.pos += 1
        out: list[str] = []
        pending = bytearray()  # consecutive \XX escapes form one UTF-8 sequence

        def flush() -> None:
            if pending:
                try:
                    out.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    raise SelectorError("hex escapes are not UTF-8") from None
                pending.clear()

        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\":
                pair = text[self.pos + 1:self.pos + 3]
                if _HEXPAIR_RE.fullmatch(pair):
                    pending.append(int(pair, 16))
                    self.pos += 3
                    continue
                if self.pos + 1 >= len(text):
                    raise SelectorError("a DN cannot end with '\\'")
                flush()
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            if quoted and ch == '"':
                self.pos += 1
                break
            if not quoted and ch in _VALUE_END:
                break
            flush()
            out.append(ch)
            self.pos += 1
        else:
            if quoted:
                raise SelectorError("unterminated quoted value")
        flush()
        return "".join(out)


@lru_cache(maxsize=256)
def _parse_dn(text: str) -> tuple[_Rdn, ...]:
    """The selector DN as RDNs in the order written; each RDN a sorted tuple, so '+' RDNs compare as sets."""
    return _DnReader(text).parse()


def _name_rdns(name: Name) -> tuple[_Rdn, ...]:
    """The certificate's RDNs in X.500 order (as encoded: country first in DVV names)."""
    rdns = []
    for rdn in name.rdns:
        # bytes values (x500UniqueIdentifier) never equal a selector string: mark them unmatchable.
        pairs = [(oid, _normalise(value) if isinstance(value, str) else "\0#" + value.hex()) for oid, value in rdn]
        rdns.append(tuple(sorted(pairs)))
    return tuple(rdns)


def dn_matches(selector_dn: str, name: Name) -> bool:
    """Whether ``selector_dn`` names ``name`` (D11).

    RFC 4514 writes the most specific RDN first, the reverse of the encoding; LDAP/X.500 tools write it
    the other way round, so both orders match. Values compare after trimming, collapsing whitespace and
    case folding, since relying parties copy DNs by hand. Raises :class:`SelectorError` if unparseable.
    """
    wanted = _parse_dn(selector_dn)
    have = _name_rdns(name)
    return wanted == have[::-1] or wanted == have


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


def check_authentication_content(origin: str | None, content_type: str, content: bytes) -> str | None:
    """The SCS v1.1 authentication-key rule (D22): None if the content may be signed, else why not.

    The content must be ``data`` that starts with the exact ``Origin`` bytes (UTF-8), then ``;`` (v1.3)
    or LF (puumerkki/mPollux), then at least 64 octets of nonce.

    Decision, stricter than D22's "or nothing": the separator is **required**. Without one the content
    is ambiguous, because a nonce is typically hex, and hex continues a host name: ``https://a.fi``
    followed by ``0123…`` reads equally as the origin ``https://a.fi0123…``. So a page at
    ``https://a.fi.evil.example`` could obtain a signature over ``https://a.fi.evil.example…`` that a
    relying party at ``https://a.fi`` checking "starts with my origin" would accept. With a mandatory
    separator, "starts with my origin + separator" is a sound check. The opaque origin ``null`` is
    refused too: it binds the signature to no site at all.
    """
    if not origin:
        return "an authentication requires an Origin header, which binds the signed content to the site"
    if origin.casefold() == "null":
        return "an authentication cannot be bound to the opaque origin 'null'"
    if content_type != "data":
        return f"the authentication key signs only contentType 'data', not {content_type!r}"
    try:
        prefix = origin.encode("utf-8")
    except UnicodeEncodeError:
        return "the Origin header is not valid text"
    if not content.startswith(prefix):
        return f"the content must start with the requesting origin {origin!r}"
    separator = content[len(prefix):len(prefix) + 1]
    if separator not in _AUTH_SEPARATORS:
        return f"the origin {origin!r} in the content must be followed by ';' or a line feed"
    nonce = len(content) - len(prefix) - 1
    if nonce < AUTH_NONCE_MIN:
        return f"the content needs at least {AUTH_NONCE_MIN} octets after the origin and separator, not {nonce}"
    return None


# --------------------------------------------------------------------------------------------------
# Cancel spam


class CancelGuard:
    """Spam defence: after `limit` cancels from one origin within `window` seconds, refuse it for `block` seconds.

    A page that re-sends a request every time the user cancels would otherwise pin the dialog on screen. A
    request that ends unanswered counts the same: its dialog was never shown (a hidden or tiny window, a page
    that went away), the user let it time out, or its client left while it held the card.
    """

    _SWEEP_AT = 1024  # origins tracked before stale entries are dropped

    def __init__(
        self,
        limit: int = 3,
        window: float = 60.0,
        block: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or block < 0:
            raise ValueError("CancelGuard needs limit >= 1, window > 0 and block >= 0")
        self.limit = limit
        self.window = window
        self.block = block
        self._clock = clock
        self._cancels: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _prune(self, origin: str, now: float) -> deque[float]:
        cancels = self._cancels.setdefault(origin, deque())
        while cancels and now - cancels[0] >= self.window:
            cancels.popleft()
        return cancels

    def _sweep(self, now: float) -> None:
        for origin in [o for o, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[origin]
        for origin in list(self._cancels):
            if not self._prune(origin, now):
                del self._cancels[origin]

    def record_cancel(self, origin: str) -> None:
        """Count a cancelled (or unanswered) request; the `limit`-th within `window` seconds starts a block."""
        with self._lock:
            now = self._clock()
            if len(self._cancels) + len(self._blocked_until) > self._SWEEP_AT:
                self._sweep(now)
            if self._blocked_until.get(origin, now) > now:
                return  # already blocked: the block is not extended
            cancels = self._prune(origin, now)
            cancels.append(now)
            if len(cancels) >= self.limit:
                self._blocked_until[origin] = now + self.block
                del self._cancels[origin]
                log.warning("%d cancelled requests from %r within %.0f s: refusing it for %.0f s",
                            self.limit, origin, self.window, self.block)

    def blocked_for(self, origin: str) -> float:
        """Seconds left of the origin's block (0.0 if not blocked)."""
        with self._lock:
            until = self._blocked_until.get(origin)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._blocked_until[origin]
                return 0.0
            return left

    def record_success(self, origin: str) -> None:
        """A completed signature clears the origin's cancel history (a running block stays)."""
        with self._lock:
            self._cancels.pop(origin, None)
