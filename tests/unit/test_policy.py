"""Request policy: selector parsing and matching on real certificates, origin lists, the authentication-key
origin rule (D22) and the cancel-spam guard."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from card import CardCertificate, Name
from digisign_web.scs.authentication import check_authentication_content
from digisign_web.scs.cancel_guard import CancelGuard
from digisign_web.scs.dn import dn_matches
from digisign_web.scs.errors import SelectorError
from digisign_web.scs.selector import (
    Selection,
    Selector,
    aki_of,
    key_algorithm_of,
    key_usages_of,
    parse_selector,
    select,
)
from digisign_web.wildcards import origin_allowed

CA_DN = "CN=DVV Citizen Certificates - G4R, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=FI"
OTHER_CA_DN = "CN=DVV Organisation Certificates - G3R, O=Digi- ja vaestotietovirasto CA, C=FI"
# 0xfb 0xff 0xbf encodes to "+/+/" in base64 and "-_-_" in URL-safe base64: both alphabets are exercised.
CA_KID = bytes([0xFB, 0xFF, 0xBF]) + bytes(range(1, 18))
OTHER_KID = bytes(range(100, 120))
LEAF_DN = "CN=SPECIMEN-TESTINEN TIINA 99901001P, SN=SPECIMEN-TESTINEN, GN=TIINA, serialNumber=99901001P, C=FI"


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    """Pairs in X.500 (encoding) order, country first."""
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


def _card_name(name: x509.Name) -> Name:
    """The policy reads names as the card layer does: a :class:`card.Name` parsed from the DER."""
    return Name.from_asn1(asn1_x509.Name.load(name.public_bytes()))


CA_X509_NAME = _name(
    (NameOID.COUNTRY_NAME, "FI"),
    (NameOID.ORGANIZATION_NAME, "Digi- ja vaestotietovirasto CA"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "Valtion kansalaisvarmenteet"),
    (NameOID.COMMON_NAME, "DVV Citizen Certificates - G4R"),
)
OTHER_CA_X509_NAME = _name(
    (NameOID.COUNTRY_NAME, "FI"),
    (NameOID.ORGANIZATION_NAME, "Digi- ja vaestotietovirasto CA"),
    (NameOID.COMMON_NAME, "DVV Organisation Certificates - G3R"),
)
LEAF_X509_NAME = _name(
    (NameOID.COUNTRY_NAME, "FI"),
    (NameOID.SERIAL_NUMBER, "99901001P"),
    (NameOID.GIVEN_NAME, "TIINA"),
    (NameOID.SURNAME, "SPECIMEN-TESTINEN"),
    (NameOID.COMMON_NAME, "SPECIMEN-TESTINEN TIINA 99901001P"),
)
CA_NAME, OTHER_CA_NAME, LEAF_NAME = map(_card_name, (CA_X509_NAME, OTHER_CA_X509_NAME, LEAF_X509_NAME))

CA_KEY = ec.generate_private_key(ec.SECP256R1())


def _usage(digital_signature: bool = False, non_repudiation: bool = False, key_agreement: bool = False,
           key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=non_repudiation, key_encipherment=False,
        data_encipherment=False, key_agreement=key_agreement, key_cert_sign=key_cert_sign, crl_sign=key_cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _issue(public_key, subject: x509.Name, issuer: x509.Name, usage: x509.KeyUsage | None,
           kid: bytes | None) -> CardCertificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    if kid is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(kid, None, None), critical=False)
    return CardCertificate.load(builder.sign(CA_KEY, hashes.SHA256()).public_bytes(Encoding.DER))


CA_CERT = _issue(CA_KEY.public_key(), CA_X509_NAME, CA_X509_NAME, _usage(key_cert_sign=True), None)
# The signature certificate: RSA-2048, nonRepudiation only (PIN2).
RSA_SIGN = _issue(rsa.generate_private_key(65537, 2048).public_key(), LEAF_X509_NAME, CA_X509_NAME,
                  _usage(non_repudiation=True), CA_KID)
# The authentication certificate: EC P-256, digitalSignature (+ keyAgreement, as on EC FINEID cards) (PIN1).
EC_AUTH = _issue(ec.generate_private_key(ec.SECP256R1()).public_key(), LEAF_X509_NAME, CA_X509_NAME,
                 _usage(digital_signature=True, key_agreement=True), CA_KID)
# An organisation-card signature certificate from another CA, EC as well.
EC_ORG_SIGN = _issue(ec.generate_private_key(ec.SECP256R1()).public_key(), LEAF_X509_NAME, OTHER_CA_X509_NAME,
                     _usage(non_repudiation=True), OTHER_KID)
# No KeyUsage and no AKI at all.
BARE = _issue(ec.generate_private_key(ec.SECP256R1()).public_key(), LEAF_X509_NAME, OTHER_CA_X509_NAME, None,
              None)


@dataclass(frozen=True)
class Cand:
    """A stand-in for the server's candidate objects: select() is generic over them."""

    label: str
    cert: CardCertificate


