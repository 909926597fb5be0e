"""PKCS#15 / ISO 7816-15: the application's AID and file ids (:mod:`.layout`), the asn1crypto schemas
(:mod:`.schema`), the objects this project uses (:mod:`.objects`), and reading (:mod:`.parse`) and writing
(:mod:`.encode`) the files. ``from card import pkcs15; pkcs15.parse_od(...)`` is the public API."""

from card.pkcs15.encode import encode_aodf, encode_cdf, encode_dir, encode_od, encode_prkdf, encode_token_info
from card.pkcs15.layout import (
    APP_DF,
    FID_AODF,
    FID_CDF,
    FID_DIR,
    FID_OD,
    FID_PRKDF,
    FID_TOKENINFO,
    PKCS15_AID,
)
from card.pkcs15.objects import (
    Application,
    CertificateRef,
    KeyInfo,
    ObjectDirectory,
    PinInfo,
    TokenInfoData,
)
from card.pkcs15.parse import parse_aodf, parse_cdf, parse_dir, parse_od, parse_prkdf, parse_token_info

__all__ = [
    "APP_DF",
    "FID_AODF",
    "FID_CDF",
    "FID_DIR",
    "FID_OD",
    "FID_PRKDF",
    "FID_TOKENINFO",
    "PKCS15_AID",
    "Application",
    "CertificateRef",
    "KeyInfo",
    "ObjectDirectory",
    "PinInfo",
    "TokenInfoData",
    "encode_aodf",
    "encode_cdf",
    "encode_dir",
    "encode_od",
    "encode_prkdf",
    "encode_token_info",
    "parse_aodf",
    "parse_cdf",
    "parse_dir",
    "parse_od",
    "parse_prkdf",
    "parse_token_info",
]
