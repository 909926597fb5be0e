"""PKCS#15 / ISO 7816-15 structures as asn1crypto schemas, parsed into small dataclasses.

The same schemas encode the virtual card's files and decode a real card's, so the emulator cannot drift
from the parser. Field layouts follow PKCS#15 v1.1 and what OpenSC writes (for example ``fieldSize`` in
EC private-key attributes), so that third-party readers such as OpenSC's ``pkcs15-tool`` parse our card.
Only the fields this project needs are named; unknown trailing fields are tolerated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from asn1crypto import core, x509

from card.apdu import find_tlv, parse_tlv, split_der_objects
from card.errors import MalformedResponseError

log = logging.getLogger(__name__)

PKCS15_AID = bytes.fromhex("A000000063504B43532D3135")


# --- schemas ---------------------------------------------------------------------------------


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


# --- parsed forms ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Application:
    aid: bytes
    label: str = ""
    path: bytes = b""


@dataclass(frozen=True)
class TokenInfoData:
    version: int
    serial: str
    label: str = ""
    manufacturer: str = ""
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PinInfo:
    label: str
    auth_id: bytes
    reference: int
    min_length: int
    stored_length: int
    max_length: int
    pin_type: str = "ascii-numeric"
    pad_char: int = 0x00
    flags: frozenset[str] = frozenset()

    @property
    def is_puk(self) -> bool:
        return "unblocking_pin" in self.flags

    @property
    def needs_padding(self) -> bool:
        return "needs_padding" in self.flags


@dataclass(frozen=True)
class KeyInfo:
    label: str
    id: bytes
    usage: frozenset[str]
    key_reference: int | None
    auth_id: bytes | None
    algorithm: str  # "RSA" or "EC"
    size: int  # modulus bits, or EC field size in bits (0 if the card does not say)
    user_consent: int = 0


@dataclass(frozen=True)
class CertificateRef:
    label: str
    id: bytes
    authority: bool
    path: bytes
    offset: int | None = None
    length: int | None = None


@dataclass
class ObjectDirectory:
    """EF.OD: which directory files exist, by kind (``auth_objects``, ``private_keys``, ...)."""

    paths: dict[str, list[bytes]] = field(default_factory=dict)

    def get(self, kind: str) -> list[bytes]:
        return self.paths.get(kind, [])


# --- decoding --------------------------------------------------------------------------------


def _wrap(what: str, exc: Exception) -> MalformedResponseError:
    return MalformedResponseError(f"cannot parse {what}: {exc}")


def _objects(data: bytes, what: str) -> list[bytes]:
    try:
        return split_der_objects(data)
    except MalformedResponseError as exc:
        raise _wrap(what, exc) from exc


def _label(common: CommonObjectAttributes) -> str:
    label = common["label"].native
    return label or ""


def parse_dir(data: bytes) -> list[Application]:
    """EF.DIR (2F00): the application templates, in file order."""
    apps = []
    for raw in _objects(data, "EF.DIR"):
        if raw[0] != 0x61:
            continue
        try:
            template = ApplicationTemplate.load(raw)
            apps.append(
                Application(
                    aid=template["aid"].native,
                    label=template["label"].native or "",
                    path=template["path"].native or b"",
                )
            )
        except (ValueError, TypeError) as exc:
            raise _wrap("EF.DIR", exc) from exc
    return apps


def parse_od(data: bytes) -> ObjectDirectory:
    od = ObjectDirectory()
    for raw in _objects(data, "EF.OD"):
        try:
            entry = ObjectDirectoryEntry.load(raw)
            od.paths.setdefault(entry.name, []).append(entry.chosen["path"].native)
        except (ValueError, TypeError, KeyError) as exc:
            # Unknown or indirect-protected forms are skipped, not fatal: we may not need them.
            log.debug("skipping EF.OD entry %s: %s", raw[:4].hex(), exc)
    return od


def _serial_text(raw: bytes) -> str:
    if raw and all(0x20 <= b < 0x7F for b in raw):
        return raw.decode("ascii")
    return raw.hex().upper()


def parse_token_info(data: bytes) -> TokenInfoData:
    objects = _objects(data, "EF.TokenInfo")
    if not objects:
        raise MalformedResponseError("EF.TokenInfo is empty")
    try:
        info = TokenInfo.load(objects[0])
        return TokenInfoData(
            version=int(info["version"].native),
            serial=_serial_text(info["serial_number"].native or b""),
            label=info["label"].native or "",
            manufacturer=info["manufacturer_id"].native or "",
            flags=frozenset(info["token_flags"].native or ()),
        )
    except (ValueError, TypeError) as exc:
        # Be as lenient as OpenSC: the serial is the first OCTET STRING of the sequence.
        try:
            octets = find_tlv(parse_tlv(parse_tlv(objects[0])[0].value), 0x04)
        except MalformedResponseError:
            octets = None
        if octets is None:
            raise _wrap("EF.TokenInfo", exc) from exc
        return TokenInfoData(version=0, serial=_serial_text(octets.value))


def parse_aodf(data: bytes) -> list[PinInfo]:
    pins = []
    for raw in _objects(data, "AODF"):
        if raw[0] != 0x30:
            log.debug("skipping non-PIN authentication object (tag %02X)", raw[0])
            continue
        try:
            obj = PinObject.load(raw)
            attrs = obj["type_attributes"]
            pad = attrs["pad_char"].native
            stored = int(attrs["stored_length"].native)
            max_length = attrs["max_length"].native
            pins.append(
                PinInfo(
                    label=_label(obj["common_object_attributes"]),
                    auth_id=obj["class_attributes"]["auth_id"].native or b"",
                    reference=int(attrs["pin_reference"].native),
                    min_length=int(attrs["min_length"].native),
                    stored_length=stored,
                    max_length=int(max_length) if max_length is not None else stored,
                    pin_type=attrs["pin_type"].native,
                    pad_char=pad[0] if pad else 0x00,
                    flags=frozenset(attrs["pin_flags"].native or ()),
                )
            )
        except (ValueError, TypeError) as exc:
            raise _wrap("AODF", exc) from exc
    return pins


def parse_prkdf(data: bytes) -> list[KeyInfo]:
    keys = []
    for raw in _objects(data, "PrKDF"):
        if raw[0] not in (0x30, 0xA0):
            log.debug("skipping unsupported private key type (tag %02X)", raw[0])
            continue
        try:
            choice = PrivateKeyObject.load(raw)
            obj = choice.chosen
            common = obj["common_object_attributes"]
            cka = obj["class_attributes"]
            attrs = obj["type_attributes"]
            if choice.name == "rsa":
                size = int(attrs["modulus_length"].native)
            else:
                size = int(attrs["field_size"].native or 0)
            ref = cka["key_reference"].native
            keys.append(
                KeyInfo(
                    label=_label(common),
                    id=cka["id"].native,
                    usage=frozenset(cka["usage"].native or ()),
                    key_reference=int(ref) if ref is not None else None,
                    auth_id=common["auth_id"].native,
                    algorithm="RSA" if choice.name == "rsa" else "EC",
                    size=size,
                    user_consent=int(common["user_consent"].native or 0),
                )
            )
        except (ValueError, TypeError) as exc:
            raise _wrap("PrKDF", exc) from exc
    return keys


def parse_cdf(data: bytes) -> list[CertificateRef]:
    certs = []
    for raw in _objects(data, "CDF"):
        if raw[0] != 0x30:
            log.debug("skipping non-X.509 certificate object (tag %02X)", raw[0])
            continue
        try:
            obj = CertificateObject.load(raw)
            value = obj["type_attributes"]["value"]
            certs.append(
                CertificateRef(
                    label=_label(obj["common_object_attributes"]),
                    id=obj["class_attributes"]["id"].native,
                    authority=bool(obj["class_attributes"]["authority"].native),
                    path=value["path"].native,
                    offset=value["index"].native,
                    length=value["length"].native,
                )
            )
        except (ValueError, TypeError) as exc:
            raise _wrap("CDF", exc) from exc
    return certs


# --- encoding (used by the virtual card) -----------------------------------------------------


def _common(label: str, auth_id: bytes | None = None, private: bool = False,
            user_consent: int | None = None) -> CommonObjectAttributes:
    value: dict[str, object] = {"label": label}
    if private:
        value["flags"] = {"private"}
    if auth_id is not None:
        value["auth_id"] = auth_id
    if user_consent:
        value["user_consent"] = user_consent
    return CommonObjectAttributes(value)


def encode_dir(apps: list[Application]) -> bytes:
    out = b""
    for app in apps:
        value: dict[str, object] = {"aid": app.aid}
        if app.label:
            value["label"] = app.label
        if app.path:
            value["path"] = app.path
        out += ApplicationTemplate(value).dump()
    return out


def encode_od(od: ObjectDirectory) -> bytes:
    out = b""
    for kind, paths in od.paths.items():
        for path in paths:
            out += ObjectDirectoryEntry(name=kind, value=Path({"path": path})).dump()
    return out


def encode_token_info(info: TokenInfoData, serial_raw: bytes | None = None) -> bytes:
    value: dict[str, object] = {
        "version": info.version,
        "serial_number": serial_raw if serial_raw is not None else info.serial.encode("ascii"),
        "token_flags": set(info.flags),
    }
    if info.manufacturer:
        value["manufacturer_id"] = info.manufacturer
    if info.label:
        value["label"] = info.label
    return TokenInfo(value).dump()


def encode_aodf(pins: list[PinInfo]) -> bytes:
    out = b""
    for pin in pins:
        attrs = PinAttributes(
            {
                "pin_flags": set(pin.flags),
                "pin_type": pin.pin_type,
                "min_length": pin.min_length,
                "stored_length": pin.stored_length,
                "max_length": pin.max_length,
                "pin_reference": pin.reference,
                "pad_char": bytes((pin.pad_char,)),
            }
        )
        obj = PinObject(
            {
                "common_object_attributes": _common(pin.label, private=True),
                "class_attributes": {"auth_id": pin.auth_id},
                "type_attributes": attrs,
            }
        )
        out += obj.dump()
    return out


def encode_prkdf(keys: list[KeyInfo]) -> bytes:
    out = b""
    for key in keys:
        common = _common(key.label, key.auth_id, private=True, user_consent=key.user_consent or None)
        cka = {
            "id": key.id,
            "usage": set(key.usage),
            "access_flags": {"sensitive", "always_sensitive", "never_extractable", "local"},
            "key_reference": key.key_reference,
        }
        if key.algorithm == "RSA":
            obj: core.Sequence = PrivateRsaKeyObject(
                {
                    "common_object_attributes": common,
                    "class_attributes": cka,
                    "type_attributes": {"value": {"path": b""}, "modulus_length": key.size},
                }
            )
            out += PrivateKeyObject(name="rsa", value=obj).dump()
        else:
            obj = PrivateEcKeyObject(
                {
                    "common_object_attributes": common,
                    "class_attributes": cka,
                    "type_attributes": {"value": {"path": b""}, "field_size": key.size},
                }
            )
            out += PrivateKeyObject(name="ec", value=obj).dump()
    return out


def encode_cdf(certs: list[CertificateRef]) -> bytes:
    out = b""
    for cert in certs:
        obj = CertificateObject(
            {
                "common_object_attributes": _common(cert.label),
                "class_attributes": {"id": cert.id, "authority": cert.authority},
                "type_attributes": {"value": {"path": cert.path}},
            }
        )
        out += obj.dump()
    return out
