"""``digisign-web trust``: make browsers (and optionally the system) trust the local CA.

Chromium/Chrome and Firefox on Linux do not read the system store for TLS server roots: each uses an NSS
database (``~/.pki/nssdb`` and one per Firefox profile), so the CA is added to every one of them with
``certutil`` (Debian's libnss3-tools). The nickname carries the start of the CA's SHA-256 fingerprint,
which makes a re-install idempotent; ``status`` compares the certificates' fingerprints, so it tells the
current CA from one that was regenerated whatever the nickname.
``--system`` also installs it for curl, Python and other OpenSSL/GnuTLS clients via ``update-ca-certificates``.

``install`` first brings the CA up to date (``tls.ensure_tls``): a CA of an earlier version, which had no
name constraints and a ten-year life, is replaced by a name-constrained one, and every store gets the new CA
in place of the old (also one added by hand under the nickname ``digisign-web``, as an old certs/README.md
said). ``status`` flags such an old CA, in the state directory or still in a store.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

log = logging.getLogger(__name__)

NICK_PREFIX = "digisign-web local CA"
LEGACY_NICK = "digisign-web"  # the nickname the manual certutil command of an old certs/README.md used
CERTUTIL = "certutil"
CERTUTIL_MISSING = "certutil not found: install libnss3-tools: sudo apt-get install libnss3-tools"
# Module constants so that tests (and other distributions) can point them elsewhere.
SYSTEM_CA_PATH = Path("/usr/local/share/ca-certificates/digisign-web-local-ca.crt")
SYSTEM_UPDATE_CMD: list[str] = ["update-ca-certificates"]

TRUSTED = "trusted"
ALSO_OLD = "trusted, and an old digisign-web CA too"
OLD_ONLY = "old digisign-web CA only"
NOT_TRUSTED = "not trusted"

# (label, profiles root relative to $HOME). Firefox ESR uses the same directories as Firefox.
FIREFOX_ROOTS = (
    ("Firefox", ".mozilla/firefox"),
    ("Firefox snap", "snap/firefox/common/.mozilla/firefox"),
    ("Firefox flatpak", ".var/app/org.mozilla.firefox/.mozilla/firefox"),
    ("LibreWolf", ".librewolf"),
    ("LibreWolf flatpak", ".var/app/io.gitlab.librewolf-community/.librewolf"),
)
# Chromium packagings with their own NSS database; used only when that database already exists.
CHROMIUM_EXTRA = (
    ("Chromium snap", "snap/chromium/current/.pki/nssdb"),
    ("Chromium flatpak", ".var/app/org.chromium.Chromium/.pki/nssdb"),
    ("Chrome flatpak", ".var/app/com.google.Chrome/.pki/nssdb"),
)
CHROMIUM_DB = ".pki/nssdb"
CHROMIUM_NAME = "Chromium/Chrome"


class CertutilMissing(RuntimeError):
    """``certutil`` is not installed: no NSS store can be read or changed."""


@dataclass(frozen=True)
class Store:
    name: str
    kind: Literal["nss", "system"]
    path: Path


@dataclass(frozen=True)
class Result:
    """What happened to (or was found in) one store; ``ok`` is what the exit code is made of."""

    store: Store
    status: str
    ok: bool
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["store"] = self.store.name
        d["kind"] = self.store.kind
        d["path"] = str(self.store.path)
        return d


# --- helpers ---------------------------------------------------------------------------------------------

def _sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def fingerprint(ca_pem: Path) -> str | None:
    """SHA-256 of the CA certificate's DER as lowercase hex, or None when it cannot be read."""
    try:
        cert = x509.load_pem_x509_certificate(Path(ca_pem).read_bytes())
    except (OSError, ValueError):
        return None
    return _sha256(cert)


def nickname(fp: str) -> str:
    return f"{NICK_PREFIX} {fp[:8]}"


