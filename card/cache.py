"""The smart-card cache: what a card's token read, kept on disk so that a known card is not read again.

A FINEID card answers READ BINARY in blocks of at most 0xB5 bytes, so its certificates are most of the
APDUs of a first read (F35 says what other middleware learnt from caching them). A :class:`CardCache`
keeps, per card serial (EF.TokenInfo), the files :class:`~card.token.Token` read, in the order it read
them, each marked with how the next insertion checks it (D57):

* ``check``: a small file (EF.TokenInfo, EF.DIR, EF.OD, the AODF, PrKDF and CDF) is read again and must be
  byte for byte what was cached; it steers commands (PIN formats, key references, paths) so it is never
  taken from disk;
* ``certificate``: a certificate file is SELECTed for its FCP size, which must be what was cached; its
  bytes come from the cache (no READ BINARY);
* ``absent``: a path the card answered "not found" (an empty key slot, no EF.OD) must still be absent.

The cache knows nothing of DigiSign's settings: it is given a directory, a mode and a key provider
(D56). Modes are SmartCardSNCache's: 1 plain, 2 encrypted with a fixed key (a cache a fleet of computers
can share), 3 encrypted with a key bound to this machine and user (:class:`MachineUserKey`). A file that
cannot be read, authenticated or parsed, of another format version, mode or card, is ignored and logged
without its contents; the card is then read normally and the file rewritten (D58). Files are 0600 in a
0700 directory, written atomically; no PIN or other secret is ever in them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MODE_OFF, MODE_PLAIN, MODE_FIXED_KEY, MODE_MACHINE_KEY = 0, 1, 2, 3
MODES = (MODE_OFF, MODE_PLAIN, MODE_FIXED_KEY, MODE_MACHINE_KEY)
FORMAT_VERSION = 1
MAGIC = b"DSWCARD\n"  # file header: MAGIC, version byte, mode byte, then the body
HEADER_SIZE = len(MAGIC) + 2
MAX_CACHE_FILE = 1 << 20  # a card's files are a few KiB: anything bigger is not ours
KINDS = ("check", "certificate", "absent")

# Mode 2's key is the same on every installation by design (the vendor's "fixed key": one cache shared by
# several computers); it keeps the cache from being read as plain text, nothing more.
FIXED_KEY = hashlib.sha256(b"digisign-web SmartCardSNCache=2 fixed key, format 1").digest()

KeyProvider = Callable[[], bytes]
"""Returns the 32-byte AES-256-GCM key of an encrypted cache (called once per file read or written)."""


def fixed_key() -> bytes:
    """Mode 2's key provider."""
    return FIXED_KEY


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME`` (an absolute one), else ``~/.cache`` (XDG base directories)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    if base and os.path.isabs(base):
        return Path(base)
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".cache"


class MachineUserKey:
    """Mode 3's key: HKDF-SHA256 over a per-user random secret (``secret_path``, 0600, made on first use),
    salted with this machine's id (``/etc/machine-id``) and bound to the uid, so a cache file copied to
    another computer or read by another user does not decrypt."""

    MACHINE_ID_PATHS = ("/etc/machine-id", "/var/lib/dbus/machine-id")

    def __init__(self, secret_path: Path, *, machine_id_paths: tuple[str, ...] = MACHINE_ID_PATHS,
                 uid: int | None = None):
        self.secret_path = Path(secret_path)
        self.machine_id_paths = machine_id_paths
        self.uid = os.getuid() if uid is None else uid
        self._key: bytes | None = None
        self._lock = threading.Lock()  # two readers' tokens must not make two secrets

    def __call__(self) -> bytes:
        with self._lock:
            return self._derive()

    def _derive(self) -> bytes:
        if self._key is None:
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.kdf.hkdf import HKDF

            info = b"digisign-web card cache mode 3, format 1, uid %d" % self.uid
            self._key = HKDF(hashes.SHA256(), 32, self._machine_id(), info).derive(self._secret())
        return self._key

    def _machine_id(self) -> bytes:
        for name in self.machine_id_paths:
            try:
                value = Path(name).read_bytes().strip()
            except OSError:
                continue
            if value:
                return value
        log.warning("no machine id (%s): the card cache key is bound to this user only",
                    ", ".join(self.machine_id_paths))
        return b""

    def _secret(self) -> bytes:
        try:
            secret = _read_private(self.secret_path, 64)
        except OSError:
            secret = None
        if secret is not None and len(secret) == 32:
            return secret
        if secret is not None:
            log.warning("card cache key file %s is not a 32-byte secret: made a new one", self.secret_path)
        secret = secrets.token_bytes(32)
        _ensure_private_dir(self.secret_path.parent)
        _write_atomically(self.secret_path, secret)
        return secret


