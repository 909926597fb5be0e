"""The few Cryptoki calls python-pkcs11 does not offer on an open session, made through the module's own
function list with ctypes (F37).

python-pkcs11 logs in only while it opens a session, has no C_Login with a NULL PIN after C_SignInit (the
context-specific login of a key with CKA_ALWAYS_AUTHENTICATE on a pinpad) and no C_GetSessionInfo. This
module calls exactly those, and C_SignInit/C_Sign so that the context-specific login can sit between them,
on the handles python-pkcs11 opened: dlopen of the same path gives the same library, so the function list
is the one python-pkcs11 initialised (no second C_Initialize).

The layout is the PKCS#11 v2.40 ``CK_FUNCTION_LIST`` (a version, then function pointers in the standard's
order) with Unix alignment (no packing); CK_ULONG is a C ``unsigned long``.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

CK_ULONG = ctypes.c_ulong
CK_RV = CK_ULONG

# Return values this layer tells apart (PKCS#11 v2.40, pkcs11t.h).
CKR_OK = 0x000
CKR_GENERAL_ERROR = 0x005
CKR_SLOT_ID_INVALID = 0x003
CKR_DEVICE_ERROR = 0x030
CKR_DEVICE_REMOVED = 0x032
CKR_FUNCTION_CANCELED = 0x050
CKR_FUNCTION_NOT_SUPPORTED = 0x054
CKR_KEY_FUNCTION_NOT_PERMITTED = 0x068
CKR_MECHANISM_INVALID = 0x070
CKR_MECHANISM_PARAM_INVALID = 0x071
CKR_PIN_INCORRECT = 0x0A0
CKR_PIN_INVALID = 0x0A1
CKR_PIN_LEN_RANGE = 0x0A2
CKR_PIN_EXPIRED = 0x0A3
CKR_PIN_LOCKED = 0x0A4
CKR_SESSION_CLOSED = 0x0B0
CKR_SESSION_HANDLE_INVALID = 0x0B3
CKR_TOKEN_NOT_PRESENT = 0x0E0
CKR_TOKEN_NOT_RECOGNIZED = 0x0E1
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_NOT_LOGGED_IN = 0x101
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_BUFFER_TOO_SMALL = 0x150
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190

CKU_SO = 0
CKU_USER = 1
CKU_CONTEXT_SPECIFIC = 2

CKS_RO_USER_FUNCTIONS = 1
CKS_RW_USER_FUNCTIONS = 3

# Token flags (CK_TOKEN_INFO.flags).
CKF_LOGIN_REQUIRED = 0x00000004
CKF_USER_PIN_INITIALIZED = 0x00000008
CKF_PROTECTED_AUTHENTICATION_PATH = 0x00000100
CKF_TOKEN_INITIALIZED = 0x00000400
CKF_USER_PIN_COUNT_LOW = 0x00010000
CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000
CKF_USER_PIN_TO_BE_CHANGED = 0x00080000

# Mechanisms and their parameters.
CKM_RSA_PKCS = 0x0001
CKM_RSA_PKCS_PSS = 0x000D
CKM_ECDSA = 0x1041
PSS_HASH = {"SHA1": (0x0220, 1), "SHA224": (0x0255, 5), "SHA256": (0x0250, 2), "SHA384": (0x0260, 3),
            "SHA512": (0x0270, 4)}  # hash name -> (CKM_SHAxxx, CKG_MGF1_SHAxxx)

_NAMES = {  # rv -> name, for messages
    value: name for name, value in globals().items() if name.startswith("CKR_") and isinstance(value, int)
}

# CK_FUNCTION_LIST after its CK_VERSION: C_Initialize is 0, ... in the standard's order.
_INDEX = {"C_GetTokenInfo": 6, "C_SetPIN": 11, "C_GetSessionInfo": 15, "C_Login": 18, "C_Logout": 19, "C_SignInit": 42,
          "C_Sign": 43}
_SIGN_BUFFER = 4096  # bytes: an RSA-32768 signature fits; one C_Sign call, no size query


class CryptokiError(Exception):
    """A Cryptoki call returned ``rv`` (the card layer maps it to its own errors)."""

    def __init__(self, function: str, rv: int):
        self.function = function
        self.rv = rv
        super().__init__(f"{function}: {rv_name(rv)}")


def rv_name(rv: int) -> str:
    return _NAMES.get(rv, f"CKR 0x{rv:08X}")


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_ubyte), ("minor", ctypes.c_ubyte))


class _FunctionList(ctypes.Structure):
    _fields_ = (("version", _Version), ("functions", ctypes.c_void_p * (max(_INDEX.values()) + 1)))


class _TokenInfo(ctypes.Structure):
    _fields_ = (
        ("label", ctypes.c_char * 32), ("manufacturerID", ctypes.c_char * 32), ("model", ctypes.c_char * 16),
        ("serialNumber", ctypes.c_char * 16), ("flags", CK_ULONG),
        ("ulMaxSessionCount", CK_ULONG), ("ulSessionCount", CK_ULONG), ("ulMaxRwSessionCount", CK_ULONG),
        ("ulRwSessionCount", CK_ULONG), ("ulMaxPinLen", CK_ULONG), ("ulMinPinLen", CK_ULONG),
        ("ulTotalPublicMemory", CK_ULONG), ("ulFreePublicMemory", CK_ULONG), ("ulTotalPrivateMemory", CK_ULONG),
        ("ulFreePrivateMemory", CK_ULONG), ("hardwareVersion", _Version), ("firmwareVersion", _Version),
        ("utcTime", ctypes.c_char * 16),
    )


class _SessionInfo(ctypes.Structure):
    _fields_ = (("slotID", CK_ULONG), ("state", CK_ULONG), ("flags", CK_ULONG), ("ulDeviceError", CK_ULONG))


class _Mechanism(ctypes.Structure):
    _fields_ = (("mechanism", CK_ULONG), ("pParameter", ctypes.c_void_p), ("ulParameterLen", CK_ULONG))


class _PssParams(ctypes.Structure):
    _fields_ = (("hashAlg", CK_ULONG), ("mgf", CK_ULONG), ("sLen", CK_ULONG))


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").rstrip(" \0")


@dataclass(frozen=True)
class TokenInfo:
    """CK_TOKEN_INFO, the fields this project reads."""

    label: str
    manufacturer: str
    model: str
    serial: str
    flags: int
    min_pin: int
    max_pin: int


class Cryptoki:
    """The handful of calls above, on one loaded module (the caller serialises calls per module)."""

    def __init__(self, path: str):
        self._dll = ctypes.CDLL(path)  # the library python-pkcs11 loaded: same handle, same state
        get = self._dll.C_GetFunctionList
        get.restype = CK_RV
        get.argtypes = (ctypes.POINTER(ctypes.POINTER(_FunctionList)),)
        table = ctypes.POINTER(_FunctionList)()
        rv = get(ctypes.byref(table))
        if rv != CKR_OK or not table:
            raise CryptokiError("C_GetFunctionList", rv)
        functions = table.contents.functions
        ulong, ptr = CK_ULONG, ctypes.c_void_p
        proto = ctypes.CFUNCTYPE
        self._get_token_info = proto(CK_RV, ulong, ctypes.POINTER(_TokenInfo))(functions[_INDEX["C_GetTokenInfo"]])
        self._get_session_info = proto(CK_RV, ulong, ctypes.POINTER(_SessionInfo))(
            functions[_INDEX["C_GetSessionInfo"]])
        self._login = proto(CK_RV, ulong, ulong, ctypes.c_char_p, ulong)(functions[_INDEX["C_Login"]])
        self._logout = proto(CK_RV, ulong)(functions[_INDEX["C_Logout"]])
        self._set_pin = proto(CK_RV, ulong, ctypes.c_char_p, ulong, ctypes.c_char_p, ulong)(
            functions[_INDEX["C_SetPIN"]])
        self._sign_init = proto(CK_RV, ulong, ctypes.POINTER(_Mechanism), ulong)(functions[_INDEX["C_SignInit"]])
        self._sign = proto(CK_RV, ulong, ptr, ulong, ptr, ctypes.POINTER(ulong))(functions[_INDEX["C_Sign"]])

    @staticmethod
    def _check(function: str, rv: int) -> None:
        if rv != CKR_OK:
            raise CryptokiError(function, rv)

    def token_info(self, slot: int) -> TokenInfo:
        info = _TokenInfo()
        self._check("C_GetTokenInfo", self._get_token_info(slot, ctypes.byref(info)))
        return TokenInfo(_text(info.label), _text(info.manufacturerID), _text(info.model),
                         _text(info.serialNumber), info.flags, info.ulMinPinLen, info.ulMaxPinLen)

    def logged_in(self, session: int) -> bool:
        """Whether the user is logged in on the session's token (C_GetSessionInfo's state)."""
        info = _SessionInfo()
        self._check("C_GetSessionInfo", self._get_session_info(session, ctypes.byref(info)))
        return info.state in (CKS_RO_USER_FUNCTIONS, CKS_RW_USER_FUNCTIONS)

    def login(self, session: int, user_type: int, pin: str | None) -> None:
        """C_Login; ``pin`` None is a NULL PIN: the PIN is entered on the reader (protected path)."""
        if pin is None:
            rv = self._login(session, user_type, None, 0)
        else:
            raw = pin.encode("utf-8")
            rv = self._login(session, user_type, raw, len(raw))
        self._check("C_Login", rv)

    def set_pin(self, session: int, old: str, new: str) -> None:
        """C_SetPIN of the user PIN (the session must be read/write)."""
        old_raw, new_raw = old.encode("utf-8"), new.encode("utf-8")
        self._check("C_SetPIN", self._set_pin(session, old_raw, len(old_raw), new_raw, len(new_raw)))

    def logout(self, session: int) -> None:
        rv = self._logout(session)
        if rv not in (CKR_OK, CKR_USER_NOT_LOGGED_IN):
            raise CryptokiError("C_Logout", rv)

    def sign_init(self, session: int, key: int, mechanism: int, pss: tuple[int, int, int] | None = None) -> None:
        params = _PssParams(*pss) if pss else None
        mech = _Mechanism(mechanism, ctypes.cast(ctypes.byref(params), ctypes.c_void_p) if params else None,
                          ctypes.sizeof(params) if params else 0)
        self._check("C_SignInit", self._sign_init(session, ctypes.byref(mech), key))

    def sign(self, session: int, data: bytes) -> bytes:
        out = ctypes.create_string_buffer(_SIGN_BUFFER)
        length = CK_ULONG(_SIGN_BUFFER)
        source = ctypes.create_string_buffer(data, len(data))
        self._check("C_Sign", self._sign(session, ctypes.cast(source, ctypes.c_void_p), len(data),
                                         ctypes.cast(out, ctypes.c_void_p), ctypes.byref(length)))
        return out.raw[:length.value]