def _ours(nick: str) -> bool:
    return nick.startswith(NICK_PREFIX) or nick == LEGACY_NICK


@dataclass(frozen=True)
class CaInfo:
    """The local CA in the state directory; ``problems`` (see ``tls.ca_problems``) make it an old CA."""

    path: Path
    sha256: str | None  # None: not created yet, or unreadable (then ``problems`` says so)
    not_after: str | None
    name_constraints: list[str]
    problems: list[str]
    replaced: str = ""  # install only: why it replaced the CA that was there

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "path": str(self.path), "old": bool(self.problems)}


def ca_info(ca_pem: Path, replaced: str = "") -> CaInfo:
    """What ``status`` reports about the CA file: fingerprint, expiry, constraints and why it is old, if it is."""
    from digisign_web.tls.ca import ca_problems, name_constraints

    ca_pem = Path(ca_pem)
    if not ca_pem.exists():
        return CaInfo(ca_pem, None, None, [], [], replaced)
    try:
        cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    except (OSError, ValueError) as exc:
        return CaInfo(ca_pem, None, None, [], [f"unreadable: {exc}"], replaced)
    constraints = name_constraints(cert)
    return CaInfo(ca_pem, _sha256(cert), cert.not_valid_after_utc.isoformat(),
                  constraints[1] if constraints else [], ca_problems(cert), replaced)


def _is_root() -> bool:
    return os.geteuid() == 0


