"""Card profiles: how to recognise a card by ATR and the quirks of talking to it.

A profile is data, not a class hierarchy: the token code reads these fields and does the one generic
ISO 7816-15 dance. A national card is an entry that holds only its ATRs, paths, references and quirks
(the libelectronic-id model). Facts are those of docs/decisions.md (F6–F11, F22); each profile says
how well it is tested in ``tested``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from card.crypto import HASH_NAMES, SHA1, SHA224, SHA256, SHA384, SHA512
from card.pkcs15 import PKCS15_AID

# MSE algorithm byte = hash nibble | scheme nibble (F7), by the hash names of card.crypto's table.
HASH_NIBBLE = {SHA1.name: 0x10, SHA224.name: 0x30, SHA256.name: 0x40, SHA384.name: 0x50, SHA512.name: 0x60}
SCHEME_NIBBLE = {"pkcs1": 0x02, "ecdsa": 0x04, "pss": 0x05}
assert set(HASH_NIBBLE) == set(HASH_NAMES), "every hash in card.crypto needs a FINEID nibble"


@dataclass(frozen=True)
class AtrPattern:
    """An ATR with ``??`` wildcard bytes, e.g. ``"3B 7F 96 00 00 80 31 B8 65 B0 85 ?? ?? ?? 12 24 60 82 90 00"``."""

    pattern: str
    name: str = ""

    def matches(self, atr: bytes) -> bool:
        parts = self.pattern.split()
        if len(parts) != len(atr):
            return False
        return all(p == "??" or int(p, 16) == b for p, b in zip(parts, atr, strict=True))


@dataclass(frozen=True)
class KnownKey:
    """A key slot the profile knows without PKCS#15, for cards whose directory files cannot be read.

    A slot whose certificate file is missing is an empty slot: one profile covers every key layout of a
    card family (FINEID v3.0's P-256 QES key 03 at 4335, v3.1's RSA QES key 02 at 4332, or both), and
    the card says which it has by the files it holds (F8, F9).
    """

    role: str  # "authentication" or "signature"
    cert_path: bytes  # relative to the application, or absolute (starting 3F00)
    key_reference: int
    pin_reference: int
    key_df: bytes | None = None  # AID of the DF holding the key, selected before MSE (DF.ESIGN)


@dataclass(frozen=True)
class KnownPin:
    """A PIN the profile knows without PKCS#15: its reference, label and length rules."""

    reference: int
    label: str
    min_length: int
    max_length: int = 12
    puk: bool = False