CARD = [Cand("auth", EC_AUTH), Cand("sign", RSA_SIGN)]
TWO_CARDS = [*CARD, Cand("org-sign", EC_ORG_SIGN)]


def labels(selection: Selection[Cand]) -> list[str]:
    return [c.label for c in selection.matches]


def run(selector: dict | None, candidates: list[Cand] = CARD, strict: bool = False, top: object = None
        ) -> Selection[Cand]:
    return select(candidates, lambda c: c.cert, parse_selector(selector, top), strict)


# --- certificate properties --------------------------------------------------------------------


def test_certificate_properties() -> None:
    assert aki_of(RSA_SIGN) == CA_KID and aki_of(EC_ORG_SIGN) == OTHER_KID
    assert aki_of(BARE) is None and aki_of(CA_CERT) is None
    assert key_algorithm_of(RSA_SIGN) == "rsa" and key_algorithm_of(EC_AUTH) == "ec"
    assert key_usages_of(RSA_SIGN) == {"nonrepudiation"}
    assert key_usages_of(EC_AUTH) == {"digitalsignature"}  # keyAgreement is not a selector usage
    assert key_usages_of(BARE) == set() and key_usages_of(CA_CERT) == set()


# --- distinguished names -----------------------------------------------------------------------


@pytest.mark.parametrize("dn", [
    CA_DN,  # the Atostek example, verbatim
    CA_DN.replace(", ", ","),  # no spaces after commas
    "  CN = DVV   Citizen Certificates - G4R ,OU=Valtion kansalaisvarmenteet ;  O=Digi- ja vaestotietovirasto CA,C=FI ",
    "cn=dvv citizen certificates - g4r, ou=VALTION KANSALAISVARMENTEET, o=Digi- ja Vaestotietovirasto CA, c=fi",
    "Cn=DVV Citizen Certificates - G4R, Ou=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=FI",
    "commonName=DVV Citizen Certificates - G4R, organizationalUnitName=Valtion kansalaisvarmenteet, "
    "organizationName=Digi- ja vaestotietovirasto CA, countryName=FI",
    "C=FI, O=Digi- ja vaestotietovirasto CA, OU=Valtion kansalaisvarmenteet, CN=DVV Citizen Certificates - G4R",
    "2.5.4.3=DVV Citizen Certificates - G4R, 2.5.4.11=Valtion kansalaisvarmenteet, "
    "2.5.4.10=Digi- ja vaestotietovirasto CA, 2.5.4.6=FI",
    "OID.2.5.4.3=DVV Citizen Certificates - G4R, OU=Valtion kansalaisvarmenteet, "
    "O=Digi- ja vaestotietovirasto CA, OID.2.5.4.6=FI",
    'CN="DVV Citizen Certificates - G4R", OU=Valtion kansalaisvarmenteet, O="Digi- ja vaestotietovirasto CA", C=FI',
    "CN=DVV Citizen Certificates - G4R, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=#13024649",
    r"CN=DVV Citizen Certificates \2D G4R, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=F\I",
])
def test_issuer_dn_variants_match(dn: str) -> None:
    assert dn_matches(dn, CA_NAME)


@pytest.mark.parametrize("dn", [
    "CN=DVV Citizen Certificates - G4, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=FI",
    "CN=DVV Citizen Certificates - G4R, O=Digi- ja vaestotietovirasto CA, C=FI",  # an RDN missing
    CA_DN + ", DC=fi",  # an RDN too many
    "OU=Valtion kansalaisvarmenteet, CN=DVV Citizen Certificates - G4R, O=Digi- ja vaestotietovirasto CA, C=FI",
    "CN=DVV Citizen Certificates - G4R, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, L=FI",
    "CN=DVV Citizen Certificates - G4R",
    "CN=DVVCitizen Certificates - G4R, OU=Valtion kansalaisvarmenteet, O=Digi- ja vaestotietovirasto CA, C=FI",
])
def test_issuer_dn_mismatches(dn: str) -> None:
    assert not dn_matches(dn, CA_NAME)


