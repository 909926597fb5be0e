"""PKCS#15 / ISO 7816-15 structures as asn1crypto schemas.

The same schemas decode a real card's files (:mod:`card.pkcs15.parse`) and encode the virtual card's
(:mod:`card.pkcs15.encode`), so the emulator cannot drift from the parser. Field layouts follow PKCS#15
v1.1 and what OpenSC writes (for example ``fieldSize`` in EC private-key attributes), so that third-party
readers such as OpenSC's ``pkcs15-tool`` parse our card. Only the fields this project needs are named;
unknown trailing fields are tolerated.
"""

# ruff: noqa: RUF012  (asn1crypto schemas are declared as mutable class attributes by design)

from __future__ import annotations

from asn1crypto import core, x509


class Path(core.Sequence):
    _fields = [
        ("path", core.OctetString),
        ("index", core.Integer, {"optional": True}),
        ("length", core.Integer, {"implicit": 0, "optional": True}),
    ]


class ApplicationTemplate(core.Sequence):
    """EF.DIR record: ``61 { 4F aid, 50 label, 51 path, 73 ddo }`` (ISO 7816-4 application template)."""

    class_ = 1
    tag = 1
    _fields = [
        ("aid", core.OctetString, {"implicit": ("application", 15)}),
        ("label", core.UTF8String, {"implicit": ("application", 16), "optional": True}),
        ("path", core.OctetString, {"implicit": ("application", 17), "optional": True}),
    ]


class ObjectDirectoryEntry(core.Choice):
    """EF.OD entry: a context tag naming the directory file's kind, around its path."""

    _alternatives = [
        ("private_keys", Path, {"explicit": 0}),
        ("public_keys", Path, {"explicit": 1}),
        ("trusted_public_keys", Path, {"explicit": 2}),
        ("secret_keys", Path, {"explicit": 3}),
        ("certificates", Path, {"explicit": 4}),
        ("trusted_certificates", Path, {"explicit": 5}),
        ("useful_certificates", Path, {"explicit": 6}),
        ("data_objects", Path, {"explicit": 7}),
        ("auth_objects", Path, {"explicit": 8}),
    ]


class TokenFlags(core.BitString):
    _map = {0: "readonly", 1: "login_required", 2: "prn_generation", 3: "eid_compliant"}


class TokenInfo(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("serial_number", core.OctetString, {"optional": True}),
        ("manufacturer_id", core.UTF8String, {"optional": True}),
        ("label", core.UTF8String, {"implicit": 0, "optional": True}),
        ("token_flags", TokenFlags),
    ]


class CommonObjectFlags(core.BitString):
    _map = {0: "private", 1: "modifiable"}


class AnySequenceOf(core.SequenceOf):
    _child_spec = core.Any


class CommonObjectAttributes(core.Sequence):
    _fields = [
        ("label", core.UTF8String, {"optional": True}),
        ("flags", CommonObjectFlags, {"optional": True}),
        ("auth_id", core.OctetString, {"optional": True}),
        ("user_consent", core.Integer, {"optional": True}),
        ("access_control_rules", AnySequenceOf, {"optional": True}),
    ]


class CommonAuthenticationObjectAttributes(core.Sequence):
    _fields = [("auth_id", core.OctetString, {"optional": True})]


class PinFlags(core.BitString):
    _map = {
        0: "case_sensitive",
        1: "local",
        2: "change_disabled",
        3: "unblock_disabled",
        4: "initialized",
        5: "needs_padding",
        6: "unblocking_pin",
        7: "so_pin",
        8: "disable_allowed",
        9: "integrity_protected",
        10: "confidentiality_protected",
        11: "exchange_ref_data",
    }


class PinType(core.Enumerated):
    _map = {0: "bcd", 1: "ascii-numeric", 2: "utf8", 3: "half-nibble-bcd", 4: "iso9564-1"}


class PinAttributes(core.Sequence):
    _fields = [
        ("pin_flags", PinFlags),
        ("pin_type", PinType),
        ("min_length", core.Integer),
        ("stored_length", core.Integer),
        ("max_length", core.Integer, {"optional": True}),
        ("pin_reference", core.Integer, {"implicit": 0, "default": 0}),
        ("pad_char", core.OctetString, {"optional": True}),
        ("last_pin_change", core.GeneralizedTime, {"optional": True}),
        ("path", Path, {"optional": True}),
    ]


class PinObject(core.Sequence):
    _fields = [
        ("common_object_attributes", CommonObjectAttributes),
        ("class_attributes", CommonAuthenticationObjectAttributes),
        ("type_attributes", PinAttributes, {"explicit": 1}),
    ]


class KeyUsageFlags(core.BitString):
    _map = {
        0: "encrypt",
        1: "decrypt",
        2: "sign",
        3: "sign_recover",
        4: "wrap",
        5: "unwrap",
        6: "verify",
        7: "verify_recover",
        8: "derive",
        9: "non_repudiation",
    }


class KeyAccessFlags(core.BitString):
    _map = {0: "sensitive", 1: "extractable", 2: "always_sensitive", 3: "never_extractable", 4: "local"}


class CommonKeyAttributes(core.Sequence):
    _fields = [
        ("id", core.OctetString),
        ("usage", KeyUsageFlags),
        ("native", core.Boolean, {"default": True}),
        ("access_flags", KeyAccessFlags, {"optional": True}),
        ("key_reference", core.Integer, {"optional": True}),
    ]


class CommonPrivateKeyAttributes(core.Sequence):
    _fields = [("subject_name", x509.Name, {"optional": True})]


class PrivateRsaKeyAttributes(core.Sequence):
    _fields = [
        ("value", Path),
        ("modulus_length", core.Integer),
    ]


class PrivateEcKeyAttributes(core.Sequence):
    _fields = [
        ("value", Path),
        ("field_size", core.Integer, {"optional": True}),
    ]


class PrivateRsaKeyObject(core.Sequence):
    _fields = [
        ("common_object_attributes", CommonObjectAttributes),
        ("class_attributes", CommonKeyAttributes),
        ("sub_class_attributes", CommonPrivateKeyAttributes, {"explicit": 0, "optional": True}),
        ("type_attributes", PrivateRsaKeyAttributes, {"explicit": 1}),
    ]


class PrivateEcKeyObject(core.Sequence):
    _fields = [
        ("common_object_attributes", CommonObjectAttributes),
        ("class_attributes", CommonKeyAttributes),
        ("sub_class_attributes", CommonPrivateKeyAttributes, {"explicit": 0, "optional": True}),
        ("type_attributes", PrivateEcKeyAttributes, {"explicit": 1}),
    ]


class PrivateKeyObject(core.Choice):
    _alternatives = [
        ("rsa", PrivateRsaKeyObject),
        ("ec", PrivateEcKeyObject, {"implicit": 0}),
    ]


class CommonCertificateAttributes(core.Sequence):
    _fields = [
        ("id", core.OctetString),
        ("authority", core.Boolean, {"default": False}),
    ]


class X509CertificateAttributes(core.Sequence):
    _fields = [
        ("value", Path),
        ("subject", x509.Name, {"optional": True}),
        ("issuer", x509.Name, {"explicit": 0, "optional": True}),
        ("serial_number", core.Integer, {"optional": True}),
    ]


class CertificateObject(core.Sequence):
    _fields = [
        ("common_object_attributes", CommonObjectAttributes),
        ("class_attributes", CommonCertificateAttributes),
        ("type_attributes", X509CertificateAttributes, {"explicit": 1}),
    ]