@dataclass(frozen=True)
class CachedFile:
    """One file as the token met it: ``path`` absolute from the MF, ``data`` None when ``kind`` is absent,
    ``size`` the FCP's (None when the card did not say or the file was selected without FCP)."""

    path: bytes
    kind: str
    data: bytes | None = None
    size: int | None = None


@dataclass(frozen=True)
class CardSnapshot:
    """What a cold read of one card met, in reading order: the value a cache file holds."""

    serial: str
    atr: bytes
    files: tuple[CachedFile, ...]

    def to_json(self) -> bytes:
        files = [{"path": f.path.hex(), "kind": f.kind, "size": f.size,
                  "data": None if f.data is None else base64.b64encode(f.data).decode("ascii")}
                 for f in self.files]
        return json.dumps({"format": FORMAT_VERSION, "serial": self.serial, "atr": self.atr.hex(),
                           "files": files}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> CardSnapshot:
        """Parse a cache body; ValueError (or one of its kind) for anything not exactly our shape."""
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
            raise ValueError("not a card cache body of this format")
        serial, atr, items = doc.get("serial"), doc.get("atr"), doc.get("files")
        if not isinstance(serial, str) or not isinstance(atr, str) or not isinstance(items, list):
            raise ValueError("missing serial, ATR or files")
        out = []
        for item in items:
            if not isinstance(item, dict) or item.get("kind") not in KINDS or not isinstance(item.get("path"), str):
                raise ValueError("bad file entry")
            data, size = item.get("data"), item.get("size")
            if (data is None) != (item["kind"] == "absent") or (size is not None and type(size) is not int):
                raise ValueError("bad file entry")
            out.append(CachedFile(bytes.fromhex(item["path"]), item["kind"],
                                  None if data is None else base64.b64decode(data, validate=True), size))
        return cls(serial, bytes.fromhex(atr), tuple(out))


class CardCache:
    """Card snapshots on disk, one file per card serial, in one of the modes 1–3 (0 is no cache at all)."""

    def __init__(self, directory: Path, mode: int, key: KeyProvider | None = None):
        if mode not in MODES or mode == MODE_OFF:
            raise ValueError(f"card cache mode {mode} is not one of 1, 2, 3 (0 means no CardCache)")
        if mode == MODE_MACHINE_KEY and key is None:
            raise ValueError("card cache mode 3 needs a key provider (e.g. MachineUserKey)")
        self.directory = Path(directory)
        self.mode = mode
        self.key = key if key is not None else (fixed_key if mode == MODE_FIXED_KEY else None)

    def __repr__(self) -> str:
        return f"CardCache({str(self.directory)!r}, mode={self.mode})"

    def path_for(self, serial: str) -> Path:
        """The file of the card ``serial``: a hash, so the directory listing names no card number."""
        name = hashlib.sha256(b"digisign-web card cache\0" + serial.encode()).hexdigest()[:40]
        return self.directory / f"{name}.card"

    # -- reading ------------------------------------------------------------------------------
    def load(self, serial: str, atr: bytes) -> CardSnapshot | None:
        """The snapshot of ``serial`` taken with this ``atr``, or None (no file, or one not to be trusted)."""
        path = self.path_for(serial)
        try:
            raw = _read_private(path, MAX_CACHE_FILE)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("card cache file %s ignored: %s", path, exc.strerror or exc)
            return None
        if raw is None:
            log.warning("card cache file %s ignored: not a private file of this user (or too large)", path)
            return None
        snapshot = self._decode(path, raw, serial)
        if snapshot is None:
            return None
        if snapshot.serial != serial:
            log.warning("card cache file %s ignored: it holds another card", path)
            return None
        if snapshot.atr != atr:
            log.info("card cache file %s ignored: the card's ATR changed", path)
            return None
        return snapshot

    def _decode(self, path: Path, raw: bytes, serial: str) -> CardSnapshot | None:
        if len(raw) < HEADER_SIZE or not raw.startswith(MAGIC):
            log.warning("card cache file %s ignored: not a card cache file (damaged or truncated)", path)
            return None
        version, mode = raw[len(MAGIC)], raw[len(MAGIC) + 1]
        if version != FORMAT_VERSION:
            log.info("card cache file %s ignored: format %d, this version reads %d", path, version, FORMAT_VERSION)
            return None
        if mode != self.mode:
            log.info("card cache file %s ignored: written with SmartCardSNCache=%d, now %d", path, mode, self.mode)
            return None
        body = raw[HEADER_SIZE:]
        if self.key is not None:
            body = self._open(path, raw[:HEADER_SIZE], body, serial)
            if body is None:
                return None
        elif hashlib.sha256(body[32:]).digest() != body[:32]:
            log.warning("card cache file %s ignored: damaged (its checksum does not match)", path)
            return None
        else:
            body = body[32:]
        try:
            return CardSnapshot.from_json(body)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("card cache file %s ignored: its contents do not parse (%s)", path, type(exc).__name__)
            return None

    def _open(self, path: Path, header: bytes, body: bytes, serial: str) -> bytes | None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            key = self._key()
        except (OSError, ValueError) as exc:
            log.warning("card cache key unavailable (%s): the cache is not used",
                        getattr(exc, "strerror", None) or exc)
            return None
        if len(body) < 12 + 16:
            log.warning("card cache file %s ignored: truncated", path)
            return None
        try:
            return AESGCM(key).decrypt(body[:12], body[12:], header + serial.encode())
        except InvalidTag:
            log.info("card cache file %s ignored: it does not decrypt with this %s key (another %s's file, "
                     "or damaged)", path, "fixed" if self.mode == MODE_FIXED_KEY else "machine and user's",
                     "installation" if self.mode == MODE_FIXED_KEY else "computer or user")
            return None

    def _key(self) -> bytes:
        assert self.key is not None
        key = self.key()
        if len(key) != 32:
            raise ValueError("a card cache key is 32 bytes")
        return key

    # -- writing ------------------------------------------------------------------------------
    def store(self, snapshot: CardSnapshot) -> bool:
        """Write ``snapshot`` (replacing the card's file atomically); False, logged, when it cannot be."""
        path = self.path_for(snapshot.serial)
        header = MAGIC + bytes((FORMAT_VERSION, self.mode))
        body = snapshot.to_json()
        try:
            if self.key is not None:
                from cryptography.hazmat.primitives.ciphers.aead import AESGCM

                nonce = secrets.token_bytes(12)
                body = nonce + AESGCM(self._key()).encrypt(nonce, body, header + snapshot.serial.encode())
            else:
                body = hashlib.sha256(body).digest() + body  # plain, but a damaged file is still noticed
            _ensure_private_dir(self.directory)
            _write_atomically(path, header + body)
        except (OSError, ValueError) as exc:
            log.warning("card cache file %s not written: %s", path, getattr(exc, "strerror", None) or exc)
            return False
        log.debug("card cache file %s written (%d files)", path, len(snapshot.files))
        return True

    def forget(self, serial: str) -> None:
        """Remove the card's file (nothing to remove is fine)."""
        try:
            self.path_for(serial).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("card cache file for a card not removed: %s", exc.strerror or exc)


# -- private files ----------------------------------------------------------------------------------

def _ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 (parents as needed); tighten one of ours that others could enter."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        log.info("card cache directory %s was open to others: set to 0700", directory)
        directory.chmod(0o700)


def _read_private(path: Path, limit: int) -> bytes | None:
    """The bytes of ``path`` if it is a regular file of this user that nobody else can touch and at most
    ``limit`` bytes, else None; FileNotFoundError when it does not exist. Symlinks are not followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as stream:
        info = os.fstat(stream.fileno())
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077
                or info.st_size > limit):
            return None
        return stream.read(limit + 1)


def _write_atomically(path: Path, data: bytes) -> None:
    """Temp file (0600, same directory) + rename: a reader sees the old file or the new one. No fsync: a file
    torn by a crash fails its checks and is ignored and rewritten, like any damaged one (D58)."""
    fd, temp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


__all__ = [
    "FIXED_KEY",
    "MODES",
    "CachedFile",
    "CardCache",
    "CardSnapshot",
    "KeyProvider",
    "MachineUserKey",
    "fixed_key",
    "user_cache_dir",
]