@pytest.mark.parametrize("dn", [
    LEAF_DN,
    "CN=SPECIMEN-TESTINEN TIINA 99901001P, surname=SPECIMEN-TESTINEN, givenName=TIINA, SERIALNUMBER=99901001p, C=FI",
    "C=FI, 2.5.4.5=99901001P, G=Tiina, SN=Specimen-Testinen, CN=SPECIMEN-TESTINEN TIINA 99901001P",
])
def test_serial_number_surname_and_given_name(dn: str) -> None:
    assert dn_matches(dn, LEAF_NAME)


def test_sn_is_the_surname_not_the_serial_number() -> None:
    assert not dn_matches(
        "CN=SPECIMEN-TESTINEN TIINA 99901001P, SN=99901001P, GN=TIINA, serialNumber=SPECIMEN-TESTINEN, C=FI",
        LEAF_NAME)


def test_multivalued_rdn_compares_as_a_set() -> None:
    name = _card_name(x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FI")]),
        x509.RelativeDistinguishedName([
            x509.NameAttribute(NameOID.COMMON_NAME, "Tiina"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "99901001P"),
        ]),
    ]))
    assert dn_matches("CN=Tiina+serialNumber=99901001P, C=FI", name)
    assert dn_matches("serialNumber=99901001P + cn=TIINA, C=FI", name)
    assert dn_matches("C=FI, serialNumber=99901001P+CN=Tiina", name)
    assert not dn_matches("CN=Tiina, serialNumber=99901001P, C=FI", name)  # three RDNs, not two
    assert not dn_matches("CN=Tiina+serialNumber=99901001X, C=FI", name)


def test_escaped_values() -> None:
    name = _card_name(_name((NameOID.COUNTRY_NAME, "FI"), (NameOID.ORGANIZATION_NAME, "Väestö, Oy"),
                            (NameOID.COMMON_NAME, "a+b=c")))
    assert dn_matches(r"CN=a\+b=c, O=Väestö\, Oy, C=FI", name)
    assert dn_matches(r"CN=a\2Bb=c, O=V\C3\A4est\C3\B6\2C Oy, C=FI", name)  # hex escapes are UTF-8
    assert dn_matches('CN="a+b=c", O="VÄESTÖ, OY", C=FI', name)
    assert dn_matches("CN=#0c05612b623d63, O=Väestö\\, Oy, C=FI", name)  # DER UTF8String "a+b=c"


@pytest.mark.parametrize("dn", [
    "", "   ", "CN", "=foo", "XX=foo", "CN=a,,O=b", "CN=a,", "CN=a\\", "C N=FI", "1.2.=x", "CN=#zz",
    "CN=#0201ff",  # DER INTEGER: not a string
    r"CN=\C3", 'CN="open', 'CN="a" b',
])
def test_unparseable_dn_raises(dn: str) -> None:
    with pytest.raises(SelectorError):
        dn_matches(dn, CA_NAME)
    with pytest.raises(SelectorError, match=r"selector\.issuers\[1\]"):
        parse_selector({"issuers": [CA_DN, dn]})


# --- parse_selector ----------------------------------------------------------------------------


def test_parse_empty_and_absent() -> None:
    assert parse_selector(None) == Selector()
    assert parse_selector({}) == Selector()
    assert parse_selector({"issuers": None, "akis": [], "thumbprint": "ab", "validate": True}) == Selector()


def test_parse_normalises() -> None:
    selector = parse_selector({
        "issuers": CA_DN,  # a lone string is a 1-list
        "keyusages": ["DigitalSignature", "NONREPUDIATION", "digitalsignature"],
        "keyalgorithms": ["RSA", "ecdsa", "ECC", "Ec"],
        "akis": ["ab:CD:ef"],
    })
    assert selector == Selector(issuers=(CA_DN,), keyusages=("digitalsignature", "nonrepudiation"),
                                keyalgorithms=("rsa", "ec"), akis=(bytes.fromhex("abcdef"),))


