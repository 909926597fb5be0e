"""Distinguished names in a selector's ``issuers``, and matching them against certificate names (D11).

``issuers`` are RFC 4514 DNs compared attribute by attribute (type OIDs exactly, values case-insensitively
with whitespace trimmed and collapsed), in RFC 4514 or reversed X.500 order. Relying parties copy DNs by
hand, so the reader is lenient where they go wrong; a DN it cannot read is a :class:`SelectorError`,
since a DN reaches us only inside a selector.
"""

from __future__ import annotations

import re
from functools import lru_cache

from asn1crypto import core as asn1
from cryptography.x509.oid import NameOID, ObjectIdentifier

from card import Name
from digisign_web.scs.errors import SelectorError

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
_HEX_RE = re.compile(r"(?:[0-9a-fA-F]{2})+")
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
def parse_dn(text: str) -> tuple[_Rdn, ...]:
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
    wanted = parse_dn(selector_dn)
    have = _name_rdns(name)
    return wanted == have[::-1] or wanted == have
