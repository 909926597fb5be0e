"""Real card access for digisign-web: PC/SC transport and readers, ISO 7816-4 files, PKCS#15, card
profiles as data, PINs and signing (:class:`Token`). It knows nothing about HTTP, DigiSign's settings
or the virtual card: ``card.virtual`` imports this package, never the reverse."""

from card.apdu import Command, Response
from card.certificate import CardCertificate, Name, build_chain, load_pem_certificates
from card.crypto import ecdsa_der_to_raw, ecdsa_raw_to_der
from card.errors import (
    CardError,
    CardRemovedError,
    FatalCardError,
    FileNotFoundOnCardError,
    InvalidPinFormatError,
    MalformedResponseError,
    NoCardError,
    NoReaderError,
    PinBlockedError,
    PinError,
    PinInvalidatedError,
    RetryableCardError,
    SecurityStatusNotSatisfied,
    StatusWordError,
    TransportError,
    UnsupportedCardError,
    WrongPinError,
)
from card.manager import CardManager, CardPolicy, ReaderSource
from card.pcsc import PcscTransport
from card.profiles import PROFILES, CardProfile, match_profile
from card.readers import PcscReaders, ReaderEvent, ReaderMonitor, list_readers
from card.token import Certificate, PinStatus, Token
from card.transport import Transport

__all__ = [
    "PROFILES",
    "CardCertificate",
    "CardError",
    "CardManager",
    "CardPolicy",
    "CardProfile",
    "CardRemovedError",
    "Certificate",
    "Command",
    "FatalCardError",
    "FileNotFoundOnCardError",
    "InvalidPinFormatError",
    "MalformedResponseError",
    "Name",
    "NoCardError",
    "NoReaderError",
    "PcscReaders",
    "PcscTransport",
    "PinBlockedError",
    "PinError",
    "PinInvalidatedError",
    "PinStatus",
    "ReaderEvent",
    "ReaderMonitor",
    "ReaderSource",
    "Response",
    "RetryableCardError",
    "SecurityStatusNotSatisfied",
    "StatusWordError",
    "Token",
    "Transport",
    "TransportError",
    "UnsupportedCardError",
    "WrongPinError",
    "build_chain",
    "ecdsa_der_to_raw",
    "ecdsa_raw_to_der",
    "list_readers",
    "load_pem_certificates",
    "match_profile",
]