@pytest.mark.parametrize("selector, field", [
    ([], "selector"),
    ("keyusages", "selector"),
    ({"keyusages": ["signing"]}, "selector.keyusages[0] 'signing'"),
    ({"keyusages": ["nonrepudiation", "authentication"]}, "selector.keyusages[1] 'authentication'"),
    ({"keyusages": [1]}, "selector.keyusages[0]"),
    ({"keyusages": {"a": 1}}, "selector.keyusages"),
    ({"keyalgorithms": ["dsa"]}, "selector.keyalgorithms[0] 'dsa'"),
    ({"keyalgorithms": "ed25519"}, "selector.keyalgorithms[0] 'ed25519'"),
    ({"issuers": [None]}, "selector.issuers[0]"),
    ({"issuers": 5}, "selector.issuers"),
    ({"akis": ["not base64!"]}, "selector.akis[0]"),
    ({"akis": [""]}, "selector.akis[0]"),
    ({"akis": ["a"]}, "selector.akis[0]"),  # one base64 character is no octet
    ({"akis": ["ab:cd:e"]}, "selector.akis[0]"),
    ({"strictKeyPolicy": "yes"}, "selector.strictKeyPolicy"),
    ({"strictKeyPolicy": 2}, "selector.strictKeyPolicy"),
])
def test_parse_errors_name_the_field(selector: object, field: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_selector(selector)
    assert str(info.value).startswith(field)


@pytest.mark.parametrize("aki", [
    CA_KID.hex(),
    CA_KID.hex().upper(),
    ":".join(f"{b:02X}" for b in CA_KID),
    " ".join(f"{b:02x}" for b in CA_KID),
    base64.b64encode(CA_KID).decode(),
    base64.b64encode(CA_KID).decode().rstrip("="),
    base64.urlsafe_b64encode(CA_KID).decode(),
    base64.urlsafe_b64encode(CA_KID).decode().rstrip("="),
])
def test_aki_encodings(aki: str) -> None:
    assert parse_selector({"akis": [aki]}).akis == (CA_KID,)
    assert labels(run({"akis": [aki]}, TWO_CARDS)) == ["auth", "sign"]


def test_aki_hex_wins_over_base64() -> None:
    # 40 hex digits are also 40 valid base64 characters (30 octets); the key identifier is the hex reading.
    assert parse_selector({"akis": "00112233445566778899aabbccddeeff00112233"}).akis == (
        bytes.fromhex("00112233445566778899aabbccddeeff00112233"),)


@pytest.mark.parametrize("top, inner, expected", [
    (None, None, None),
    (True, None, True),
    (None, False, False),
    (False, True, False),  # the top level wins
    (True, False, True),
    ("true", None, True),
    (" FALSE ", None, False),
    (1, None, True),
    (None, 0, False),
    (None, "True", True),
])
def test_strict_key_policy_sources(top: object, inner: object, expected: bool | None) -> None:
    selector = {} if inner is None else {"strictKeyPolicy": inner}
    assert parse_selector(selector, top).strict_key_policy is expected
    if selector == {}:
        assert parse_selector(None, top).strict_key_policy is expected


@pytest.mark.parametrize("top", ["maybe", 2, -1, 1.0, [], {}])
def test_strict_key_policy_top_level_must_be_boolean(top: object) -> None:
    with pytest.raises(SelectorError, match=r"^strictKeyPolicy"):
        parse_selector({"strictKeyPolicy": True}, top)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_member_names = st.sampled_from(["issuers", "keyusages", "keyalgorithms", "akis", "strictKeyPolicy", "other"])
_dn_like = st.lists(
    st.tuples(st.sampled_from(["CN", "cn", "O", "C", "2.5.4.3", "SN", "X", "", " "]),
              st.sampled_from(["=", "=", " = ", ""]),
              st.text(alphabet='abc ,+;\\"#=0f\u00e4\ud800', max_size=6) | st.text(alphabet="ab FI-", max_size=6)),
    min_size=1, max_size=4,
).map(lambda parts: ", ".join(t + eq + v for t, eq, v in parts))
_member_values = (_json | _dn_like | st.lists(_dn_like, max_size=3)
                  | st.lists(st.text(alphabet="0123456789abcdefABCDEF:+/-_= \u00e4", max_size=12), max_size=3)
                  | st.sampled_from(["true", "false", 0, 1, "RSA", "ecc", ["NonRepudiation"]]))


@settings(max_examples=400, deadline=None)
@given(value=_json | st.dictionaries(_member_names, _member_values, max_size=5),
       top=st.none() | st.booleans() | _json)
def test_parse_selector_total(value: object, top: object) -> None:
    """Whatever JSON arrives, the answer is a Selector or a SelectorError (a 400), never a crash (a 500)."""
    try:
        selector = parse_selector(value, top)
    except SelectorError as exc:
        assert str(exc)
        return
    assert isinstance(selector, Selector)
    for dn in selector.issuers:  # validated DNs can be matched without raising
        dn_matches(dn, CA_NAME)
    select(TWO_CARDS, lambda c: c.cert, selector, False)


# --- select ------------------------------------------------------------------------------------


def test_no_selector_keeps_everything_in_order() -> None:
    selection = run(None, TWO_CARDS)
    assert labels(selection) == ["auth", "sign", "org-sign"] and selection.reason == ""
    assert not selection.relaxed_algorithm


def test_keyusages_select_the_pin() -> None:
    assert labels(run({"keyusages": ["digitalsignature"]})) == ["auth"]
    assert labels(run({"keyusages": ["NonRepudiation"]})) == ["sign"]
    # the developer-page example lists both: OR within the array
    assert labels(run({"keyusages": ["digitalsignature", "nonrepudiation"]})) == ["auth", "sign"]
    assert labels(run({"keyusages": ["nonrepudiation"]}, [Cand("bare", BARE)])) == []


def test_issuers_or_within_and_across() -> None:
    assert labels(run({"issuers": [CA_DN]}, TWO_CARDS)) == ["auth", "sign"]
    assert labels(run({"issuers": [OTHER_CA_DN]}, TWO_CARDS)) == ["org-sign"]
    assert labels(run({"issuers": [OTHER_CA_DN, CA_DN.lower()]}, TWO_CARDS)) == ["auth", "sign", "org-sign"]
    # AND across members
    assert labels(run({"issuers": [CA_DN], "keyusages": ["nonrepudiation"]}, TWO_CARDS)) == ["sign"]
    assert labels(run({"issuers": [OTHER_CA_DN, CA_DN], "keyusages": "nonrepudiation"}, TWO_CARDS)) == [
        "sign", "org-sign"]
    assert labels(run({"akis": [OTHER_KID.hex()], "keyusages": ["nonrepudiation"]}, TWO_CARDS)) == ["org-sign"]


@pytest.mark.parametrize("selector, field", [
    ({"issuers": ["CN=Somebody Else, C=SE"]}, "selector.issuers"),
    ({"akis": ["00ff"]}, "selector.akis"),
    ({"keyusages": ["nonrepudiation"], "issuers": [CA_DN], "akis": [OTHER_KID.hex()]}, "selector.akis"),
    ({"issuers": [OTHER_CA_DN], "keyusages": ["digitalsignature"]}, "selector.keyusages"),
])
def test_reason_names_the_excluding_field(selector: dict, field: str) -> None:
    selection = run(selector, TWO_CARDS)
    assert selection.matches == [] and not selection.relaxed_algorithm
    assert selection.reason.startswith(field + " [")


def test_nothing_to_choose_from() -> None:
    selection = run({"keyusages": ["nonrepudiation"]}, [])
    assert selection.matches == [] and selection.reason


def test_keyalgorithms_is_a_preference() -> None:
    assert labels(run({"keyalgorithms": ["rsa"]})) == ["sign"]
    assert labels(run({"keyalgorithms": ["EC"]})) == ["auth"]
    assert labels(run({"keyalgorithms": ["RSA", "ecdsa"]})) == ["auth", "sign"]
    # ETP's selector on a card with an RSA signature key
    selection = run({"keyusages": ["nonrepudiation"], "keyalgorithms": ["rsa"]}, TWO_CARDS)
    assert labels(selection) == ["sign"] and not selection.relaxed_algorithm


def test_keyalgorithms_relaxed_when_not_strict() -> None:
    selection = run({"keyusages": ["digitalsignature"], "keyalgorithms": ["rsa"]})
    assert labels(selection) == ["auth"] and selection.relaxed_algorithm and selection.reason == ""


def test_keyalgorithms_strict_setting() -> None:
    selection = run({"keyusages": ["digitalsignature"], "keyalgorithms": ["rsa"]}, strict=True)
    assert selection.matches == [] and not selection.relaxed_algorithm
    assert selection.reason.startswith("selector.keyalgorithms: no rsa key")
    assert "strictSCSKeyPolicy setting is on" in selection.reason


@pytest.mark.parametrize("where", ["selector", "top"])
def test_request_overrides_setting_both_ways(where: str) -> None:
    base = {"keyusages": ["digitalsignature"], "keyalgorithms": ["rsa"]}

    def with_strict(value: bool, setting: bool) -> Selection[Cand]:
        if where == "selector":
            return run({**base, "strictKeyPolicy": value}, strict=setting)
        return run(base, strict=setting, top=value)

    off = with_strict(False, setting=True)  # the request relaxes a strict setting
    assert labels(off) == ["auth"] and off.relaxed_algorithm
    on = with_strict(True, setting=False)  # the request tightens a lax setting
    assert on.matches == [] and "keyalgorithms" in on.reason and "strictKeyPolicy is on" in on.reason
    # strictness changes nothing when the preferred algorithm is there
    assert labels(run({"keyalgorithms": ["ec"], "strictKeyPolicy": True}, strict=True)) == ["auth"]


def test_strict_does_not_hide_an_earlier_exclusion() -> None:
    selection = run({"issuers": ["CN=Nobody"], "keyalgorithms": ["rsa"]}, strict=True)
    assert selection.reason.startswith("selector.issuers")


# --- origin lists ------------------------------------------------------------------------------


@pytest.mark.parametrize("origin, patterns, allowed", [
    ("https://eservice.fi", "https://*", True),
    ("http://eservice.fi", "https://*", False),
    ("HTTPS://EService.FI", "https://eservice.fi", True),
    ("https://eservice.fi", "https://*.eservice.fi", False),
    ("https://www.eservice.fi", "https://*.eservice.fi", True),
    ("https://eservice.fi.evil.example", "https://eservice.fi", False),
    ("https://eservice.fi.evil.example", "https://*.fi", False),
    ("http://localhost:8080", "http://localhost:*", True),
    ("http://localhost", "http://localhost:*", False),
    ("http://localhost.evil.example:80", "http://localhost:*", False),
    ("https://a.fi:8443", "https://a.fi", False),
    ("https://a.fi:8443", "https://a.fi:*", True),
    ("https://b.fi", "https://a.fi   https://b.fi", True),
    ("https://a.fi", "*", True),
    ("null", "*", False),
    ("null", "* https://*", False),
    ("null", "n*ll", False),
    ("null", "null", True),
    ("null", "https://a.fi null", True),
    ("https://a.fi", "null", False),
    (None, "*", False),
    ("", "*", False),
    ("https://a.fi", "", False),
])
def test_origin_allowed(origin: str | None, patterns: str, allowed: bool) -> None:
    assert origin_allowed(origin, patterns) is allowed


# --- the authentication rule (D22) -------------------------------------------------------------

ORIGIN = "https://a.fi"
NONCE = "0123456789abcdef" * 4  # 64 characters


@pytest.mark.parametrize("content", [
    f"{ORIGIN};{NONCE}".encode(),
    f"{ORIGIN}\n{NONCE}".encode(),
    f"{ORIGIN};{NONCE}{NONCE};serverKey".encode(),
    # puumerkki: origin LF hmac LF unix-ms LF payload
    f"{ORIGIN}\n{'ab' * 32}\n1732761600000\nhello".encode(),
    (ORIGIN + ";" + "ä" * 32).encode(),  # 32 characters but 64 octets: octets count
])
def test_authentication_content_accepted(content: bytes) -> None:
    assert check_authentication_content(ORIGIN, "data", content) is None


@pytest.mark.parametrize("origin, content_type, content, why", [
    (ORIGIN, "data", f"{ORIGIN};{NONCE[:63]}".encode(), "64"),
    (ORIGIN, "data", f"{ORIGIN}\n{NONCE[:63]}".encode(), "64"),
    (ORIGIN, "data", ORIGIN.encode(), "followed by"),
    (ORIGIN, "data", f"{ORIGIN}{NONCE}".encode(), "followed by"),  # no separator: ambiguous with hex nonces
    (ORIGIN, "data", f"{ORIGIN}.evil.example;{NONCE}".encode(), "followed by"),  # prefix attack
    (ORIGIN, "data", f"{ORIGIN}:8443;{NONCE}".encode(), "followed by"),
    (ORIGIN, "data", f"{ORIGIN}/;{NONCE}".encode(), "followed by"),
    (ORIGIN + ".evil", "data", f"{ORIGIN};{NONCE}".encode(), "start with"),  # wrong origin
    ("https://b.fi", "data", f"{ORIGIN};{NONCE}".encode(), "start with"),
    (ORIGIN, "data", f"HTTPS://A.FI;{NONCE}".encode(), "start with"),  # exact bytes
    (ORIGIN, "data", f" {ORIGIN};{NONCE}".encode(), "start with"),
    (ORIGIN, "data", NONCE.encode(), "start with"),
    (ORIGIN, "digest", f"{ORIGIN};{NONCE}".encode(), "digest"),
    (None, "data", f"{ORIGIN};{NONCE}".encode(), "Origin"),
    ("", "data", f"{ORIGIN};{NONCE}".encode(), "Origin"),
    ("null", "data", f"null;{NONCE}".encode(), "null"),
])
def test_authentication_content_refused(origin: str | None, content_type: str, content: bytes, why: str) -> None:
    reason = check_authentication_content(origin, content_type, content)
    assert reason is not None and why in reason


# --- cancel guard ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cancel_guard_blocks_after_limit_within_window() -> None:
    clock = FakeClock()
    guard = CancelGuard(limit=3, window=60, block=300, clock=clock)
    guard.record_cancel(ORIGIN)
    clock.now += 10
    guard.record_cancel(ORIGIN)
    assert guard.blocked_for(ORIGIN) == 0.0
    clock.now += 10
    guard.record_cancel(ORIGIN)
    assert guard.blocked_for(ORIGIN) == pytest.approx(300)
    assert guard.blocked_for("https://b.fi") == 0.0  # per origin
    clock.now += 100
    guard.record_cancel(ORIGIN)  # cancels while blocked do not extend the block
    assert guard.blocked_for(ORIGIN) == pytest.approx(200)
    clock.now += 200
    assert guard.blocked_for(ORIGIN) == 0.0
    guard.record_cancel(ORIGIN)  # the block expired and started a fresh count
    assert guard.blocked_for(ORIGIN) == 0.0


def test_cancel_guard_window_expiry() -> None:
    clock = FakeClock()
    guard = CancelGuard(limit=3, window=60, block=300, clock=clock)
    guard.record_cancel(ORIGIN)
    clock.now += 30
    guard.record_cancel(ORIGIN)
    clock.now += 31  # the first cancel is now outside the window
    guard.record_cancel(ORIGIN)
    assert guard.blocked_for(ORIGIN) == 0.0
    clock.now += 1
    guard.record_cancel(ORIGIN)  # three within 60 s: 30 s, 61 s and 62 s
    assert guard.blocked_for(ORIGIN) == pytest.approx(300)


def test_cancel_guard_success_resets_history() -> None:
    clock = FakeClock()
    guard = CancelGuard(limit=3, window=60, block=300, clock=clock)
    guard.record_cancel(ORIGIN)
    guard.record_cancel(ORIGIN)
    guard.record_success(ORIGIN)
    guard.record_cancel(ORIGIN)
    guard.record_cancel(ORIGIN)
    assert guard.blocked_for(ORIGIN) == 0.0
    guard.record_cancel(ORIGIN)
    assert guard.blocked_for(ORIGIN) > 0
    guard.record_success("https://other.fi")
    assert guard.blocked_for(ORIGIN) > 0


def test_cancel_guard_defaults_and_many_origins() -> None:
    clock = FakeClock()
    guard = CancelGuard(clock=clock)
    for i in range(3000):  # distinct origins are swept, not kept forever
        guard.record_cancel(f"https://{i}.example")
        clock.now += 1
    assert guard.blocked_for("https://2999.example") == 0.0
    assert len(guard._cancels) < 2000
    for _ in range(3):
        guard.record_cancel("null")
    assert guard.blocked_for("null") == pytest.approx(300)


def test_cancel_guard_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        CancelGuard(limit=0)
    with pytest.raises(ValueError):
        CancelGuard(window=0)