@dataclass(frozen=True)
class CardProfile:
    name: str
    description: str
    atrs: tuple[AtrPattern, ...] = ()
    historical_suffix: bytes = b""  # e.g. b"MyEID": matches when the ATR ends with these bytes
    aid: bytes | None = PKCS15_AID
    # PIN encoding: ASCII digits padded with pin_pad_char to pin_block bytes (0 = unpadded).
    pin_pad_char: int = 0x00
    pin_block: int = 12
    max_tries: int | None = None
    pin_info: str = "verify"  # "getdata-df21" (FINEID GET DATA) or "verify" (empty VERIFY)
    # Signing: "hash-then-cds" = MSE, PSO:HASH(90), PSO:CDS; "cds-with-data" = MSE, PSO:CDS(DigestInfo
    # for RSA PKCS#1, else the hash); "cds-with-hash" = MSE, PSO:CDS(the bare hash; the card pads).
    sign_style: str = "hash-then-cds"
    # Unblock: "reset-with-puk" = RESET RETRY COUNTER P1=00 with PUK and new PIN (ISO 7816-4);
    # "verify-puk" = VERIFY the PUK, then RESET RETRY COUNTER P1=02 with the new PIN (S4-2).
    unblock_style: str = "reset-with-puk"
    # Logout: "reselect" = SELECT the PKCS#15 application again (FINEID citizen cards clear PIN state);
    # "reset" = warm-reset the card (IAS-ECC based cards keep PINs verified across a re-select, D68).
    logout_style: str = "reselect"
    mse_p1: int = 0x41
    mse_extra: bytes = b""  # extra MSE data objects, e.g. CardOS's usage qualifier 95 01 40
    alg_refs: str = "nibble"  # "nibble" (hash<<4 | scheme) or "myeid" (02 with DigestInfo, 04 ECDSA)
    ec_signature: str = "raw"  # what PSO:CDS returns for EC keys: "raw" r||s or "der"
    ec_hash_pad: int = 0  # left-pad EC hashes with zeros to this many bytes (0 = send as is)
    known_keys: tuple[KnownKey, ...] = ()
    known_pins: tuple[KnownPin, ...] = ()
    ca_paths: tuple[bytes, ...] = ()  # CA certificates outside PKCS#15 (absolute paths), in no order
    # A card whose ATR matches is this card only if the application SELECT works (as OpenSC confirms FINEID).
    aid_confirms: bool = False
    tested: str = "profile entry only: not exercised by any test (no card, no emulation)"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def matches(self, atr: bytes) -> bool:
        if any(p.matches(atr) for p in self.atrs):
            return True
        # Historical bytes end the ATR, except for a trailing TCK when T!=0 is offered.
        suffix = self.historical_suffix
        return bool(suffix) and (atr.endswith(suffix) or atr[:-1].endswith(suffix))

    def algorithm_reference(self, scheme: str, hash_algorithm: str) -> int:
        """The MSE ``80`` algorithm byte for a scheme (pkcs1/pss/ecdsa) and hash name."""
        if self.alg_refs == "myeid":
            return {"pkcs1": 0x02, "ecdsa": 0x04}[scheme]
        return HASH_NIBBLE[hash_algorithm] | SCHEME_NIBBLE[scheme]


_CITIZEN_PINS = (
    KnownPin(0x11, "PIN1 (basic PIN)", 4),
    KnownPin(0x82, "PIN2 (signature PIN)", 6),
    KnownPin(0x83, "PUK", 8, puk=True),
)
# CA certificates under the MF on citizen cards (F10): the root and the issuing CA.
_CITIZEN_CAS = (bytes.fromhex("3F004334"), bytes.fromhex("3F004336"))

FINEID_V4 = CardProfile(
    name="fineid-v4",
    description="FINEID v4 (Thales MultiApp 5.x, S4-1 v4.x): P-384 authentication and signature keys",
    atrs=(
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 05 00 11 12 24 60 82 90 00", "Thales MultiApp v5.0"),
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 05 10 24 12 24 60 82 90 00", "Thales MultiApp 5.x (2025)"),
        # libelectronic-id's mask for FinEID Thales v4.0/v4.1 (bytes 12-13 free).
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 05 ?? ?? 12 24 60 82 90 00", "FINEID v4 family"),
    ),
    max_tries=5,
    pin_info="getdata-df21",
    known_keys=(
        KnownKey("authentication", bytes.fromhex("4331"), 0x01, 0x11),
        KnownKey("signature", bytes.fromhex("50164332"), 0x02, 0x82),
    ),
    known_pins=_CITIZEN_PINS,
    ca_paths=_CITIZEN_CAS,
    aid_confirms=True,
    tested="recorded real-card data (Web eID's 2023 FINEID v4 test-card trace) and our virtual card",
    notes=(
        "12-byte 0x00-padded ASCII PINs; PIN1 ref 11, PIN2 ref 82, PUK ref 83",
        "MSE:SET DST (80 alg, 84 key), PSO:HASH (90), PSO:CDS with exact Le; ECDSA comes back as raw r||s",
    ),
)

