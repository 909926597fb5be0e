"""Loaded PKCS#11 modules: one python-pkcs11 ``lib`` and one :class:`~card.pkcs11.cryptoki.Cryptoki` per path
in the process, shared by every user and counted, so the last user's release finalises the module.

C_Initialize is called without locking callbacks, which tells the module that the application does not
call it from several threads at once: every call into a module goes through its :attr:`Module.lock`.
Finalising at the last release also means the next start reads the module's configuration again
(SoftHSM2's ``SOFTHSM2_CONF`` is read by C_Initialize).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from card.errors import CardError
from card.pkcs11.cryptoki import Cryptoki

log = logging.getLogger(__name__)


class ModuleError(CardError):
    """A PKCS#11 module that cannot be loaded or initialised; the message names its path."""


@dataclass
class Module:
    """One loaded and initialised module."""

    path: str
    lib: Any  # pkcs11._pkcs11.lib
    cryptoki: Cryptoki
    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 0

    @property
    def name(self) -> str:
        return Path(self.path).name


_modules: dict[str, Module] = {}
_registry_lock = threading.Lock()


def acquire(path: str | os.PathLike[str]) -> Module:
    """Load and initialise the module at ``path`` (or count one more user of it); ModuleError names the path."""
    key = os.fspath(path)
    with _registry_lock:
        module = _modules.get(key)
        if module is None:
            module = _load(key)
            _modules[key] = module
        elif not module.lib.initialized:
            with module.lock:
                try:
                    module.lib.initialize()
                except Exception as exc:
                    raise ModuleError(f"PKCS#11 module {key}: C_Initialize failed: {exc}") from exc
        module.users += 1
        return module


def _load(path: str) -> Module:
    if not os.path.isfile(path):
        raise ModuleError(f"PKCS#11 module {path}: no such file")
    try:
        import pkcs11
    except ImportError as exc:  # a dependency, but say what is missing rather than fail obscurely
        raise ModuleError(f"PKCS#11 module {path}: python-pkcs11 is not installed ({exc})") from exc
    try:
        lib = pkcs11.lib(path)
    except Exception as exc:  # python-pkcs11 raises PKCS11Error or RuntimeError subclasses, OSError texts
        raise ModuleError(f"PKCS#11 module {path}: cannot load it: {exc}") from exc
    try:
        cryptoki = Cryptoki(path)
    except Exception as exc:
        raise ModuleError(f"PKCS#11 module {path}: no usable function list: {exc}") from exc
    log.info("PKCS#11 module %s loaded: %s %s", path, lib.manufacturer_id, lib.library_description)
    return Module(path, lib, cryptoki)


def release(module: Module) -> None:
    """One user fewer; the last one finalises the module (its sessions and logins end)."""
    with _registry_lock:
        module.users -= 1
        if module.users > 0:
            return
        module.users = 0
        with module.lock:
            try:
                module.lib.finalize()
            except Exception as exc:
                log.info("PKCS#11 module %s: C_Finalize: %s", module.path, exc)
