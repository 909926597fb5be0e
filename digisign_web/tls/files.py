"""The local TLS files, the server's TLS context, and the quick start: the full check of :mod:`.ca` is
skipped while its last pass still holds (D69).

:func:`.ca.ensure_tls` loads the CA and the leaf with ``cryptography`` and checks them (name constraints, key
match, renewal dates). A pass leaves a stamp beside them: the SHA-256 of each of the four files and the
date when renewal is next due. While every file is byte for byte what was checked and that date has not
come, :func:`ensure_tls` trusts the stamp, so ``serve`` starts without loading ``cryptography``. Any
difference (a file replaced, edited or removed, a stamp of another version, the renewal date reached) runs
the full check, which renews what needs it and stamps again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

STAMP = "checked.json"
STAMP_VERSION = 1  # raise when ca.py's rules change, so every installation is checked again
_NAMES = ("ca.pem", "ca.key", "localhost.pem", "localhost.key")


@dataclass(frozen=True)
class TlsFiles:
    """The CA certificate to trust, the leaf and its key; ``ca_replaced`` says why this call replaced an
    existing CA ("" when it kept it or made the first one)."""

    ca_cert: Path
    cert: Path
    key: Path
    ca_replaced: str = ""


def tls_files(state_dir: Path) -> TlsFiles:
    tls = Path(state_dir) / "tls"
    return TlsFiles(tls / "ca.pem", tls / "localhost.pem", tls / "localhost.key")


def _digests(tls: Path) -> dict[str, str]:
    return {name: hashlib.sha256((tls / name).read_bytes()).hexdigest() for name in _NAMES}


def write_stamp(tls: Path, renew_by: dt.datetime) -> None:
    """Record a full check's pass (:mod:`.ca` calls this); 0600, written whole or not at all."""
    data = json.dumps({"version": STAMP_VERSION, "renew_by": renew_by.isoformat(), "files": _digests(tls)})
    tmp = tls / (STAMP + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.replace(tmp, tls / STAMP)


def _stamp_holds(tls: Path, now: dt.datetime) -> bool:
    try:
        stamp = json.loads((tls / STAMP).read_text())
        return (stamp["version"] == STAMP_VERSION and now < dt.datetime.fromisoformat(stamp["renew_by"])
                and stamp["files"] == _digests(tls))
    except (OSError, ValueError, KeyError, TypeError):  # missing, unreadable or not ours: check in full
        return False


def ensure_tls(state_dir: Path) -> TlsFiles:
    """:func:`.ca.ensure_tls`, or nothing to do when its last pass still holds. Raises OSError when the
    directory cannot be written."""
    files = tls_files(state_dir)
    tls = files.ca_cert.parent
    if tls.is_dir() and _stamp_holds(tls, dt.datetime.now(dt.UTC)):
        os.chmod(tls, 0o700)
        for key in (tls / "ca.key", files.key):
            os.chmod(key, 0o600)
        return files
    from digisign_web.tls import ca

    return ca.ensure_tls(state_dir)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or newer, with the localhost leaf."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert, files.key)
    return context
