"""Decoding PKCS#15 files (EF.DIR, EF.OD, EF.TokenInfo, AODF, PrKDF, CDF) into :mod:`card.pkcs15.objects`.

Whatever does not parse becomes :class:`~card.errors.MalformedResponseError` (a broken or hostile card);
object kinds this project does not use are skipped.
"""

from __future__ import annotations

import logging

from card.apdu import find_tlv, parse_tlv, split_der_objects
from card.errors import MalformedResponseError
from card.pkcs15.objects import Application, CertificateRef, KeyInfo, ObjectDirectory, PinInfo, TokenInfoData
from card.pkcs15.schema import (
    ApplicationTemplate,
    CertificateObject,
    CommonObjectAttributes,
    ObjectDirectoryEntry,
    PinObject,
    PrivateKeyObject,
    TokenInfo,
)

log = logging.getLogger(__name__)


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
