"""The token API: one card's certificates, keys, PINs and signing, read lazily and cached.

A :class:`Token` wraps a transport (PC/SC or in-process) and a :class:`~card.profiles.CardProfile`.
The first use reads what it needs (PKCS#15 directory files, then certificates) and keeps it, so a
signature with a warm token costs only VERIFY (when asked), MSE, PSO:HASH and PSO:CDS (plus GET
RESPONSE on T=0). A removed card raises :class:`~card.errors.CardRemovedError` and voids the cache.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from asn1crypto import x509 as asn1_x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from card import files, pkcs15
from card.apdu import Command, Response, find_tlv, parse_tlv
from card.cache import CachedFile, CardCache, CardSnapshot
from card.certificate import CardCertificate, build_chain
from card.crypto import Hash, ecdsa_der_to_raw, ecdsa_raw_to_der, hash_by_name
from card.errors import (
    CardRemovedError,
    FatalCardError,
    FileNotFoundOnCardError,
    InvalidPinFormatError,
    MalformedResponseError,
    StatusWordError,
    UnsupportedCardError,
)
from card.files import MF
from card.pkcs15 import FID_DIR, FID_OD, FID_TOKENINFO
from card.profiles import GENERIC, CardProfile, match_profile
from card.transport import Transport

log = logging.getLogger(__name__)

T = TypeVar("T")

# A PinInfo flag: this PIN is entered on the reader (a PKCS#11 token with CKF_PROTECTED_AUTHENTICATION_PATH),
# so dialogs show no PIN field and the token logs in without one (D62).
PIN_ON_READER = "pin_on_reader"


def pin_on_reader(pin: pkcs15.PinInfo | None) -> bool:
    return pin is not None and PIN_ON_READER in pin.flags


@dataclass(frozen=True)
class PinStatus:
    """What the card says about a PIN without spending a try."""

    tries_left: int | None
    max_tries: int | None
    blocked: bool
    must_change: bool = False
    verified: bool | None = None  # only the empty-VERIFY probe can tell


@dataclass(frozen=True)
class Certificate:
    """A certificate on the card, with the private key and PIN that go with it (if any).

    ``certificate`` is the certificate as the card stores it (:class:`~card.certificate.CardCertificate`):
    parsed leniently, with its exact bytes in ``der``.
    """

    certificate: CardCertificate
    label: str
    id: bytes
    key: pkcs15.KeyInfo | None
    pin: pkcs15.PinInfo | None
    authority: bool = False
    key_df: bytes | None = None  # AID of the DF holding the key (organisation cards' DF.ESIGN)

    @property
    def der(self) -> bytes:
        return self.certificate.der

    @property
    def subject(self) -> str:
        return self.certificate.subject.rfc4514()

    @property
    def issuer(self) -> str:
        return self.certificate.issuer.rfc4514()

    @property
    def key_usage(self) -> list[str]:
        return self.certificate.key_usage

    @property
    def key_description(self) -> str:
        return self.certificate.key_description

    @property
    def role(self) -> str:
        """``signature`` (nonRepudiation, PIN2), ``authentication`` (digitalSignature), ``ca`` or ``other``."""
        usage = self.key_usage
        if self.authority or "key_cert_sign" in usage or self.certificate.is_ca:
            return "ca"
        if "non_repudiation" in usage:
            return "signature"
        if "digital_signature" in usage:
            return "authentication"
        if self.key is not None:
            if "non_repudiation" in self.key.usage:
                return "signature"
            if "sign" in self.key.usage:
                return "authentication"
        return "other"

    @property
    def key_algorithm(self) -> str:
        return self.certificate.key_algorithm

    @property
    def key_size(self) -> int:
        return self.certificate.key_size

    @property
    def curve(self) -> str | None:
        return self.certificate.curve


_ROLE_ORDER = {"authentication": 0, "signature": 1, "other": 2, "ca": 3}


def sorted_by_role(certs: list[Certificate]) -> list[Certificate]:
    """A token's certificates in the order every list shows them: authentication, signature, other, CAs."""
    return sorted(certs, key=lambda c: _ROLE_ORDER[c.role])