FINEID_V3 = CardProfile(
    name="fineid-v3",
    description="FINEID v3 (Gemalto MultiApp 3.0/4.2, S4-1 v3.x): RSA authentication key; P-256 (v3.0), "
                "RSA-3072 (v3.1) or both QES keys",
    atrs=(
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 04 02 1B 12 00 F6 82 90 00", "Gemalto MultiApp v4.2"),
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 03 00 EF 12 00 F6 82 90 00", "Gemalto MultiApp v3.0"),
        AtrPattern("3B 7F 96 00 00 80 31 B8 65 B0 85 ?? ?? ?? 12 00 F6 82 90 00", "FINEID v3 family"),
    ),
    max_tries=5,
    pin_info="getdata-df21",
    known_keys=(
        KnownKey("authentication", bytes.fromhex("4331"), 0x01, 0x11),
        KnownKey("signature", bytes.fromhex("50164332"), 0x02, 0x82),  # v3.1: RSA-3072 QES key
        KnownKey("signature", bytes.fromhex("50164335"), 0x03, 0x82),  # v3.0: P-256 QES key
    ),
    known_pins=_CITIZEN_PINS,
    ca_paths=_CITIZEN_CAS,
    aid_confirms=True,
    tested="recorded real-card data (Web eID's 2020 FINEID v3.0 test-card trace) and our virtual card; "
           "v3.1 and dual-algorithm layouts from ReFineID's hardware notes and our virtual card",
    notes=(
        "as FINEID v4, but v3.0 has the P-256 QES key 03 at 5016/4335, v3.1 the RSA-3072 QES key 02 at "
        "5016/4332, and dual-algorithm cards both",
        "the RSA authentication key signs PKCS#1 v1.5 (SHA256withRSA) and PSS",
    ),
)

MYEID = CardProfile(
    name="myeid",
    description="Aventra MyEID (JavaCard applet)",
    historical_suffix=b"MyEID",
    atrs=(AtrPattern("3B 85 80 01 4D 79 45 49 44 78", "MyEID"),),
    pin_pad_char=0xFF,
    pin_block=8,
    sign_style="cds-with-data",
    alg_refs="myeid",
    ec_signature="der",
    notes=(
        "PINs padded with FF to 8 bytes; PSO:CDS carries the DigestInfo (RSA, alg 02) or the hash (EC, alg 04)",
        "EC signatures come back as DER and are converted to r||s",
    ),
)

CARDOS_53 = CardProfile(
    name="cardos-5.3",
    description="Atos CardOS 5.3/5.4 with a PKCS#15 application",
    atrs=(
        AtrPattern("3B D2 18 00 81 31 FE 58 C9 02 17", "CardOS 5.3"),
        AtrPattern("3B D2 18 00 81 31 FE 58 C9 03 16", "CardOS 5.3"),
        AtrPattern("3B D2 18 00 81 31 FE 58 C9 04 11", "CardOS 5.4"),
    ),
    pin_block=8,
    sign_style="cds-with-data",
    alg_refs="myeid",
    mse_extra=bytes.fromhex("950140"),
    notes=("MSE carries the usage qualifier 95 01 40; PIN references are local (| 0x80)",),
)

IDPRIME = CardProfile(
    name="idprime",
    description="Thales/Gemalto IDPrime 930/940/3940 (proprietary index file, not ISO 7816-15)",
    atrs=(
        AtrPattern("3B 7F 96 00 00 80 31 80 65 B0 85 59 56 FB 12 0F FE 82 90 00", "IDPrime 940"),
        AtrPattern("3B 8F 80 01 80 31 80 65 B0 85 59 56 FB 12 0F FC 82 90 00 68", "IDPrime 3940 contactless"),
        AtrPattern("3B FF 96 00 00 81 31 FE 43 80 31 80 65 B0 85 05 00 39 12 0F FE 82 90 00 C8",
                   "IDPrime 3940C"),
    ),
    aid=bytes.fromhex("A000000018800000000662"),
    pin_block=16,
    notes=(
        "same MSE/PSO:HASH/PSO:CDS interface and alg refs as FINEID; echoes the hash when PSO:HASH has Le",
        "certificates sit in a proprietary index file (0101), so only cards that also carry PKCS#15 work here",
    ),
)