def _certutil(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    exe = shutil.which(CERTUTIL)
    if exe is None:
        raise CertutilMissing(CERTUTIL_MISSING)
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _err(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    msg = lines[-1].strip() if lines else f"certutil exited {proc.returncode}"
    if "authenticate" in msg or "BAD_PASSWORD" in msg:
        msg += " (the database has a primary password: add the CA in the browser's certificate settings)"
    return msg


def _db_missing_reason(store: Store) -> str | None:
    """Why this NSS store has no usable ``sql:`` database, or None when it has one."""
    if (store.path / "cert9.db").exists():
        return None
    if (store.path / "cert8.db").exists():
        return "legacy cert8.db profile: start Firefox once with it (it migrates to cert9.db), then retry"
    return "no certificate database yet"


def _list(store: Store, timeout: float) -> list[tuple[str, str]]:
    """(nickname, trust flags) of every certificate in the store."""
    proc = _certutil("-L", "-d", f"sql:{store.path}", timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(_err(proc))
    entries = []
    started = False
    for line in proc.stdout.splitlines():
        if not started:
            started = "SSL,S/MIME,JAR/XPI" in line
            continue
        parts = line.rstrip().rsplit(None, 1)
        if len(parts) == 2:
            entries.append((parts[0], parts[1]))
    return entries


def _has_cert(store: Store, nick: str, fp: str, timeout: float) -> bool:
    """Whether ``nick`` resolves to the certificate with fingerprint ``fp`` (not merely a namesake)."""
    proc = _certutil("-L", "-d", f"sql:{store.path}", "-n", nick, "-a", timeout=timeout)
    if proc.returncode != 0:
        return False
    try:
        certs = x509.load_pem_x509_certificates(proc.stdout.encode())
    except ValueError:
        return False
    return any(_sha256(c) == fp for c in certs)


def _nss_status(store: Store, fp: str | None, timeout: float = 30) -> Result:
    reason = _db_missing_reason(store)
    if reason:
        return Result(store, NOT_TRUSTED, False, reason)
    # By fingerprint, not nickname: the current CA added by hand under another of our nicknames counts too.
    current, trusted, old = [], False, []
    for nick, flags in _list(store, timeout):
        if not _ours(nick):
            continue
        if fp is not None and _has_cert(store, nick, fp, timeout):
            current.append(nick)
            trusted = trusted or "C" in flags.split(",")[0]
        elif nick not in current:
            old.append(nick)
    if trusted:
        return Result(store, ALSO_OLD, True, ", ".join(old)) if old else Result(store, TRUSTED, True)
    if old:
        return Result(store, OLD_ONLY, False, ", ".join(old))
    return Result(store, NOT_TRUSTED, False)


def _system_status(store: Store, fp: str | None) -> Result:
    if not store.path.exists():
        return Result(store, NOT_TRUSTED, False)
    if fp is not None and fingerprint(store.path) == fp:
        return Result(store, TRUSTED, True)
    return Result(store, OLD_ONLY, False, f"{store.path} holds another certificate")


def _match_owner(path: Path, home: Path) -> None:
    """Give what root created in a user's home back to that user (e.g. under ``sudo -E``), or Chrome can't open it."""
    try:
        st = home.stat()
        if _is_root() and st.st_uid != 0:
            os.chown(path, st.st_uid, st.st_gid)
            for child in path.iterdir() if path.is_dir() else ():
                os.chown(child, st.st_uid, st.st_gid)
    except OSError as exc:
        log.warning("could not hand %s to the owner of %s: %s", path, home, exc)


def _create_chromium_db(store: Store) -> str | None:
    """Create ``~/.pki/nssdb`` the way Chrome would (0700, no password); an error message or None."""
    pki = store.path.parent
    home = pki.parent
    created = [d for d in (pki, store.path) if not d.exists()]
    for d in created:
        d.mkdir(mode=0o700)
    proc = _certutil("-N", "-d", f"sql:{store.path}", "--empty-password")
    if proc.returncode != 0:
        return _err(proc)
    log.info("created the NSS database %s", store.path)
    for d in created or [store.path]:
        _match_owner(d, home)
    return None


# --- public API ------------------------------------------------------------------------------------------

def find_stores(home: Path, system: bool) -> list[Store]:
    """The NSS databases browsers use for the user with this home, plus the system store if asked.

    ``~/.pki/nssdb`` is always listed (``install`` creates it); Firefox profiles are directories under the
    known profile roots that hold ``cert9.db``, ``cert8.db`` or ``prefs.js``. Nothing is created here.
    """
    home = Path(home)
    stores = [Store(CHROMIUM_NAME, "nss", home / CHROMIUM_DB)]
    for label, rel in CHROMIUM_EXTRA:
        if (home / rel / "cert9.db").exists():
            stores.append(Store(label, "nss", home / rel))
    for label, rel in FIREFOX_ROOTS:
        root = home / rel
        try:
            profiles = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError:
            continue
        for profile in profiles:
            if any((profile / f).exists() for f in ("cert9.db", "cert8.db", "prefs.js")):
                stores.append(Store(f"{label} ({profile.name})", "nss", profile))
    if system:
        stores.append(Store("system (ca-certificates)", "system", SYSTEM_CA_PATH))
    return stores


def status(ca_pem: Path, stores: Iterable[Store], timeout: float = 30) -> list[Result]:
    """Whether the CA in ``ca_pem`` (by fingerprint) is trusted in each store (``timeout``: per certutil call).

    Raises CertutilMissing when an NSS store has to be read without certutil.
    """
    fp = fingerprint(ca_pem)
    results = []
    for store in stores:
        if store.kind == "system":
            results.append(_system_status(store, fp))
            continue
        try:
            results.append(_nss_status(store, fp, timeout))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            if isinstance(exc, CertutilMissing):
                raise
            results.append(Result(store, NOT_TRUSTED, False, f"cannot read: {exc}"))
    return results


def _install_nss(store: Store, fp: str, ca_pem: Path) -> Result:
    if store.name == CHROMIUM_NAME and not (store.path / "cert9.db").exists():
        error = _create_chromium_db(store)
        if error:
            return Result(store, "failed", False, f"cannot create the database: {error}")
    reason = _db_missing_reason(store)
    if reason:
        return Result(store, "skipped", True, reason)
    current = nickname(fp)
    replaced = []
    for nick, _ in _list(store, 30):
        if _ours(nick) and nick != current:
            proc = _certutil("-D", "-d", f"sql:{store.path}", "-n", nick)
            if proc.returncode != 0:
                return Result(store, "failed", False, f"cannot remove {nick!r}: {_err(proc)}")
            replaced.append(nick)
    proc = _certutil("-A", "-d", f"sql:{store.path}", "-n", current, "-t", "C,,", "-i", str(ca_pem))
    if proc.returncode != 0:
        return Result(store, "failed", False, _err(proc))
    check = _nss_status(store, fp)
    if not check.ok:
        return Result(store, "failed", False, f"added, but the check says {check.status}")
    log.info("trusted %s in %s", current, store.path)
    return Result(store, "installed", True, f"replaced {', '.join(replaced)}" if replaced else "")


def _sudo(*commands: list[str]) -> str:
    return "run: " + " && ".join("sudo " + shlex.join(c) for c in commands)


def _install_system(store: Store, fp: str, ca_pem: Path) -> Result:
    if not _is_root():
        if fingerprint(store.path) == fp:
            return Result(store, "installed", True, "already there")
        cmd = _sudo(["install", "-m", "0644", str(Path(ca_pem).resolve()), str(store.path)], SYSTEM_UPDATE_CMD)
        return Result(store, "needs root", False, cmd)
    store.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = store.path.with_name(store.path.name + ".tmp")
    shutil.copyfile(ca_pem, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, store.path)
    return _run_update(store, "installed")


def _run_update(store: Store, done: str) -> Result:
    try:
        proc = subprocess.run(SYSTEM_UPDATE_CMD, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return Result(store, "failed", False, f"{shlex.join(SYSTEM_UPDATE_CMD)}: {exc}")
    if proc.returncode != 0:
        return Result(store, "failed", False, f"{shlex.join(SYSTEM_UPDATE_CMD)}: {_err(proc)}")
    return Result(store, done, True)


def install(ca_pem: Path, stores: Iterable[Store]) -> list[Result]:
    """Trust ``ca_pem`` as a TLS server CA in every store, removing every other digisign-web CA from it.

    A store that fails does not stop the others. Raises CertutilMissing (before changing anything NSS-side)
    when certutil is not installed.
    """
    fp = fingerprint(ca_pem)
    if fp is None:
        raise ValueError(f"cannot read the CA certificate {ca_pem}")
    results = []
    for store in stores:
        try:
            if store.kind == "system":
                results.append(_install_system(store, fp, ca_pem))
            else:
                results.append(_install_nss(store, fp, ca_pem))
        except CertutilMissing:
            raise
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            results.append(Result(store, "failed", False, str(exc)))
    return results


def _uninstall_nss(store: Store) -> Result:
    if _db_missing_reason(store):
        return Result(store, "not present", True)
    removed = []
    for nick, _ in _list(store, 30):
        if _ours(nick):
            proc = _certutil("-D", "-d", f"sql:{store.path}", "-n", nick)
            if proc.returncode != 0:
                return Result(store, "failed", False, f"cannot remove {nick!r}: {_err(proc)}")
            removed.append(nick)
    if not removed:
        return Result(store, "not present", True)
    return Result(store, "removed", True, ", ".join(removed))


def _uninstall_system(store: Store) -> Result:
    if not store.path.exists():
        return Result(store, "not present", True)
    if not _is_root():
        return Result(store, "needs root", False, _sudo(["rm", "-f", str(store.path)], SYSTEM_UPDATE_CMD))
    store.path.unlink()
    return _run_update(store, "removed")


def uninstall(stores: Iterable[Store]) -> list[Result]:
    """Remove every digisign-web CA (current or old) from the stores; other certificates are left alone."""
    results = []
    for store in stores:
        try:
            results.append(_uninstall_system(store) if store.kind == "system" else _uninstall_nss(store))
        except CertutilMissing:
            raise
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            results.append(Result(store, "failed", False, str(exc)))
    return results


def browser_trusted(results: Iterable[Result]) -> bool:
    """Whether some browser (an NSS store) trusts the current CA: what ``trust status`` and ``doctor`` require.

    The system store does not count: Chromium and Firefox on Linux do not read it for TLS server roots."""
    return any(r.ok and r.store.kind == "nss" for r in results)


def is_trusted_anywhere(ca_pem: Path, home: Path) -> bool:
    """Whether some browser store of ``home`` trusts this CA; for ``serve``'s hint, so quick and never raising."""
    try:
        fp = fingerprint(ca_pem)
        if fp is None or shutil.which(CERTUTIL) is None:
            return False
        for store in find_stores(home, system=False):
            try:
                if _nss_status(store, fp, timeout=5).ok:
                    return True
            except Exception as exc:  # a broken profile must not hide a good one
                log.debug("trust check of %s failed: %s", store.path, exc)
    except Exception as exc:
        log.debug("trust check failed: %s", exc)
    return False


# --- command line ----------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    """``digisign-web trust install|uninstall|status``; 0 ok, 1 a store failed (or, for status: no browser
    trusts the current CA, the CA is old, or a store still holds an old one), 2 certutil is missing."""
    from digisign_web.tls.ca import ensure_tls

    state_dir = Path(args.state_dir)
    home = Path(os.path.expanduser("~"))
    ca_pem = state_dir / "tls" / "ca.pem"
    if shutil.which(CERTUTIL) is None:
        print(f"error: {CERTUTIL_MISSING}", file=sys.stderr)
        return 2
    stores = find_stores(home, args.system)
    replaced = ""
    try:
        if args.action == "install":
            files = ensure_tls(state_dir)
            ca_pem, replaced = files.ca_cert, files.ca_replaced
            results = install(ca_pem, stores)
        elif args.action == "uninstall":
            results = uninstall(stores)
        else:
            results = status(ca_pem, stores)
    except CertutilMissing:
        print(f"error: {CERTUTIL_MISSING}", file=sys.stderr)
        return 2
    ca = ca_info(ca_pem, replaced)
    stale = [r for r in results if r.status in (OLD_ONLY, ALSO_OLD)]
    if args.action == "status":
        code = 0 if browser_trusted(results) and not ca.problems and not stale else 1
    else:
        code = 0 if all(r.ok for r in results) else 1
    if args.json:
        print(json.dumps({"ca": ca.to_dict(), "stores": [r.to_dict() for r in results]}, indent=2))
        return code
    _print_report(args.action, ca, results)
    return code


def _print_report(action: str, ca: CaInfo, results: list[Result]) -> None:
    if ca.sha256 is None and not ca.problems:
        print(f"CA {ca.path}: not created yet (digisign-web trust install creates it)")
    elif ca.sha256 is None:
        print(f"CA {ca.path}: {'; '.join(ca.problems)}")
    else:
        limits = ", ".join(ca.name_constraints) or "no name constraints"
        print(f"CA {ca.path}: SHA-256 {ca.sha256}\n   valid until {ca.not_after}, for {limits}")
    if ca.replaced:
        print(f"   replaced an old CA ({ca.replaced}); the old key is deleted. "
              "Restart `digisign-web serve` so that it uses the new certificate.")
    if ca.sha256 is not None and ca.problems:
        print(f"   OLD CA: {'; '.join(ca.problems)}.")
        print("   `digisign-web trust install` replaces it with a new name-constrained CA in every store.")
    for r in results:
        print(f"  {r.store.name:32} {r.status}" + (f" ({r.detail})" if r.detail else "") + f"  [{r.store.path}]")
    if action == "status" and any(r.status in (OLD_ONLY, ALSO_OLD) for r in results):
        print("Some stores trust an old digisign-web CA: `digisign-web trust install` swaps it for the current one.")
    if action != "status" and any(r.status in ("installed", "removed") for r in results):
        print("Restart the browsers for the change to take effect.")
