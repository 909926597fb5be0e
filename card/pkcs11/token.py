"""One PKCS#11 token as the rest of the code sees a card (:class:`card.token.CardToken`): certificates paired
with private keys by CKA_ID, the chain from the token's CA certificates, PIN status from the token flags,
logins, and signatures over our own digest (D60, D61).

PINs: the user PIN (CKU_USER) plays PIN1 (may be reused per origin by the caller's rules); a key with
CKA_ALWAYS_AUTHENTICATE needs a CKU_CONTEXT_SPECIFIC login for every signature and plays PIN2 (never
reused). Both are the same PIN on the token, so they share one label and one counter. A token with
CKF_PROTECTED_AUTHENTICATION_PATH takes the PIN on the reader: a login without a PIN (D62).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from card import pkcs15
from card.certificate import CardCertificate, build_chain
from card.crypto import ecdsa_der_to_raw, hash_by_name
from card.errors import (
    CardError,
    CardRemovedError,
    FatalCardError,
    InvalidPinFormatError,
    MalformedResponseError,
    PinBlockedError,
    PinInvalidatedError,
    PinpadError,
    SecurityStatusNotSatisfied,
    UnsupportedCardError,
    WrongPinError,
)
from card.pkcs11 import cryptoki as ck
from card.pkcs11.module import Module
from card.profiles import CardProfile
from card.token import PIN_ON_READER, Certificate, PinStatus, sorted_by_role

log = logging.getLogger(__name__)

T = TypeVar("T")

PKCS11_PROFILE = CardProfile(
    name="pkcs11",
    description="A token reached through a PKCS#11 module (the module talks to the card, not us)",
    aid=None,
    pin_block=0,
    max_tries=None,  # PKCS#11 says only "low", "final try" and "locked"
    tested="SoftHSM2 tokens (RSA-2048/3072, P-256/384) and OpenSC on the virtual FINEID card",
)

USER_PIN_REFERENCE = 1  # PinInfo.reference of the CKU_USER login
CONTEXT_PIN_REFERENCE = 2  # ... of the CKU_CONTEXT_SPECIFIC login (keys with CKA_ALWAYS_AUTHENTICATE)
PIN_LABEL = "User PIN"
_REMOVED = {ck.CKR_DEVICE_REMOVED, ck.CKR_TOKEN_NOT_PRESENT, ck.CKR_SESSION_HANDLE_INVALID, ck.CKR_SESSION_CLOSED,
            ck.CKR_SLOT_ID_INVALID, ck.CKR_TOKEN_NOT_RECOGNIZED, ck.CKR_CRYPTOKI_NOT_INITIALIZED}
_CKO_CERTIFICATE, _CKO_PUBLIC_KEY, _CKO_PRIVATE_KEY = 1, 2, 3


def reader_name(slot_description: str, module: Module) -> str:
    """What a slot is called wherever a reader name is shown or used as a key."""
    return f"{slot_description.strip() or 'slot'} (PKCS#11: {module.name})"


class Pkcs11Token:
    """A token in one slot of one module. Not thread-safe by itself; every module call holds the module's lock."""

    profile = PKCS11_PROFILE
    atr = b""  # the module does not tell; PC/SC may, under the reader's own name
    blocking = True  # a module call may wait on a device (or on the user at a pinpad)

    def __init__(self, module: Module, slot: Any, reader: str, info: ck.TokenInfo):
        self.module = module
        self.slot = slot  # python-pkcs11 Slot
        self.slot_id: int = slot.slot_id
        self.reader = reader
        self.info = info
        self.removed = False
        self._session: Any = None
        self._certs: list[Certificate] | None = None
        self._chains: dict[bytes, list[CardCertificate]] = {}

    # -- what a card token shows ----------------------------------------------------------------
    @property
    def serial(self) -> str:
        return self.info.serial

    @property
    def label(self) -> str:
        return self.info.label

    @property
    def token_info(self) -> pkcs15.TokenInfoData:
        return pkcs15.TokenInfoData(version=0, serial=self.info.serial, label=self.info.label,
                                    manufacturer=self.info.manufacturer)

    @property
    def protected_path(self) -> bool:
        return bool(self.info.flags & ck.CKF_PROTECTED_AUTHENTICATION_PATH)

    @property
    def loaded(self) -> bool:
        return self._certs is not None

    def close(self) -> None:
        """End the session (and with the last one, the login); the token object is unusable afterwards."""
        self.invalidate()

    def invalidate(self) -> None:
        self.removed = True
        self._certs = None
        self._chains.clear()
        session, self._session = self._session, None
        if session is not None:
            with self.module.lock:
                try:
                    session.close()
                except Exception as exc:  # a removed token's session is gone already
                    log.debug("%s: closing the session: %s", self.reader, exc)

    # -- module calls ---------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the module's lock with errors mapped to the card layer's (the one place)."""
        if self.removed:
            raise CardRemovedError(f"{self.reader}: the token was removed; open it again")
        with self.module.lock:
            try:
                return fn()
            except CardError:
                raise
            except ck.CryptokiError as exc:
                if exc.function == "C_GetTokenInfo":  # SoftHSM2 on a deleted token: CKR_GENERAL_ERROR (F38)
                    self.invalidate()
                    raise CardRemovedError(f"{self.reader}: the token is gone ({exc})") from None
                raise self._error(exc.rv, str(exc)) from None
            except Exception as exc:  # python-pkcs11's exceptions
                rv = _rv_of(exc)
                raise self._error(rv, f"{type(exc).__name__}: {exc}".rstrip(": ")) from None

    def _error(self, rv: int | None, text: str) -> CardError:
        if rv in _REMOVED:
            self.invalidate()
            return CardRemovedError(f"{self.reader}: the token is gone ({text})")
        if rv == ck.CKR_PIN_INCORRECT:
            return self._wrong_pin()
        if rv == ck.CKR_PIN_LOCKED:
            return PinBlockedError(0x6983, "PIN blocked", "C_Login")
        if rv in (ck.CKR_PIN_INVALID, ck.CKR_PIN_LEN_RANGE):
            return InvalidPinFormatError(f"{PIN_LABEL}: the token does not accept this PIN ({ck.rv_name(rv)})",
                                         command="C_Login")
        if rv == ck.CKR_PIN_EXPIRED:
            return PinInvalidatedError(0x6984, "the PIN has expired: change it first", "C_Login")
        if rv == ck.CKR_FUNCTION_CANCELED:
            return PinpadError(0x6401, "PIN entry cancelled on the reader", "C_Login")
        if rv in (ck.CKR_MECHANISM_INVALID, ck.CKR_KEY_FUNCTION_NOT_PERMITTED):
            return FatalCardError(f"{self.reader}: the module cannot sign with this key this way ({text})")
        if rv == ck.CKR_USER_NOT_LOGGED_IN:
            return SecurityStatusNotSatisfied(0x6982, "the token wants the PIN", "C_Sign")
        return FatalCardError(f"{self.reader}: PKCS#11 {text}")

    def _wrong_pin(self) -> CardError:
        """CKR_PIN_INCORRECT with what the flags say of the tries left: 1 on the final try, else unknown."""
        try:
            flags = self.module.cryptoki.token_info(self.slot_id).flags
        except ck.CryptokiError:
            flags = 0
        if flags & ck.CKF_USER_PIN_LOCKED:
            return PinBlockedError(0x6983, "PIN blocked", "C_Login")
        return WrongPinError(0x6300, 1 if flags & ck.CKF_USER_PIN_FINAL_TRY else None, "C_Login")

    def _open(self) -> Any:
        if self._session is None:
            self._session = self.slot.get_token().open(attribute_mapper=_mapper())
        return self._session

    # -- certificates ---------------------------------------------------------------------------
    def certificates(self) -> list[Certificate]:
        """Certificates with their keys and PIN: keyed leaves first (authentication, signature), then CAs."""
        if self._certs is None:
            self._certs = self._call(self._load)
        return self._certs

    def _load(self) -> list[Certificate]:
        from pkcs11 import Attribute

        session = self._open()
        self.info = self.module.cryptoki.token_info(self.slot_id)
        keys = self._private_keys(session)
        public_ids = {_id(o) for o in session.get_objects({Attribute.CLASS: _CKO_PUBLIC_KEY})}
        user_pin, context_pin = self._pins()
        certs: list[Certificate] = []
        for obj in session.get_objects({Attribute.CLASS: _CKO_CERTIFICATE}):
            try:
                der = bytes(obj[Attribute.VALUE])
            except Exception as exc:
                log.info("%s: a certificate without a readable value (%s)", self.reader, exc)
                continue
            cka_id, label = _id(obj), _attr(obj, Attribute.LABEL, "") or "certificate"
            try:
                cert = CardCertificate.load(der, f"certificate {label!r}")
            except CardError as exc:
                log.warning("%s: certificate %r skipped: %s", self.reader, label, exc)
                continue
            authority = _attr(obj, Attribute.CERTIFICATE_CATEGORY, 0) == 2
            key = pin = None
            # A public key with the certificate's CKA_ID stands for a private key hidden until login, but not for
            # a CA certificate: OpenSC makes a public key object for every certificate.
            if not authority and cka_id and (cka_id in keys or (cka_id in public_ids and not cert.is_ca)):
                always = keys[cka_id][1] if cka_id in keys else None
                if always is None:  # the private key is hidden until login: a signature key is guessed PIN2-like
                    always = "non_repudiation" in cert.key_usage
                usage = {"sign"} | ({"non_repudiation"} if "non_repudiation" in cert.key_usage else set())
                key = pkcs15.KeyInfo(label, cka_id, frozenset(usage), None, b"\x02" if always else b"\x01",
                                     cert.key_algorithm, cert.key_size, 1 if always else 0)
                pin = context_pin if always else user_pin
            certs.append(Certificate(cert, label, cka_id, key, pin, authority or (key is None and cert.is_ca)))
        return sorted_by_role(certs)

    def _private_keys(self, session: Any) -> dict[bytes, tuple[int, bool]]:
        """CKA_ID -> (handle, CKA_ALWAYS_AUTHENTICATE) of the private keys visible now (some modules show
        them only after login)."""
        from pkcs11 import Attribute

        out = {}
        for obj in session.get_objects({Attribute.CLASS: _CKO_PRIVATE_KEY}):
            out[_id(obj)] = (obj.handle, bool(_attr(obj, Attribute.ALWAYS_AUTHENTICATE, False)))
        return out

    def _pins(self) -> tuple[pkcs15.PinInfo, pkcs15.PinInfo]:
        flags = frozenset({PIN_ON_READER}) if self.protected_path else frozenset()
        low, high = max(self.info.min_pin, 1), self.info.max_pin or 64
        high = max(min(high, 64), low)  # SoftHSM2 says 255: a dialog field needs no more than 64
        user = pkcs15.PinInfo(PIN_LABEL, b"\x01", USER_PIN_REFERENCE, low, high, high, "utf8", flags=flags)
        return user, replace(user, auth_id=b"\x02", reference=CONTEXT_PIN_REFERENCE)

    def chain(self, leaf: Certificate) -> list[CardCertificate]:
        """leaf, then its issuers among the token's CA certificates, as far as the token has them."""
        chain = self._chains.get(leaf.der)
        if chain is None:
            chain = build_chain(leaf.certificate, [c.certificate for c in self.certificates() if c.role == "ca"])
            self._chains[leaf.der] = chain
        return list(chain)

    # -- PINs -----------------------------------------------------------------------------------
    def pin_status(self, pin: pkcs15.PinInfo) -> PinStatus:
        """From the token flags: blocked when locked, 1 try on the final try, else unknown (never a guess)."""
        def run() -> PinStatus:
            self.info = info = self.module.cryptoki.token_info(self.slot_id)
            locked = bool(info.flags & ck.CKF_USER_PIN_LOCKED)
            tries = 0 if locked else (1 if info.flags & ck.CKF_USER_PIN_FINAL_TRY else None)
            verified = None if self._session is None else self._logged_in(pin)
            return PinStatus(tries, None, locked, bool(info.flags & ck.CKF_USER_PIN_TO_BE_CHANGED), verified)

        return self._call(run)

    def _logged_in(self, pin: pkcs15.PinInfo) -> bool:
        if pin.reference == CONTEXT_PIN_REFERENCE or self._session is None:
            return False  # a context-specific login lasts one signature
        return self.module.cryptoki.logged_in(self._session.handle)

    def pin_verified(self, pin: pkcs15.PinInfo) -> bool:
        """Whether the user is logged in (a context-specific PIN never counts as verified)."""
        return self._call(lambda: self._logged_in(pin))

    def verify_pin(self, pin: pkcs15.PinInfo, value: str | None) -> None:
        """Log in as the user with ``value`` (None: on the reader), after logging out: the PIN is checked now."""
        def run() -> None:
            session = self._open()
            self.module.cryptoki.logout(session.handle)
            self.module.cryptoki.login(session.handle, ck.CKU_USER, value)

        self._call(run)

    def logout(self) -> None:
        if self._session is None or self.removed:
            return
        self._call(lambda: self.module.cryptoki.logout(self._session.handle))

    def puk(self) -> pkcs15.PinInfo | None:
        """None: a PKCS#11 user PIN is unblocked by the token's security officer (C_InitPIN), not with a PUK."""
        return None

    def change_pin(self, pin: pkcs15.PinInfo, old: str, new: str) -> None:
        """C_SetPIN of the user PIN in a read/write session of its own (both PIN kinds are the one user PIN)."""
        def run() -> None:
            session = self.slot.get_token().open(rw=True)
            try:
                self.module.cryptoki.set_pin(session.handle, old, new)
            finally:
                session.close()

        self._call(run)

    def unblock_pin(self, pin: pkcs15.PinInfo, puk: str, new: str) -> None:
        raise UnsupportedCardError(f"{self.reader}: a PKCS#11 token's PIN is unblocked by its security officer "
                                   "with the token's own tools, not with a PUK here")

    # -- signing --------------------------------------------------------------------------------
    def sign_digest(self, key: Certificate, hash_algorithm: str, digest: bytes, *, pin: str | None = None,
                    pss: bool = False) -> bytes:
        """Sign our digest: CKM_ECDSA (raw r||s back), CKM_RSA_PKCS over the DigestInfo we build, or
        CKM_RSA_PKCS_PSS (salt = hash length). No hashing on the token.

        Logs in first: with ``pin`` (after a logout, so the PIN is checked now), on the reader when the token
        has a protected path and no PIN is given, or not at all when the user is logged in already. A key with
        CKA_ALWAYS_AUTHENTICATE then gets its context-specific login between C_SignInit and C_Sign, every time.
        """
        if key.key is None:
            raise FatalCardError("this certificate has no private key on the token")
        entry = hash_by_name(hash_algorithm)
        if len(digest) != entry.size:
            raise ValueError(f"a {entry.name} digest has {entry.size} bytes, got {len(digest)}")
        ec_key = key.key_algorithm == "EC"
        size = key.key_size
        expected = 2 * ((size + 7) // 8) if ec_key else size // 8
        if ec_key:
            mechanism, data, params = ck.CKM_ECDSA, digest, None
        elif pss:
            hash_mech, mgf = ck.PSS_HASH[entry.name]
            mechanism, data, params = ck.CKM_RSA_PKCS_PSS, digest, (hash_mech, mgf, entry.size)
        else:
            mechanism, data, params = ck.CKM_RSA_PKCS, entry.digest_info_prefix + digest, None

        def run() -> bytes:
            session = self._open()
            api, handle = self.module.cryptoki, session.handle
            if pin is not None:
                api.logout(handle)
                api.login(handle, ck.CKU_USER, pin)
            elif not api.logged_in(handle):
                if not self.protected_path:
                    raise SecurityStatusNotSatisfied(0x6982, "the token wants the PIN", "C_Login")
                api.login(handle, ck.CKU_USER, None)
            keys = self._private_keys(session)  # after login: a module may show its keys only now
            if key.id not in keys:
                raise FatalCardError(f"{self.reader}: no private key with CKA_ID {key.id.hex()} on the token")
            key_handle, always = keys[key.id]
            if always != (key.pin is not None and key.pin.reference == CONTEXT_PIN_REFERENCE):
                self._certs = None  # what we guessed before login was wrong: list the certificates again
            if always and pin is None and not self.protected_path:
                raise SecurityStatusNotSatisfied(0x6982, "this key wants its PIN for every signature", "C_Login")
            api.sign_init(handle, key_handle, mechanism, params)
            try:
                if always:
                    api.login(handle, ck.CKU_CONTEXT_SPECIFIC, pin)
                return api.sign(handle, data)
            except ck.CryptokiError:
                self._end_session()  # the signing operation may still be active: this ends it
                raise

        signature = self._call(run)
        if ec_key and len(signature) != expected and signature[:1] == b"\x30":
            signature = ecdsa_der_to_raw(signature, (size + 7) // 8)  # a module that answers DER
        if len(signature) != expected:
            raise MalformedResponseError(f"signature has {len(signature)} bytes, expected {expected}")
        return signature

    def _end_session(self) -> None:
        session, self._session = self._session, None
        try:
            session.close()
        except Exception as exc:
            log.debug("%s: closing the session: %s", self.reader, exc)


def _mapper() -> Any:
    """python-pkcs11's attribute mapper, taught CKA_CERTIFICATE_CATEGORY (a CK_ULONG it has no handler for)."""
    from pkcs11 import Attribute
    from pkcs11.attributes import AttributeMapper, handle_ulong

    mapper = AttributeMapper()
    mapper.register_handler(Attribute.CERTIFICATE_CATEGORY, *handle_ulong)
    return mapper


def _id(obj: Any) -> bytes:
    from pkcs11 import Attribute

    value = _attr(obj, Attribute.ID, b"")
    return bytes(value or b"")


def _attr(obj: Any, attribute: Any, default: Any) -> Any:
    """An attribute, or ``default`` where the module does not have it for this object."""
    try:
        return obj[attribute]
    except Exception:
        return default


def _rv_of(exc: Exception) -> int | None:
    """The CKR code behind a python-pkcs11 exception, where its class says it."""
    names = {
        "TokenNotPresent": ck.CKR_TOKEN_NOT_PRESENT, "DeviceRemoved": ck.CKR_DEVICE_REMOVED,
        "SessionHandleInvalid": ck.CKR_SESSION_HANDLE_INVALID, "SessionClosed": ck.CKR_SESSION_CLOSED,
        "SlotIDInvalid": ck.CKR_SLOT_ID_INVALID, "TokenNotRecognised": ck.CKR_TOKEN_NOT_RECOGNIZED,
        "PinIncorrect": ck.CKR_PIN_INCORRECT, "PinLocked": ck.CKR_PIN_LOCKED, "PinLenRange": ck.CKR_PIN_LEN_RANGE,
        "PinInvalid": ck.CKR_PIN_INVALID, "UserNotLoggedIn": ck.CKR_USER_NOT_LOGGED_IN,
        "FunctionCancelled": ck.CKR_FUNCTION_CANCELED, "CryptokiNotInitialized": ck.CKR_CRYPTOKI_NOT_INITIALIZED,
    }
    return names.get(type(exc).__name__)
