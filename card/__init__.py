"""Real card access for digisign-web: PC/SC transport and readers, ISO 7816-4 files, PKCS#15, card
profiles as data, PINs and signing (:class:`Token`). It knows nothing about HTTP, DigiSign's settings
or the virtual card: ``card.virtual`` imports this package, never the reverse.

Names are imported on first use (PEP 562), so that a command that needs none of them (``--help``)
does not pay for cryptography, asn1crypto and pyscard."""

from __future__ import annotations

from card.lazy import lazy_attributes

TYPE_CHECKING = False  # typing costs milliseconds that ``--help`` should not pay

if TYPE_CHECKING:
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

_HOMES = {
    "Command": "card.apdu",
    "Response": "card.apdu",
    "CardCertificate": "card.certificate",
    "Name": "card.certificate",
    "build_chain": "card.certificate",
    "load_pem_certificates": "card.certificate",
    "ecdsa_der_to_raw": "card.crypto",
    "ecdsa_raw_to_der": "card.crypto",
    "CardError": "card.errors",
    "CardRemovedError": "card.errors",
    "FatalCardError": "card.errors",
    "FileNotFoundOnCardError": "card.errors",
    "InvalidPinFormatError": "card.errors",
    "MalformedResponseError": "card.errors",
    "NoCardError": "card.errors",
    "NoReaderError": "card.errors",
    "PinBlockedError": "card.errors",
    "PinError": "card.errors",
    "PinInvalidatedError": "card.errors",
    "RetryableCardError": "card.errors",
    "SecurityStatusNotSatisfied": "card.errors",
    "StatusWordError": "card.errors",
    "TransportError": "card.errors",
    "UnsupportedCardError": "card.errors",
    "WrongPinError": "card.errors",
    "CardManager": "card.manager",
    "CardPolicy": "card.manager",
    "ReaderSource": "card.manager",
    "PcscTransport": "card.pcsc",
    "PROFILES": "card.profiles",
    "CardProfile": "card.profiles",
    "match_profile": "card.profiles",
    "PcscReaders": "card.readers",
    "ReaderEvent": "card.readers",
    "ReaderMonitor": "card.readers",
    "list_readers": "card.readers",
    "Certificate": "card.token",
    "PinStatus": "card.token",
    "Token": "card.token",
    "Transport": "card.transport",
}

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


__getattr__ = lazy_attributes(_HOMES, globals())
