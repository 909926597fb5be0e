"""Card access for digisign-web: PC/SC and in-process transports, PKCS#15 parsing, FINEID profiles,
PINs and signing, and the virtual FINEID card. This package knows nothing about HTTP."""

from .apdu import Command, Response
from .certificate import CardCertificate, Name, build_chain, load_pem_certificates
from .emulator import VIRTUAL_PROFILES, VirtualCard
from .errors import (
    CardError,
    CardRemovedError,
    FileNotFoundOnCardError,
    InvalidPinFormatError,
    MalformedResponseError,
    NoCardError,
    NoReaderError,
    PinBlockedError,
    PinError,
    PinInvalidatedError,
    SecurityStatusNotSatisfied,
    StatusWordError,
    TransportError,
    UnsupportedCardError,
    WrongPinError,
)
from .manager import CardManager, CardPolicy
from .profiles import PROFILES, CardProfile, match_profile
from .readers import ReaderEvent, ReaderMonitor, list_readers, matches_wildcards
from .token import Certificate, PinStatus, Token, ecdsa_der_to_raw, ecdsa_raw_to_der
from .transport import InProcessTransport, PcscTransport, Transport

__all__ = [
    "PROFILES",
    "VIRTUAL_PROFILES",
    "CardCertificate",
    "CardError",
    "CardManager",
    "CardPolicy",
    "CardProfile",
    "CardRemovedError",
    "Certificate",
    "Command",
    "FileNotFoundOnCardError",
    "InProcessTransport",
    "InvalidPinFormatError",
    "MalformedResponseError",
    "Name",
    "NoCardError",
    "NoReaderError",
    "PcscTransport",
    "PinBlockedError",
    "PinError",
    "PinInvalidatedError",
    "PinStatus",
    "ReaderEvent",
    "ReaderMonitor",
    "Response",
    "SecurityStatusNotSatisfied",
    "StatusWordError",
    "Token",
    "Transport",
    "TransportError",
    "UnsupportedCardError",
    "VirtualCard",
    "WrongPinError",
    "build_chain",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "list_readers",
    "load_pem_certificates",
    "match_profile",
    "matches_wildcards",
]
