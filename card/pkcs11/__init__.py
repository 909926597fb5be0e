"""Tokens through PKCS#11 modules (OpenSC, DigiSign's libcryptoki, vendor modules, SoftHSM2), beside our own
APDU driver: :class:`Pkcs11Source` lists the slots with tokens and :class:`Pkcs11Token` presents each one with
the :class:`card.token.CardToken` interface (D60–D64). python-pkcs11 loads the modules; a small ctypes layer
(:mod:`.cryptoki`) makes the logins and signatures it cannot (F37)."""

from __future__ import annotations

from card.pkcs11.module import ModuleError
from card.pkcs11.source import Pkcs11Source
from card.pkcs11.token import PKCS11_PROFILE, Pkcs11Token

__all__ = ["PKCS11_PROFILE", "ModuleError", "Pkcs11Source", "Pkcs11Token"]
