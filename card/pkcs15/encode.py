"""Encoding :mod:`card.pkcs15.objects` into PKCS#15 files, with the same schemas the parser reads (used by
the virtual card)."""

from __future__ import annotations

from asn1crypto import core

from card.pkcs15.objects import Application, CertificateRef, KeyInfo, ObjectDirectory, PinInfo, TokenInfoData
from card.pkcs15.schema import (
    ApplicationTemplate,
    CertificateObject,
    CommonObjectAttributes,
    ObjectDirectoryEntry,
    Path,
    PinAttributes,
    PinObject,
    PrivateEcKeyObject,
    PrivateKeyObject,
    PrivateRsaKeyObject,
    TokenInfo,
)


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