FINEID_ORG = CardProfile(
    name="fineid-org",
    description="FINEID organisation card (IDEMIA Cosmo X / ID.me, Oberthur Cosmo v7; DVV S4-2): RSA keys",
    atrs=(
        AtrPattern("3B DD 96 00 80 31 FE 45 00 31 B8 64 04 29 EC C1 73 94 01 80 83 49", "IDEMIA Cosmo X"),
        AtrPattern("3B DD 96 00 80 31 FE 45 00 31 B8 64 04 29 EC C1 73 94 01 80 82 48", "IDEMIA ID.me"),
        AtrPattern("3B DF 96 00 80 31 FE 45 00 31 B8 64 04 29 EC C1 73 94 01 80 82 90 00 DA", "Cosmo v7"),
    ),
    pin_block=0,  # bare ASCII: a padded block fails and spends a try
    pin_info="verify",  # no GET DATA PIN container: tries come from the empty VERIFY
    sign_style="cds-with-hash",  # no external PSO:HASH (6A80): the bare hash goes inline in PSO:CDS
    unblock_style="verify-puk",  # VERIFY the PUK, then RESET RETRY COUNTER P1=02 with the new PIN
    logout_style="reset",  # PIN SDOs outlive a re-select of the application (D68)
    known_keys=(
        KnownKey("authentication", bytes.fromhex("4331"), 0x01, 0x03),
        KnownKey("signature", bytes.fromhex("3F0050164332"), 0x82, 0x04, key_df=bytes.fromhex("452E5349474E")),
    ),
    known_pins=(
        KnownPin(0x03, "PIN1 (authentication PIN)", 4, 8),
        KnownPin(0x04, "PIN2 (signature PIN)", 6, 8),
        KnownPin(0x12, "PUK (activation code)", 8, 8, puk=True),
    ),
    # The root under the MF; the issuing CA is MF/4333 per one ReFineID tree and unreadable per another.
    ca_paths=(bytes.fromhex("3F004334"), bytes.fromhex("3F004333")),
    aid_confirms=True,
    tested="ReFineID's hardware notes (a Cosmo X) and our virtual card; no recorded trace",
    notes=(
        "S4-2: PIN1 ref 03, PIN2 ref 04, PUK 12; unpadded PINs of at most 8 digits",
        "qualified key 82 local to DF 'E.SIGN' (selected before MSE); PSO:CDS carries the bare digest",
    ),
)

SETCOS = CardProfile(
    name="setcos",
    description="Setec SetCOS 4.4.1 and the SetCOS Java EID applet (legacy FINEID v1/v2)",
    atrs=(
        AtrPattern("3B 9F 94 80 1F C3 00 68 11 44 05 01 46 49 53 45 31 C8 ?? ?? ?? ??", "SetCOS 4.4.1"),
        AtrPattern("3B 7B 94 00 00 80 62 ?? 51 56 46 69 6E 45 49 44", "FINEID v2 (SetCOS 5.1 EID)"),
        AtrPattern("3B 7B 18 00 00 80 62 01 54 56 46 69 6E 45 49 44", "Segenmark FINEID"),
    ),
    pin_block=8,
    sign_style="cds-with-data",
    alg_refs="myeid",
    notes=("RSA only; MSE P1 41 on 4.4 and the EID applet (81 on 4.3); alg 02 PKCS#1 with DigestInfo",),
)

GENERIC = CardProfile(
    name="generic-pkcs15",
    description="Unknown card with an ISO 7816-15 (PKCS#15) application, read generically",
    tested="against our virtual card with an unknown ATR (allowUnknownCards)",
)

PROFILES: tuple[CardProfile, ...] = (FINEID_V4, FINEID_V3, FINEID_ORG, MYEID, CARDOS_53, IDPRIME, SETCOS)


def match_profile(atr: bytes) -> CardProfile | None:
    """The profile whose ATR patterns match, exact entries first (they come first in each profile)."""
    for profile in PROFILES:
        if profile.matches(atr):
            return profile
    return None


def profile_by_name(name: str) -> CardProfile:
    for profile in (*PROFILES, GENERIC):
        if profile.name == name:
            return profile
    raise KeyError(name)