class CardToken(Protocol):
    """What the server and the CLI use of a token, whichever way it is reached: :class:`Token` (our APDUs over
    PC/SC or in-process) or :class:`card.pkcs11.Pkcs11Token` (a PKCS#11 module; D60)."""

    removed: bool

    @property
    def reader(self) -> str: ...
    @property
    def profile(self) -> CardProfile: ...
    @property
    def blocking(self) -> bool: ...
    @property
    def atr(self) -> bytes: ...
    @property
    def token_info(self) -> pkcs15.TokenInfoData: ...
    @property
    def serial(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def loaded(self) -> bool: ...
    def certificates(self) -> list[Certificate]: ...
    def chain(self, leaf: Certificate) -> list[CardCertificate]: ...
    def pin_status(self, pin: pkcs15.PinInfo) -> PinStatus: ...
    def pin_verified(self, pin: pkcs15.PinInfo) -> bool: ...
    def verify_pin(self, pin: pkcs15.PinInfo, value: str) -> None: ...
    def logout(self) -> None: ...
    def puk(self) -> pkcs15.PinInfo | None: ...
    def change_pin(self, pin: pkcs15.PinInfo, old: str, new: str) -> None: ...
    def unblock_pin(self, pin: pkcs15.PinInfo, puk: str, new: str) -> None: ...
    def sign_digest(self, key: Certificate, hash_algorithm: str, digest: bytes, *, pin: str | None = None,
                    pss: bool = False) -> bytes: ...
    def invalidate(self) -> None: ...
    def close(self) -> None: ...


class Token:
    """One card in one reader. Not thread-safe by itself: callers serialise (one operation at a time)."""

    def __init__(self, transport: Transport, profile: CardProfile, app_path: bytes | None = None,
                 cache: CardCache | None = None):
        self.transport = transport
        self.profile = profile
        self.app_path = app_path  # absolute path of the PKCS#15 DF, when known (from EF.DIR)
        self.removed = False
        self._app_ready = False
        self._files: dict[bytes, bytes] = {}
        self._od: pkcs15.ObjectDirectory | None = None
        self._token_info: pkcs15.TokenInfoData | None = None
        self._pins: list[pkcs15.PinInfo] | None = None
        self._keys: list[pkcs15.KeyInfo] | None = None
        self._certs: list[Certificate] | None = None
        self._chains: dict[bytes, list[CardCertificate]] = {}  # leaf DER -> its chain (signatures checked once)
        self._known_layout = False
        # The smart-card cache (card/cache.py, D57): what was read, in order, to validate and store it.
        self.cache = cache
        self.cache_state = "off" if cache is None else "unconsulted"  # then: cold, cached, uncacheable
        self._sizes: dict[bytes, int | None] = {}  # path -> FCP size of the files read
        self._absent: set[bytes] = set()  # paths the card answered "not found" (no need to ask again)
        self._read_order: dict[bytes, None] = {}  # every path met, in order (files read and absent)
        self._cert_paths: set[bytes] = set()  # the certificate files among them
        self._cache_proven: set[bytes] = set()  # cached certificates a signature has matched

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        transport: Transport,
        *,
        allow_unknown_cards: bool = True,
        label_filter: Callable[[str], bool] | None = None,
        cache: CardCache | None = None,
    ) -> Token:
        """Recognise the card (ATR, then the PKCS#15 application) and return a token for it.

        Raises :class:`UnsupportedCardError` for a card we should not use: unknown ATR with
        ``allow_unknown_cards`` off, no PKCS#15 application, or a TokenInfo label that ``label_filter``
        rejects (its ``str()`` names the rule in the message). With ``cache``, the certificates of a card
        read before come from it once the card shows it has not changed (D57).
        """
        profile = match_profile(transport.atr)
        if profile is None and not allow_unknown_cards:
            raise UnsupportedCardError(
                f"unknown card (ATR {transport.atr.hex(' ').upper()}) and allowUnknownCards is off")
        token = cls(transport, profile or GENERIC, cache=cache)
        token._locate_application(confirm_profile=profile is not None)
        if label_filter is not None:
            label = token.token_info.label
            if not label_filter(label):
                raise UnsupportedCardError(f"token label {label!r} is not accepted by {label_filter}")
        return token

    def _locate_application(self, confirm_profile: bool) -> None:
        aid = self.profile.aid or pkcs15.PKCS15_AID
        response = self._transmit(Command(0x00, 0xA4, 0x04, 0x0C, aid, name="SELECT AID"))
        if response.ok:
            self._app_ready = True
            return
        if self.profile.aid_confirms:
            # The profile is confirmed by the application SELECT (FINEID, as OpenSC does): no app, not this card.
            raise UnsupportedCardError(
                f"ATR looks like {self.profile.name} but the PKCS#15 application is missing "
                f"(SW {response.sw:04X})")
        # Generic: EF.DIR tells where the PKCS#15 application is.
        try:
            apps = pkcs15.parse_dir(self._read_file(MF + FID_DIR))
        except (FileNotFoundOnCardError, StatusWordError) as exc:
            raise UnsupportedCardError(f"no PKCS#15 application on the card ({exc})") from exc
        for app in apps:
            if app.aid == pkcs15.PKCS15_AID or app.aid == aid:
                if app.path:
                    self.app_path = app.path if app.path.startswith(MF) else MF + app.path
                    files.select(self._transmit, self.app_path, fcp=False)
                    self._app_ready = True
                else:
                    self._transmit(Command(0x00, 0xA4, 0x04, 0x0C, app.aid, name="SELECT AID")).check(
                        "SELECT AID")
                    self._app_ready = True
                return
        raise UnsupportedCardError("no PKCS#15 application on the card")

    # -- low level ----------------------------------------------------------------------------
    def _transmit(self, command: Command) -> Response:
        if self.removed:
            raise CardRemovedError("the card was removed; open the token again")
        try:
            return self.transport.transmit(command)
        except CardRemovedError:
            self.invalidate()
            raise

    def _guard(self, fn: Callable[[], T]) -> T:
        if self.removed:
            raise CardRemovedError("the card was removed; open the token again")
        try:
            with self.transport.transaction():
                return fn()
        except CardRemovedError:
            self.invalidate()
            raise

    def _load(self, fn: Callable[[], T]) -> T:
        """Run a cold read, then make sure the application is selected again, so that the reads
        (which may wander outside it) cost the next PIN or signing operation nothing."""
        def run() -> T:
            if self.cache_state == "unconsulted":
                self._consult_cache()
            result = fn()
            self._ensure_app()
            return result

        return self._guard(run)

    def invalidate(self) -> None:
        """Forget everything about the card (it was removed or replaced)."""
        self.removed = True
        self._files.clear()
        self._od = self._token_info = None
        self._pins = self._keys = None
        self._certs = None
        self._chains.clear()
        self._sizes.clear()
        self._absent.clear()
        self._read_order.clear()
        self._cert_paths.clear()

    def close(self) -> None:
        """Forget the card and close its connection (the manager drops a token this way)."""
        self.invalidate()
        self.transport.close()

    def _ensure_app(self) -> None:
        if self._app_ready:
            return
        if self.app_path:
            files.select(self._transmit, self.app_path, fcp=False)
        else:
            aid = self.profile.aid or pkcs15.PKCS15_AID
            self._transmit(Command(0x00, 0xA4, 0x04, 0x0C, aid, name="SELECT AID")).check("SELECT AID")
        self._app_ready = True

    def _absolute(self, path: bytes) -> bytes:
        if path.startswith(MF) or not self.app_path:
            return path
        return self.app_path + path

    def _read_file(self, path: bytes, der: bool = False) -> bytes:
        """The whole file at ``path`` (relative to the application, or absolute), read once and cached;
        :func:`card.files.read_selected` says how its size is found."""
        path = self._absolute(path)
        if path in self._files:
            return self._files[path]
        if path in self._absent:
            raise FileNotFoundOnCardError(0x6A82, "file not found (asked before)", f"SELECT {path.hex().upper()}")
        size = self._select_size(path)
        data = files.read_selected(self._transmit, path, size, der)
        self._files[path] = data
        self._read_order[path] = None
        return data

    def _select_size(self, path: bytes) -> int | None:
        """SELECT ``path`` (absolute) with FCP: its size, or None; remembers a path the card does not have."""
        try:
            size = files.select(self._transmit, path)
        except FileNotFoundOnCardError:
            self._absent.add(path)
            self._read_order[path] = None
            raise
        if path.startswith(MF) and not (self.app_path and path.startswith(self.app_path)):
            # An absolute path may lead out of the application: select it again before PIN use.
            self._app_ready = False
        self._sizes[path] = size
        return size

    def _read_certificate(self, path: bytes, der: bool = False) -> bytes:
        """A certificate file: what the cache may serve on the next insertion without reading it."""
        self._cert_paths.add(self._absolute(path))
        return self._read_file(path, der)

    # -- the smart-card cache (D57) -----------------------------------------------------------
    def _consult_cache(self) -> None:
        """Before the first cold read: if the cache holds this card (by EF.TokenInfo's serial) and the card
        shows it is unchanged, the cached certificate files are taken as read. Runs inside a card transaction."""
        assert self.cache is not None
        self.cache_state = "uncacheable"
        if self._token_info is None:
            self._token_info = self._read_token_info()
        serial = self._token_info.serial
        if not serial:
            log.debug("%s: the card has no serial in EF.TokenInfo: not cached", self.reader)
            return
        self.cache_state = "cold"
        try:
            snapshot = self.cache.load(serial, self.atr)
        except Exception:  # the cache is an optimisation: whatever goes wrong there, the card is read (D58)
            log.warning("%s: the card cache could not be read: reading the card", self.reader, exc_info=True)
            return
        if snapshot is None:
            return
        reason = self._changed_since(snapshot)
        if reason:
            log.info("%s: the card changed since it was cached (%s): reading it again", self.reader, reason)
            return
        for item in snapshot.files:
            if item.kind == "certificate" and item.data is not None:
                self._files[item.path] = item.data
                self._read_order[item.path] = None
                self._cert_paths.add(item.path)
            elif item.kind == "absent":
                self._absent.add(item.path)
                self._read_order[item.path] = None
        self.cache_state = "cached"
        log.info("%s: certificates from the card cache (%d files checked on the card)", self.reader,
                 len(snapshot.files))

    def _changed_since(self, snapshot: CardSnapshot) -> str:
        """Why the card is not the one ``snapshot`` saw ("" when it is): each small file read again and
        compared, each certificate file's FCP size, each absent file still absent (D57)."""
        for item in snapshot.files:
            name = item.path.hex().upper()
            try:
                if not item.path.startswith(MF):
                    self._ensure_app()  # a path relative to the application (FINEID's 5032, 4331)
                if item.kind == "check":
                    if self._read_file(item.path) != item.data:
                        return f"{name} differs"
                elif item.kind == "certificate":
                    if item.path in self._files:
                        continue  # read in full already (e.g. EF.TokenInfo is never a certificate)
                    size = self._sizes[item.path] if item.path in self._sizes else self._select_size(item.path)
                    if size is None or size != item.size:
                        return f"{name} is {size} bytes, was {item.size}"
                elif item.path not in self._absent:
                    self._select_size(item.path)
                    return f"{name} appeared"
            except FileNotFoundOnCardError:
                if item.kind != "absent":
                    return f"{name} is gone"
            except FatalCardError as exc:  # a status word or a malformed answer: not the card that was cached
                return f"{name}: {exc}"
        # A renewed certificate of the same size is invisible above; renewal happens when the old one runs
        # out, so a cached certificate past its notAfter means: read the card (F35).
        now = datetime.datetime.now(datetime.UTC)
        for item in snapshot.files:
            if item.kind == "certificate" and item.data is not None:
                try:  # only the validity is decoded here; the token parses the whole certificate later
                    validity = asn1_x509.Certificate.load(item.data, strict=False)["tbs_certificate"]["validity"]
                    expired = validity["not_after"].native < now
                except (ValueError, TypeError, KeyError):
                    return f"{item.path.hex().upper()} does not parse"
                if expired:
                    return f"the certificate in {item.path.hex().upper()} has expired"
        return ""

    def _store_cache(self) -> None:
        """After a cold read of the certificates: write what was met, if the card can be checked next time."""
        assert self.cache is not None
        items = []
        for path in self._read_order:
            if path in self._absent:
                items.append(CachedFile(path, "absent"))
            elif path in self._cert_paths:
                size = self._sizes.get(path)
                if size is None:
                    log.debug("%s: the card does not give %s's size: not cached", self.reader, path.hex().upper())
                    return
                items.append(CachedFile(path, "certificate", self._files[path], size))
            elif path in self._files:
                items.append(CachedFile(path, "check", self._files[path], self._sizes.get(path)))
        try:
            stored = self.cache.store(CardSnapshot(self.serial, self.atr, tuple(items)))
        except Exception:  # never fail a card read for the cache (D58)
            log.warning("%s: the card cache could not be written", self.reader, exc_info=True)
            return
        if stored:
            self.cache_state = "stored"

    # -- PKCS#15 (lazy) -----------------------------------------------------------------------
    def _app_file(self, fid: bytes, der: bool = False) -> bytes:
        self._ensure_app()
        return self._read_file(fid, der)  # _read_file makes a relative path absolute (see _absolute)

    @property
    def blocking(self) -> bool:
        """Whether a card operation may wait on a device (PC/SC: always); see Transport.blocking."""
        return self.transport.blocking

    @property
    def atr(self) -> bytes:
        return self.transport.atr

    @property
    def reader(self) -> str:
        return self.transport.reader

    @property
    def token_info(self) -> pkcs15.TokenInfoData:
        if self._token_info is None:
            self._token_info = self._guard(self._read_token_info)
        return self._token_info

    def _read_token_info(self) -> pkcs15.TokenInfoData:
        try:
            return pkcs15.parse_token_info(self._app_file(FID_TOKENINFO))
        except FileNotFoundOnCardError:
            return pkcs15.TokenInfoData(version=0, serial="", label="")

    @property
    def serial(self) -> str:
        return self.token_info.serial

    @property
    def label(self) -> str:
        return self.token_info.label

    def _object_directory(self) -> pkcs15.ObjectDirectory | None:
        if self._od is None and not self._known_layout:
            try:
                self._od = pkcs15.parse_od(self._app_file(FID_OD))
            except FileNotFoundOnCardError:
                if not self.profile.known_keys:
                    raise
                log.info("no EF.OD on this %s card: using the profile's known layout", self.profile.name)
                self._known_layout = True
        return self._od

    def _directory(self, kind: str, parse: Callable[[bytes], list[T]]) -> list[T]:
        od = self._object_directory()
        out: list[T] = []
        for path in od.get(kind) if od else []:
            out.extend(parse(self._read_file(path)))
        return out

    @property
    def pins(self) -> list[pkcs15.PinInfo]:
        if self._pins is None:
            self._pins = self._load(self._load_pins)
        return self._pins

    def _load_pins(self) -> list[pkcs15.PinInfo]:
        self._object_directory()
        if self._known_layout:
            profile = self.profile
            return [pkcs15.PinInfo(p.label, bytes((p.reference,)), p.reference, p.min_length,
                                   profile.pin_block or p.max_length, p.max_length,
                                   pad_char=profile.pin_pad_char,
                                   flags=frozenset({"needs_padding"} if profile.pin_block else set())
                                   | ({"unblocking_pin"} if p.puk else set()))
                    for p in profile.known_pins]
        return self._directory("auth_objects", pkcs15.parse_aodf)

    @property
    def keys(self) -> list[pkcs15.KeyInfo]:
        if self._keys is None:
            self._keys = self._load(self._load_keys)
        return self._keys

    def _load_keys(self) -> list[pkcs15.KeyInfo]:
        self._object_directory()
        if self._known_layout:
            return [c.key for c in self.certificates() if c.key is not None]
        return self._directory("private_keys", pkcs15.parse_prkdf)

    @property
    def loaded(self) -> bool:
        """Whether the certificates (and so keys and PINs) and the token info are read: listing them, and the
        serial, label and manufacturer callers look at beside them, need no card I/O."""
        return self._certs is not None and self._token_info is not None

    def certificates(self) -> list[Certificate]:
        """Every certificate on the card: keyed leaves first (authentication, signature), then CAs."""
        if self._certs is None:
            self._certs = self._load(self._load_certificates)
            if self.cache_state == "cold":
                self._store_cache()
        return self._certs

    def _load_certificates(self) -> list[Certificate]:
        self._object_directory()
        certs = self._known_certificates() if self._known_layout else self._pkcs15_certificates()
        if not any(c.role == "ca" for c in certs):
            log.warning("this %s card carries no CA certificate: signatures will carry the leaf "
                        "certificate alone (relying parties that check the chain need its CAs)",
                        self.profile.name)
        return sorted_by_role(certs)

    def _known_certificates(self) -> list[Certificate]:
        """The profile's key slots and CA files, for a card without readable PKCS#15 objects."""
        certs: list[Certificate] = []
        pins = {p.reference: p for p in self.pins}
        for known in self.profile.known_keys:
            try:
                self._ensure_app()
                der = self._read_certificate(known.cert_path, der=True)
            except FileNotFoundOnCardError:
                continue  # an empty slot: this card is of another layout of the family
            cert = CardCertificate.load(der, f"{known.role} certificate {known.cert_path.hex().upper()}")
            usage = {"non_repudiation"} if known.role == "signature" else {"sign"}
            key = pkcs15.KeyInfo(known.role, bytes((known.key_reference,)), frozenset(usage),
                                 known.key_reference, bytes((known.pin_reference,)), cert.key_algorithm,
                                 cert.key_size, 1 if known.role == "signature" else 0)
            certs.append(Certificate(cert, known.role, key.id, key, pins.get(known.pin_reference),
                                     key_df=known.key_df))
        for path in self.profile.ca_paths:
            try:
                der = self._read_certificate(path, der=True)
            except FileNotFoundOnCardError:
                continue
            label = f"CA certificate {path.hex().upper()}"
            certs.append(Certificate(CardCertificate.load(der, label), label, path[-2:], None, None, True))
        return certs

    def _pkcs15_certificates(self) -> list[Certificate]:
        refs = self._directory("certificates", pkcs15.parse_cdf)
        refs += self._directory("trusted_certificates", pkcs15.parse_cdf)
        keys = {k.id: k for k in self.keys}
        pins = {p.auth_id: p for p in self.pins}
        certs: list[Certificate] = []
        for ref in refs:
            if ref.offset is not None and ref.length is not None:
                der = self._read_certificate(ref.path)[ref.offset:ref.offset + ref.length]
            else:
                der = self._read_certificate(ref.path, der=True)
            cert = CardCertificate.load(der, f"certificate {ref.label!r}")
            key = keys.get(ref.id) if not ref.authority else None
            pin = pins.get(key.auth_id) if key is not None and key.auth_id else None
            # PrKDF does not say which DF a local key lives in (DF.ESIGN's key 82): the profile does.
            key_df = next((k.key_df for k in self.profile.known_keys
                           if key is not None and k.key_reference == key.key_reference), None)
            certs.append(Certificate(cert, ref.label, ref.id, key, pin, ref.authority, key_df))
        return certs

    def chain(self, leaf: Certificate) -> list[CardCertificate]:
        """leaf, then the issuing certificates found on the card, in order (as far as the card has them).

        Built once per leaf while the card stays in: checking the issuers' signatures is the costliest step
        of a warm signature otherwise."""
        chain = self._chains.get(leaf.der)
        if chain is None:
            chain = build_chain(leaf.certificate, [c.certificate for c in self.certificates() if c.role == "ca"])
            if not chain[-1].self_issued:
                log.info("the card has no issuer for %s: the chain ends there (%d certificates)",
                         chain[-1].subject, len(chain))
            self._chains[leaf.der] = chain
        return list(chain)

    # -- PINs ---------------------------------------------------------------------------------
    def pin(self, reference: int) -> pkcs15.PinInfo:
        for pin in self.pins:
            if pin.reference == reference:
                return pin
        raise KeyError(f"no PIN with reference {reference:02X}")

    def puk(self) -> pkcs15.PinInfo | None:
        return next((p for p in self.pins if p.is_puk), None)

    def encode_pin(self, pin: pkcs15.PinInfo, value: str) -> bytes:
        """The PIN block the card expects; refuses bad PINs before they can spend a try."""
        if pin.numeric and not value.isdigit():
            raise InvalidPinFormatError(f"{pin.label}: the PIN must be digits only")
        if not value.isascii() or not value.isprintable():
            raise InvalidPinFormatError(f"{pin.label}: the PIN has characters the card cannot take")
        if not pin.min_length <= len(value) <= pin.max_length:
            raise InvalidPinFormatError(
                f"{pin.label}: the PIN must have {pin.min_length} to {pin.max_length} characters")
        raw = value.encode("ascii")
        block = pin.stored_length if (pin.needs_padding or self.profile.pin_block) else 0
        if block:
            raw = raw.ljust(block, bytes((pin.pad_char,)))
        return raw

    def pin_status(self, pin: pkcs15.PinInfo) -> PinStatus:
        """Tries left, blocked, must-change, without spending a try (GET DATA, else empty VERIFY)."""
        return self._guard(lambda: self._pin_status(pin))

    def _pin_status(self, pin: pkcs15.PinInfo) -> PinStatus:
        self._ensure_app()
        max_tries = self.profile.max_tries
        if self.profile.pin_info == "getdata-df21":
            query = bytes.fromhex("A0038301") + bytes((pin.reference,))
            response = self._transmit(Command(0x00, 0xCB, 0x00, 0xFF, query, le=0, name="GET DATA"))
            if response.ok:
                try:
                    template = find_tlv(parse_tlv(response.data), 0xA0)
                    inner = template.children() if template is not None else []
                    tries_tlv = find_tlv(inner, 0xDF21)
                    changed = find_tlv(inner, 0xDF2F)
                except MalformedResponseError:
                    tries_tlv = changed = None
                if tries_tlv is not None and tries_tlv.value:
                    tries = tries_tlv.value[0]
                    return PinStatus(tries, max_tries, tries == 0,
                                     must_change=changed is not None and changed.value == b"\x00")
        response = self._transmit(Command(0x00, 0x20, 0x00, pin.reference, name="VERIFY (status)"))
        if response.ok:
            return PinStatus(None, max_tries, False, verified=True)
        if 0x63C1 <= response.sw <= 0x63CF:
            return PinStatus(response.sw & 0x0F, max_tries, False, verified=False)
        if response.sw in (0x6983, 0x63C0):
            return PinStatus(0, max_tries, True, verified=False)
        if response.sw == 0x6984:
            return PinStatus(None, max_tries, False, must_change=True, verified=False)
        response.check("VERIFY (status)")
        return PinStatus(None, max_tries, False)

    def pin_verified(self, pin: pkcs15.PinInfo) -> bool:
        """Whether the card still holds ``pin`` as verified (an empty VERIFY: spends no try)."""
        def run() -> bool:
            self._ensure_app()
            return self._transmit(Command(0x00, 0x20, 0x00, pin.reference, name="VERIFY (status)")).ok

        return self._guard(run)

    def verify_pin(self, pin: pkcs15.PinInfo, value: str) -> None:
        """VERIFY once. A wrong PIN raises :class:`WrongPinError` (with tries left); never retried."""
        block = self.encode_pin(pin, value)

        def run() -> None:
            self._ensure_app()
            self._transmit(Command(0x00, 0x20, 0x00, pin.reference, block, name="VERIFY")).check("VERIFY")

        self._guard(run)

    def change_pin(self, pin: pkcs15.PinInfo, old: str, new: str) -> None:
        data = self.encode_pin(pin, old) + self.encode_pin(pin, new)

        def run() -> None:
            self._ensure_app()
            self._transmit(Command(0x00, 0x24, 0x00, pin.reference, data, name="CHANGE REFERENCE DATA")
                           ).check("CHANGE REFERENCE DATA")

        self._guard(run)

    def unblock_pin(self, pin: pkcs15.PinInfo, puk: str, new: str) -> None:
        """RESET RETRY COUNTER with the PUK and a new PIN. A wrong PUK spends the PUK's own tries."""
        puk_info = self.puk() or pin
        puk_block, new_block = self.encode_pin(puk_info, puk), self.encode_pin(pin, new)

        def run() -> None:
            self._ensure_app()
            if self.profile.unblock_style == "verify-puk":
                self._transmit(Command(0x00, 0x20, 0x00, puk_info.reference, puk_block, name="VERIFY")
                               ).check("VERIFY")
                self._transmit(Command(0x00, 0x2C, 0x02, pin.reference, new_block, name="RESET RETRY COUNTER")
                               ).check("RESET RETRY COUNTER")
                return
            self._transmit(Command(0x00, 0x2C, 0x00, pin.reference, puk_block + new_block,
                                   name="RESET RETRY COUNTER")).check("RESET RETRY COUNTER")

        self._guard(run)

    def logout(self) -> None:
        """Drop every verified PIN: re-select the application (FINEID) or reset the card (D68)."""
        def run() -> None:
            if self.profile.aid is not None and self.app_path is None and self.profile.logout_style == "reselect":
                self._app_ready = False
                self._ensure_app()
            else:
                self.transport.reset()
                self._app_ready = False

        self._guard(run)

    # -- signing ------------------------------------------------------------------------------
    def sign_digest(
        self,
        key: pkcs15.KeyInfo | Certificate,
        hash_algorithm: str,
        digest: bytes,
        *,
        pin: str | None = None,
        pss: bool = False,
    ) -> bytes:
        """Sign a precomputed digest on the card; RSA PKCS#1 v1.5 (or PSS) bytes, or ECDSA r||s.

        With ``pin`` the key's PIN is verified first, inside the same card transaction, so no other
        application can slip in between. A wrong PIN raises and nothing is signed.
        """
        cert = key if isinstance(key, Certificate) else self._cert_for(key)
        info = key.key if isinstance(key, Certificate) else key
        if info is None:
            raise FatalCardError("this certificate has no private key on the card")
        hash_entry = hash_by_name(hash_algorithm)
        hash_algorithm = hash_entry.name
        if len(digest) != hash_entry.size:
            raise ValueError(f"a {hash_algorithm} digest has {hash_entry.size} bytes, got {len(digest)}")
        if info.key_reference is None:
            raise FatalCardError(f"key {info.label!r} has no key reference")
        ec_key = info.algorithm == "EC"
        size = info.size or (cert.key_size if cert else 0)
        if ec_key:
            field_bytes = (size + 7) // 8
            expected = 2 * field_bytes
        else:
            expected = size // 8
        pin_info = (cert.pin if cert else None) or self._pin_for(info)
        scheme = "ecdsa" if ec_key else ("pss" if pss else "pkcs1")
        alg = self.profile.algorithm_reference(scheme, hash_algorithm)
        block = self.encode_pin(pin_info, pin) if pin is not None and pin_info is not None else None

        key_df = cert.key_df if cert else None

        def run() -> bytes:
            if key_df is None:
                self._ensure_app()
            else:
                # A key local to another DF (DF.ESIGN): that DF must be current from VERIFY to PSO:CDS.
                self._transmit(Command(0x00, 0xA4, 0x04, 0x0C, key_df, name="SELECT DF")).check("SELECT DF")
                self._app_ready = False
            if block is not None and pin_info is not None:
                self._transmit(Command(0x00, 0x20, 0x00, pin_info.reference, block, name="VERIFY")
                               ).check("VERIFY")
            mse = bytes((0x80, 1, alg, 0x84, 1, info.key_reference)) + self.profile.mse_extra
            self._transmit(Command(0x00, 0x22, self.profile.mse_p1, 0xB6, mse, name="MSE:SET DST")
                           ).check("MSE:SET DST")
            le = expected if 0 < expected < 256 else 0
            if self.profile.sign_style == "hash-then-cds":
                value = digest
                if ec_key and self.profile.ec_hash_pad:
                    value = digest.rjust(self.profile.ec_hash_pad, b"\x00")
                self._transmit(Command(0x00, 0x2A, 0x90, 0xA0, bytes((0x90, len(value))) + value,
                                       name="PSO:HASH")).check("PSO:HASH")
                response = self._transmit(Command(0x00, 0x2A, 0x9E, 0x9A, le=le, name="PSO:CDS"))
            elif self.profile.sign_style == "cds-with-hash":
                response = self._transmit(Command(0x00, 0x2A, 0x9E, 0x9A, digest, le=le, name="PSO:CDS"))
            else:
                data = digest if ec_key or scheme == "pss" else hash_entry.digest_info_prefix + digest
                response = self._transmit(Command(0x00, 0x2A, 0x9E, 0x9A, data, le=le, name="PSO:CDS"))
            return response.check("PSO:CDS").data

        signature = self._guard(run)
        if ec_key and self.profile.ec_signature == "der":
            signature = ecdsa_der_to_raw(signature, (size + 7) // 8)
        if expected and len(signature) != expected:
            raise MalformedResponseError(f"signature has {len(signature)} bytes, expected {expected}")
        if cert is not None and self.cache_state == "cached" and cert.der not in self._cache_proven:
            self._prove_cached(cert, hash_entry, digest, signature, ec_key, pss)
        return signature

    def _prove_cached(self, cert: Certificate, hash_entry: Hash, digest: bytes, signature: bytes, ec_key: bool,
                      pss: bool) -> None:
        """The first signature of a key whose certificate came from the cache is checked against it (once per
        insertion, no APDU): a re-keyed card whose files looked unchanged never gets a signature out under
        its old certificate (D57). On a mismatch the cache entry goes and the token must be opened again."""
        public_key = cert.certificate.public_key
        prehashed = utils.Prehashed(hash_entry.new())
        try:
            if ec_key:
                assert isinstance(public_key, ec.EllipticCurvePublicKey)
                public_key.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(prehashed))
            else:
                assert isinstance(public_key, rsa.RSAPublicKey)
                scheme = (padding.PSS(padding.MGF1(hash_entry.new()), padding.PSS.AUTO) if pss
                          else padding.PKCS1v15())
                public_key.verify(signature, digest, scheme, prehashed)
        except InvalidSignature:
            log.warning("%s: the key does not match the cached %s: the card changed; its cache entry is dropped",
                        self.reader, cert.label)
            assert self.cache is not None
            self.cache.forget(self.serial)
            self.invalidate()
            raise CardRemovedError("the card's keys changed since its certificates were cached: "
                                   "read the card again") from None
        self._cache_proven.add(cert.der)

    def _cert_for(self, key: pkcs15.KeyInfo) -> Certificate | None:
        return next((c for c in self.certificates() if c.key is not None and c.key.id == key.id), None)

    def _pin_for(self, key: pkcs15.KeyInfo) -> pkcs15.PinInfo | None:
        return next((p for p in self.pins if key.auth_id and p.auth_id == key.auth_id), None)


__all__ = [
    "PIN_ON_READER",
    "CardToken",
    "Certificate",
    "PinStatus",
    "Token",
    "pin_on_reader",
]
