"""PKCS#11 modules as a source of tokens beside the PC/SC readers: which slots hold a token now, and events
when one comes or goes, so the card manager and ``/version`` stay current (D64).

Tokens are polled every ``refresh_interval`` seconds (DigiSign's ``buildReaderListTimer``): C_GetSlotList
with tokens present, then C_GetTokenInfo per slot. C_WaitForSlotEvent is not used: python-pkcs11 0.10 fails
after a real event, a blocking wait cannot be cancelled portably, and SoftHSM2 does not implement it (F37,
F38). A module that fails to load or initialise is a warning naming its path; the others keep working.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable

from card.errors import NoCardError
from card.pkcs11 import cryptoki as ck
from card.pkcs11.module import Module, ModuleError, acquire, release
from card.pkcs11.token import Pkcs11Token, reader_name
from card.readers import ReaderEvent

log = logging.getLogger(__name__)


class Pkcs11Source:
    """The tokens of one or more PKCS#11 modules, by the reader name each is shown under. Thread-safe."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], refresh_interval: float = 5.0):
        self.paths = list(dict.fromkeys(os.fspath(p) for p in paths))
        self.refresh_interval = max(0.2, refresh_interval)
        self._modules: list[Module] = []
        self._problems: dict[str, str] = {}
        self._tokens: dict[str, Pkcs11Token] = {}
        self._identity: dict[str, tuple[object, ...]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._settled = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_event: Callable[[ReaderEvent], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, on_event: Callable[[ReaderEvent], None]) -> None:
        """Load the modules and watch their slots on a thread (loading OpenSC scans the readers: not here)."""
        if self._thread is not None:
            return
        self._on_event = on_event
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pkcs11-slots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
        with self._lock:
            tokens, self._tokens, self._identity = list(self._tokens.values()), {}, {}
            modules, self._modules = self._modules, []
        for token in tokens:
            token.close()
        for module in modules:
            release(module)
        self._settled.clear()

    def _run(self) -> None:
        for path in self.paths:
            try:
                self._modules.append(acquire(path))
            except ModuleError as exc:
                log.warning("%s; the other token sources keep working", exc)
                with self._lock:
                    self._problems[path] = str(exc)
        while not self._stop.is_set():
            self.refresh()
            self._settled.set()
            self._stop.wait(self.refresh_interval)

    # -- polling --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """One look at every module's slots; events for the tokens that came or went since the last look."""
        found: dict[str, tuple[Module, object, ck.TokenInfo]] = {}
        for module in list(self._modules):
            found.update(self._scan(module))
        events: list[ReaderEvent] = []
        gone: list[Pkcs11Token] = []
        with self._lock:
            for name in list(self._tokens):
                module, slot, info = found.get(name, (None, None, None))
                if module is None or self._identity[name] != _identity(module, slot, info):
                    gone.append(self._tokens.pop(name))
                    del self._identity[name]
                    events.append(ReaderEvent("card-removed", name))
            for name, (module, slot, info) in found.items():
                if name not in self._tokens:
                    self._tokens[name] = Pkcs11Token(module, slot, name, info)
                    self._identity[name] = _identity(module, slot, info)
                    events.append(ReaderEvent("card-inserted", name))
        for token in gone:  # outside our lock: this takes the module's (lock order: module, then source)
            token.invalidate()
        for event in events:
            log.info("%s: %s", event.kind, event.reader)
            if self._on_event is not None:
                try:
                    self._on_event(event)
                except Exception:
                    log.exception("PKCS#11 event callback failed")

    def _scan(self, module: Module) -> dict[str, tuple[Module, object, ck.TokenInfo]]:
        slots: list[tuple[object, ck.TokenInfo]] = []
        with module.lock:
            try:
                present = module.lib.get_slots(token_present=True)
            except Exception as exc:
                present, problem = None, f"PKCS#11 module {module.path}: C_GetSlotList failed: {exc}"
            for slot in present or ():
                try:
                    info = module.cryptoki.token_info(slot.slot_id)
                except ck.CryptokiError as exc:  # a deleted SoftHSM2 token still has a slot (F38)
                    log.debug("%s slot %d: %s", module.path, slot.slot_id, exc)
                    continue
                if not info.flags & ck.CKF_TOKEN_INITIALIZED:
                    continue  # SoftHSM2's spare slot, a blank card: nothing to sign with
                slots.append((slot, info))
        if present is None:
            with self._lock:
                if self._problems.get(module.path) != problem:
                    log.warning("%s", problem)
                self._problems[module.path] = problem
            return {}
        with self._lock:
            self._problems.pop(module.path, None)
        names: dict[str, tuple[Module, object, ck.TokenInfo]] = {}
        descriptions = [slot.slot_description.strip() for slot, _ in slots]  # type: ignore[attr-defined]
        for (slot, info), description in zip(slots, descriptions, strict=True):
            if descriptions.count(description) > 1:  # OpenSC: one slot per PIN of a card, in the same reader
                description = f"{description} [{info.label or slot.slot_id}]"  # type: ignore[attr-defined]
            names[reader_name(description, module)] = (module, slot, info)
        return names

    # -- what the manager asks ------------------------------------------------------------------
    def state(self) -> dict[str, bytes | None]:
        """Reader name -> b"" for every present token (PKCS#11 gives no ATR)."""
        with self._lock:
            return dict.fromkeys(self._tokens, b"")

    def owns(self, reader: str) -> bool:
        with self._lock:
            return reader in self._tokens

    def token(self, reader: str) -> Pkcs11Token:
        with self._lock:
            token = self._tokens.get(reader)
        if token is None or token.removed:
            raise NoCardError(f"{reader}: no token there now")
        return token

    def wait_settled(self, timeout: float) -> bool:
        return self._settled.wait(timeout)

    def problems(self) -> dict[str, str]:
        """Module path -> why it is not used (cannot load, initialise or list its slots)."""
        with self._lock:
            return dict(self._problems)

    def modules(self) -> dict[str, str | None]:
        """Every configured module path -> its problem, or None when it works."""
        problems = self.problems()
        return {path: problems.get(path) for path in self.paths}


def _identity(module: Module, slot: object, info: ck.TokenInfo) -> tuple[object, ...]:
    """What makes the token in a slot the same token: a new serial or label there is a card swap."""
    return (module.path, slot.slot_id, info.serial, info.label, info.model)  # type: ignore[attr-defined]
