"""PKCS#15 objects as this project uses them: small frozen dataclasses, parsed from or encoded to the
schemas in :mod:`card.pkcs15.schema`."""

from __future__ import annotations

from dataclasses import dataclass, field


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


NUMERIC_PIN_TYPES = frozenset({"ascii-numeric", "bcd", "half-nibble-bcd"})


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
    def numeric(self) -> bool:
        """Digits only: the PKCS#15 PIN types that encode digits (the card refuses anything else)."""
        return self.pin_type in NUMERIC_PIN_TYPES

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
