"""``digisign-web doctor``: why signing from a browser does, or does not, work here (D53).

A browser signature needs four things at once: pcscd and a card with a usable signature certificate, the
local CA trusted by a browser, and the SCS port free (for ``serve``) or held by our own server answering
``/version``. Each check below is a plain function that returns :class:`Check` lines; the I/O (PC/SC, the
NSS stores, ``/proc``, one HTTPS request to loopback) is kept apart from the pure functions that turn what
was found into lines, so the decisions can be tested with sample data.

Where doctor sits: a diagnostic above ``card``, ``signing`` and ``scs`` and below ``cli``; it never imports
``digisign_web.web`` (or aiohttp), so it works where the server itself cannot start. Every wait is bounded:
PC/SC and the card run on worker threads with deadlines, certutil and the pkcs11 probe are subprocesses with
timeouts, and the only network request goes to 127.0.0.1 or ::1 (D54). Text from outside (reader names,
card labels, certificate names, process names) is made inert before it is shown (D36).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from card.pcsc import SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED, SCARD_E_SHARING_VIOLATION
from digisign_web.text import inert_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from card import CardManager, CardPolicy
    from digisign_web.settings import Settings
    from digisign_web.tls.trust import CaInfo, Result

log = logging.getLogger(__name__)

T = TypeVar("T")
Status = Literal["ok", "warn", "fail", "info"]

# Stable check names (the --json "name" field); several lines may share a name, told apart by "item".
SETTINGS = "settings"
PCSCD = "pcscd"
READERS = "readers"
EXCLUDED_READER = "excluded-reader"
CARD = "card"
CERTIFICATE = "certificate"
SIGNING_CERTIFICATE = "signing-certificate"
PKCS11_MODULE = "pkcs11-module"
TRUST_STORE = "trust-store"
TRUST = "trust"
PORT = "port"
LOCAL_NETWORK_ACCESS = "local-network-access"

# What browser signing needs (D53): a check of each name, none of them failed. pcscd is implied by the
# signing certificate (a card is read through it; a PKCS#11 token would count the same way).
REQUIRED = (SIGNING_CERTIFICATE, TRUST, PORT)

PCSC_TIMEOUT = 5.0  # seconds for SCardEstablishContext and listing the readers
CARD_TIMEOUT = 20.0  # seconds, beyond --wait, to read every present card (certificates and PIN counters)
CERTUTIL_TIMEOUT = 10.0  # seconds per certutil call
HTTPS_TIMEOUT = 3.0  # seconds for connecting to and reading /version from the server on loopback
PKCS11_TIMEOUT = 10.0  # seconds for dlopen of one module in a child process
PROC_FD_LIMIT = 20000  # /proc/*/fd entries looked at when finding a socket's process (bounded work)

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
FIX_INSTALL_PCSCD = "sudo apt-get install pcscd"
FIX_START_PCSCD = "sudo systemctl start pcscd.socket"
FIX_TRUST = "digisign-web trust install"
FIX_SERVE = "digisign-web serve (or, to start it at every login: digisign-web service install)"


@dataclass(frozen=True)
class Check:
    """One line of the report. ``fix`` is shown when the status is not ok: an exact command where one exists."""

    name: str
    status: Status
    summary: str
    fix: str = ""
    item: str = ""  # which reader, certificate, store, port or file the line is about ("" for global checks)

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def line(self) -> str:
        """The text line: status, name (and item), summary, and the fix when the check is not ok."""
        label = f"{self.name} [{self.item}]" if self.item else self.name
        text = f"{self.status.upper():4}  {label}: {self.summary}"
        if self.fix and self.status != "ok":
            text += f"  -> fix: {self.fix}"
        return inert_line(text, limit=2000)


def verdict(checks: Iterable[Check]) -> bool:
    """True only when signing from a browser would work: each REQUIRED check is there and none of them failed.

    Other failures (an expired authentication certificate beside a valid signature one, a broken
    pkcs11Module, a settings typo) are reported but do not stop signing, so they do not decide the exit code."""
    checks = list(checks)
    return all(any(c.name == name for c in checks) and not any(c.name == name and c.status == "fail" for c in checks)
               for name in REQUIRED)


def _bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """``fn()`` on a daemon thread, waited for at most ``timeout`` seconds: a hung pcscd or card must not
    hang doctor. Raises TimeoutError (the thread is left to die with the process) or what ``fn`` raised."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=run, name=f"doctor-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"{what} did not answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# --- settings ------------------------------------------------------------------------------------------------

def settings_checks(settings: Settings) -> list[Check]:
    """Which files were read; each problem in them (a typo'd key, a bad value) as a warning; the vendor keys
    that do not apply here as information."""
    if settings.sources:
        checks = [Check(SETTINGS, "info", "read " + ", ".join(inert_line(s) for s in settings.sources))]
    else:
        checks = [Check(SETTINGS, "info", "no DigiSign.conf found: the defaults apply")]
    for warning in settings.warnings:
        checks.append(Check(SETTINGS, "warn", inert_line(warning, limit=500),
                            "correct or remove that line (key names are case-sensitive; see the vendor's table)"))
    if settings.ignored:
        checks.append(Check(SETTINGS, "info", "vendor keys that do not apply to digisign-web (ignored): "
                            + " ".join(inert_line(k) for k in settings.ignored)))
    return checks


# --- pcscd and readers -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PcscProbe:
    """What PC/SC said: ``library`` is why pyscard/libpcsclite could not be loaded, ``code`` the result of
    SCardEstablishContext (0: reachable), ``readers`` every reader pcscd lists (None: not asked)."""

    library: str = ""
    code: int = 0
    message: str = ""
    readers: tuple[str, ...] | None = None


def pcscd_socket() -> str:
    """The socket libpcsclite connects to: ``$PCSCLITE_CSOCK_NAME`` when set (docs/decisions.md F34)."""
    return os.environ.get("PCSCLITE_CSOCK_NAME") or PCSCD_SOCKET


def pcscd_installed() -> bool:
    return shutil.which("pcscd", path=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH) is not None


def probe_pcsc(timeout: float = PCSC_TIMEOUT) -> PcscProbe:
    """SCardEstablishContext's own result (to tell "not running" from other errors), then the reader list."""
    try:
        from smartcard import scard
    except Exception as exc:  # ImportError, or OSError when libpcsclite.so.1 is missing
        return PcscProbe(library=f"{type(exc).__name__}: {exc}")

    def establish() -> tuple[int, str]:
        hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hresult == 0:
            scard.SCardReleaseContext(context)
            return 0, ""
        return hresult & 0xFFFFFFFF, scard.SCardGetErrorMessage(hresult)

    try:
        code, message = _bounded(establish, timeout, "pcscd")
    except TimeoutError as exc:
        return PcscProbe(code=-1, message=str(exc))
    if code:
        return PcscProbe(code=code, message=message)
    from card import TransportError, list_readers

    try:
        readers = _bounded(list_readers, timeout, "the reader list")
    except (TimeoutError, TransportError) as exc:
        return PcscProbe(code=-1, message=str(exc))
    return PcscProbe(readers=tuple(readers))


def pcscd_check(probe: PcscProbe, installed: bool, socket: str) -> Check:
    """Not installed, not running, or running (whether it has readers is the readers check's)."""
    if probe.library:
        return Check(PCSCD, "fail", f"the PC/SC client library cannot be loaded ({inert_line(probe.library)})",
                     "sudo apt-get install libpcsclite1 pcscd")
    if probe.code in (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED):
        if not installed:
            return Check(PCSCD, "fail", "pcscd is not installed", FIX_INSTALL_PCSCD)
        return Check(PCSCD, "fail", f"pcscd is installed but not running (nothing answers on {socket})",
                     FIX_START_PCSCD)
    if probe.code:
        return Check(PCSCD, "fail", f"pcscd does not answer: {inert_line(probe.message)}"
                     + (f" (0x{probe.code:08X})" if probe.code > 0 else ""),
                     "sudo systemctl restart pcscd.socket pcscd.service")
    return Check(PCSCD, "ok", f"running ({socket})")


def reader_checks(readers: Sequence[str], exclude: Callable[[str], bool] | None) -> list[Check]:
    """The readers pcscd lists, and which of them excludeReader hides from digisign-web."""
    excluded = [r for r in readers if exclude is not None and exclude(r)]
    usable = [r for r in readers if r not in excluded]
    checks = []
    if usable:
        checks.append(Check(READERS, "ok", f"{len(usable)} reader(s): " + ", ".join(inert_line(r) for r in usable)))
    elif excluded:
        checks.append(Check(READERS, "fail", "pcscd is running but every reader is excluded",
                            f"change {exclude} in DigiSign.conf (or --exclude-reader)"))
    else:
        checks.append(Check(READERS, "fail", "pcscd is running but sees no card reader",
                            "plug in the card reader (lsusb should list it); with a reader that needs a driver: "
                            "sudo apt-get install libccid"))
    for reader in excluded:
        checks.append(Check(EXCLUDED_READER, "info", f"excluded by {exclude}", item=inert_line(reader)))
    return checks


# --- cards and certificates ------------------------------------------------------------------------------

@dataclass(frozen=True)
class CertReport:
    role: str  # signature, authentication, other (CA certificates are left out)
    name: str  # the subject's common name, else the whole subject
    key: str  # "EC secp384r1", "RSA 2048"
    not_before: dt.datetime
    not_after: dt.datetime
    pin: str = ""  # the PIN's label
    pin_blocked: bool = False
    pin_tries: int | None = None


@dataclass(frozen=True)
class CardReport:
    """One reader as doctor found it: no card (``atr`` None), a card that could not be used (``problem``), or a
    recognised card and its certificates."""

    reader: str
    atr: bytes | None
    profile: str = ""
    description: str = ""
    serial: str = ""
    label: str = ""
    problem: str = ""
    certificates: tuple[CertReport, ...] = ()


def read_cards(manager: CardManager, wait: float) -> list[CardReport]:
    """Each reader of ``manager`` (started here; the caller stops it) with what its card holds.

    The card layer does the reading (profiles, PKCS#15, certificates); PIN counters are asked without
    spending a try. Runs on the caller's thread: :func:`card_reports` bounds it."""
    from card import CardError

    manager.start()
    manager.wait_settled(wait)
    reports = []
    for reader, atr in manager.readers().items():
        if atr is None:
            reports.append(CardReport(reader, None))
            continue
        try:
            token = manager.token(reader)
            certs = []
            for cert in token.certificates():
                if cert.role == "ca":
                    continue
                pin = None
                if cert.pin is not None:
                    try:
                        pin = token.pin_status(cert.pin)
                    except CardError as exc:  # the counter is extra information, not the card's verdict
                        log.info("%s: PIN status of %s: %s", reader, cert.pin.label, exc)
                card_cert = cert.certificate
                certs.append(CertReport(
                    cert.role, card_cert.subject.get("2.5.4.3") or cert.subject, cert.key_description,
                    card_cert.not_before, card_cert.not_after, cert.pin.label if cert.pin else "",
                    bool(pin and pin.blocked), pin.tries_left if pin else None))
            reports.append(CardReport(reader, atr, token.profile.name, token.profile.description,
                                      token.serial, token.label, certificates=tuple(certs)))
        except CardError as exc:
            reports.append(CardReport(reader, atr, problem=str(exc) or type(exc).__name__))
    return reports


def card_reports(policy: CardPolicy, wait: float, timeout: float = CARD_TIMEOUT) -> list[CardReport] | str:
    """The readers' cards through pcscd, or why they could not be read (a string) within ``wait + timeout``."""
    from card import CardManager, TransportError

    manager = CardManager(policy)
    try:
        reports = _bounded(lambda: read_cards(manager, wait), wait + timeout, "reading the cards")
        manager.forget_tokens()  # the card connections close now (not after a timeout: the reader holds them)
        return reports
    except (TimeoutError, TransportError) as exc:
        return str(exc)
    finally:
        # The reader monitor may take up to buildReaderListTimer to notice a stop that comes just before its
        # next wait, and doctor has what it needs: it does not wait for that.
        threading.Thread(target=manager.stop, name="doctor-stop", daemon=True).start()


def certificate_check(reader: str, cert: CertReport, warning_days: int, now: dt.datetime | None = None) -> Check:
    """One certificate: expired or not yet valid fails, expiring within ``warning_days`` warns, in the words
    ``list`` uses (scs/expiry.py); a blocked PIN fails the certificate it guards."""
    from digisign_web.scs.expiry import Validity, expiry

    state = expiry(cert.not_before, cert.not_after, warning_days, now)
    what = f"{cert.role}: {inert_line(cert.name)}, {cert.key} key, {state.text()}"
    item = f"{inert_line(reader)}: {cert.role}"
    if state.validity is Validity.EXPIRED:
        return Check(CERTIFICATE, "fail", what,
                     "the card's certificates cannot be renewed: order a new card (for an ID card, from the police)",
                     item)
    if state.validity is Validity.NOT_YET_VALID:
        return Check(CERTIFICATE, "fail", what, "check the computer's date and time (timedatectl)", item)
    if cert.pin_blocked:
        which = "--pin2" if cert.role == "signature" else "--pin1"
        return Check(CERTIFICATE, "fail", f"{what}; its PIN ({inert_line(cert.pin)}) is blocked",
                     f"digisign-web pin unblock {which} (with the PUK)", item)
    if state.validity is Validity.EXPIRING:
        return Check(CERTIFICATE, "warn", f"{what}: fewer than {warning_days} days left (certExpirationWarningDays)",
                     "order a new card in time", item)
    return Check(CERTIFICATE, "ok", what, item=item)


def card_checks(reports: Sequence[CardReport], warning_days: int, now: dt.datetime | None = None) -> list[Check]:
    """A line per reader's card and per certificate, then whether any usable signature certificate exists."""
    checks = []
    usable_signature = []
    for report in reports:
        reader = inert_line(report.reader)
        if report.atr is None:
            checks.append(Check(CARD, "info", "no card", item=reader))
            continue
        if report.problem:
            checks.append(Check(CARD, "fail", f"card not usable (ATR {report.atr.hex(' ').upper()}): "
                                f"{inert_line(report.problem)}", _card_fix(report.problem), reader))
            continue
        checks.append(Check(CARD, "ok", f"{inert_line(report.description)} (profile {report.profile}), "
                            f"serial {inert_line(report.serial)}, label {inert_line(report.label)!r}", item=reader))
        if not report.certificates:
            checks.append(Check(CERTIFICATE, "fail", "the card holds no usable certificate",
                                "the card may be unpersonalised or damaged", reader))
        for cert in report.certificates:
            check = certificate_check(report.reader, cert, warning_days, now)
            checks.append(check)
            if cert.role == "signature" and check.status in ("ok", "warn"):
                usable_signature.append(f"{inert_line(cert.name)} in {reader}")
    checks.append(signing_check(reports, usable_signature))
    return checks


def _card_fix(problem: str) -> str:
    if f"0x{SCARD_E_SHARING_VIOLATION:08X}" in problem:
        return ("another program holds the card exclusively (a browser's or another signing program's PKCS#11 "
                "module): close it, or take the card out and put it back")
    return ("take the card out and put it back; if it stays, the card is not a supported FINEID card "
            "(or allowUnknownCards / validTokenInfoLabel refuse it)")


def signing_check(reports: Sequence[CardReport], usable: Sequence[str]) -> Check:
    if usable:
        return Check(SIGNING_CERTIFICATE, "ok", "usable: " + "; ".join(usable))
    if not any(r.atr is not None for r in reports):
        return Check(SIGNING_CERTIFICATE, "fail", "no card in any reader",
                     "insert your ID card (chip first, contacts up) into the reader")
    return Check(SIGNING_CERTIFICATE, "fail", "no card present holds a usable (valid, PIN not blocked) "
                 "signature certificate", "see the certificate and card lines above")


# --- PKCS#11 modules -------------------------------------------------------------------------------------

# Run in a child process: a module's constructor is foreign code that may crash or hang (D55).
_PKCS11_PROBE = """
import ctypes, sys
try:
    lib = ctypes.CDLL(sys.argv[1])
except OSError as exc:
    print(exc)
    sys.exit(3)
if not hasattr(lib, "C_GetFunctionList"):
    sys.exit(4)
"""


def elf_shared_object(path: Path) -> str:
    """Why ``path`` is not an ELF shared object, or "" when it is one (e_type ET_DYN)."""
    try:
        with path.open("rb") as stream:
            head = stream.read(18)
    except OSError as exc:
        return exc.strerror or str(exc)
    if len(head) < 18 or head[:4] != b"\x7fELF":
        return "not an ELF file"
    e_type = struct.unpack("<H" if head[5] == 1 else ">H", head[16:18])[0]
    return "" if e_type == 3 else "an ELF file, but not a shared library"


def pkcs11_check(path: Path, timeout: float = PKCS11_TIMEOUT) -> Check:
    """Exists, is a shared library, dlopens and exports C_GetFunctionList; no PKCS#11 session is opened."""
    item = inert_line(str(path))
    fix = "correct pkcs11Module in DigiSign.conf (or --pkcs11-module), e.g. /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
    if not path.exists():
        return Check(PKCS11_MODULE, "fail", "does not exist", fix, item)
    if not path.is_file():
        return Check(PKCS11_MODULE, "fail", "is not a file", fix, item)
    why = elf_shared_object(path)
    if why:
        return Check(PKCS11_MODULE, "fail", why, fix, item)
    try:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _PKCS11_PROBE, str(path)], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Check(PKCS11_MODULE, "fail", f"loading it did not finish within {timeout:.0f} s", fix, item)
    if proc.returncode == 3:
        return Check(PKCS11_MODULE, "fail", f"cannot be loaded: {inert_line(proc.stdout.strip())}", fix, item)
    if proc.returncode == 4:
        return Check(PKCS11_MODULE, "fail", "loads, but exports no C_GetFunctionList: not a PKCS#11 module",
                     fix, item)
    if proc.returncode != 0:
        return Check(PKCS11_MODULE, "fail", f"loading it crashed the probe (exit {proc.returncode})", fix, item)
    return Check(PKCS11_MODULE, "ok", "a PKCS#11 module (loads, exports C_GetFunctionList)", item=item)


# --- trust -----------------------------------------------------------------------------------------------

def trust_checks(ca_pem: Path, home: Path, timeout: float = CERTUTIL_TIMEOUT, fix: str = FIX_TRUST) -> list[Check]:
    """The local CA in each store (Chromium's NSS db, each Firefox profile, the system store), from tls/trust;
    ``fix`` is the trust command (with the --state-dir that doctor was given)."""
    from digisign_web.tls import trust

    ca = trust.ca_info(ca_pem)
    if shutil.which(trust.CERTUTIL) is None:
        return [Check(TRUST, "fail", "certutil is missing: no browser store can be read or changed",
                      "sudo apt-get install libnss3-tools && " + fix)]
    try:
        results = trust.status(ca_pem, trust.find_stores(home, system=True), timeout)
    except trust.CertutilMissing as exc:  # removed between the two looks
        return [Check(TRUST, "fail", str(exc), "sudo apt-get install libnss3-tools")]
    return trust_lines(ca, results, fix)


def trust_lines(ca: CaInfo, results: Sequence[Result], fix: str = FIX_TRUST) -> list[Check]:
    """Per store, then the verdict: some browser (an NSS store) must trust the current CA."""
    from digisign_web.tls import trust

    checks = []
    for result in results:
        detail = f" ({inert_line(result.detail)})" if result.detail else ""
        item = inert_line(result.store.name)
        if result.store.kind == "system":
            # Browsers on Linux do not read it: information, for curl, Python and other clients.
            checks.append(Check(TRUST_STORE, "ok" if result.ok else "info",
                                f"{result.status}{detail}; only non-browser clients read it",
                                "" if result.ok else f"sudo {fix} --system", item))
        elif result.ok and result.status == trust.TRUSTED:
            checks.append(Check(TRUST_STORE, "ok", f"{result.status} [{result.store.path}]", item=item))
        else:
            checks.append(Check(TRUST_STORE, "warn", f"{result.status}{detail} [{result.store.path}]",
                                fix + " (then restart the browser)", item))
    if ca.sha256 is None:
        why = "; ".join(ca.problems) or "not created yet"
        checks.append(Check(TRUST, "fail", f"no local CA in {ca.path} ({why})", fix))
    elif not trust.browser_trusted(results):
        checks.append(Check(TRUST, "fail", "no browser trusts the local CA: pages cannot reach the server "
                            "(net::ERR_CERT_AUTHORITY_INVALID, 'Failed to fetch')", fix))
    elif ca.problems:
        checks.append(Check(TRUST, "warn", f"the local CA is of an old design: {'; '.join(ca.problems)}",
                            fix))
    else:
        names = [r.store.name for r in results if r.ok and r.store.kind == "nss"]
        checks.append(Check(TRUST, "ok", "the local CA is trusted by " + ", ".join(inert_line(n) for n in names)))
    return checks


# --- the SCS port ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Listener:
    """A listening TCP socket from /proc/net/tcp{,6}."""

    address: str
    port: int
    uid: int
    inode: int


@dataclass(frozen=True)
class Holder:
    """A process that has a listening socket open; ``pid`` None when its processes are not visible to us."""

    pid: int | None
    uid: int
    user: str
    name: str = ""
    cmdline: tuple[str, ...] = ()

    @property
    def digisign(self) -> bool:
        """Whether it is a ``digisign-web serve`` (installed script or ``python -m digisign_web``)."""
        args = [Path(a).name for a in self.cmdline]
        return "serve" in args and any(a in ("digisign-web", "digisign_web") for a in args)

    def describe(self) -> str:
        who = f"user {inert_line(self.user)} (uid {self.uid})"
        if self.pid is None:
            return f"a process of {who} (its pid is not visible to this user)"
        return f"{inert_line(self.name) or '?'} (pid {self.pid}, {who})"


def _address(hex_address: str) -> str:
    """The kernel's hex address (native-endian 32-bit words) as text: ``0100007F`` -> ``127.0.0.1``."""
    import ipaddress

    words = [int(hex_address[i:i + 8], 16) for i in range(0, len(hex_address), 8)]
    return str(ipaddress.ip_address(b"".join(struct.pack("=I", w) for w in words)))


def parse_listeners(text: str, port: int) -> list[Listener]:
    """The LISTEN rows for ``port`` of one /proc/net/tcp or tcp6 table (docs/decisions.md F34)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        if len(fields) < 10 or fields[3] != "0A" or ":" not in fields[1]:
            continue
        address, _, hex_port = fields[1].rpartition(":")
        try:
            if int(hex_port, 16) != port:
                continue
            found.append(Listener(_address(address), port, int(fields[7]), int(fields[9])))
        except ValueError:
            continue
    return found


def _blocks_loopback(address: str) -> bool:
    """Whether a listener on ``address`` keeps ``serve`` from binding the port on loopback."""
    import ipaddress

    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def listeners(port: int, proc: Path = Path("/proc")) -> list[Listener] | None:
    """The loopback (or wildcard) listeners on ``port``; None when the kernel tables cannot be read."""
    found: list[Listener] = []
    read_any = False
    for table in ("tcp", "tcp6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        read_any = True
        found += [entry for entry in parse_listeners(text, port) if _blocks_loopback(entry.address)]
    return found if read_any else None


def _user(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def socket_pids(inode: int, proc: Path = Path("/proc"), limit: int = PROC_FD_LIMIT) -> list[int]:
    """The processes with socket ``inode`` open (/proc/PID/fd links ``socket:[inode]``). Another user's fds
    are unreadable unless we are root: then nothing is found for them (docs/decisions.md F34)."""
    target = f"socket:[{inode}]"
    pids = []
    seen = 0
    try:
        entries = [e for e in os.scandir(proc) if e.name.isdigit()]
    except OSError:
        return []
    for entry in entries:
        try:
            fds = os.scandir(Path(entry.path) / "fd")
        except OSError:
            continue
        with fds:
            for fd in fds:
                seen += 1
                try:
                    if os.readlink(fd.path) == target:
                        pids.append(int(entry.name))
                        break
                except OSError:
                    continue
        if seen > limit:
            break
    return pids


def holders(listener: Listener, proc: Path = Path("/proc")) -> list[Holder]:
    """Who holds ``listener``: its processes where visible, else the socket's owner from the kernel table."""
    found = []
    for pid in socket_pids(listener.inode, proc):
        base = proc / str(pid)
        try:
            name = (base / "comm").read_text().strip()
            cmdline = tuple(a for a in (base / "cmdline").read_bytes().decode(errors="replace").split("\0") if a)
        except OSError:
            name, cmdline = "", ()
        found.append(Holder(pid, listener.uid, _user(listener.uid), name, cmdline))
    return found or [Holder(None, listener.uid, _user(listener.uid))]


def probe_version(host: str, port: int, ca_pem: Path, timeout: float = HTTPS_TIMEOUT) -> dict[str, object] | str:
    """``GET /version`` (and the playground's card list) over TLS verified against our CA, on loopback only.

    Returns the answer (with a ``cards`` entry when the playground status could be read) or why it failed."""
    import http.client
    import json
    import ssl

    if host not in ("127.0.0.1", "::1"):
        raise ValueError(f"doctor talks to loopback only, not {host}")
    if not ca_pem.exists():
        return f"no local CA at {ca_pem} to check its certificate with"
    try:
        context = ssl.create_default_context(cafile=str(ca_pem))
    except (OSError, ssl.SSLError) as exc:
        return f"cannot read the local CA {ca_pem}: {exc}"

    def get(path: str) -> object:
        connection = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
        try:
            connection.request("GET", path, headers={"Host": f"localhost:{port}", "Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(1 << 20)
            if response.status != 200:
                raise ValueError(f"{path} answered HTTP {response.status}")
            return json.loads(body)
        finally:
            connection.close()

    try:
        answer = get("/version")
    except ssl.SSLCertVerificationError as exc:
        return f"its certificate is not from the local CA in {ca_pem.parent.parent} ({exc.verify_message})"
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return f"/version did not answer: {exc or type(exc).__name__}"
    if not isinstance(answer, dict) or "version" not in answer:
        return "/version did not answer as an SCS server"
    try:
        status = get("/playground/status")
        if isinstance(status, dict) and isinstance(status.get("readers"), list):
            answer = {**answer, "cards": [r for r in status["readers"] if isinstance(r, dict) and r.get("card")]}
    except (OSError, ValueError, http.client.HTTPException) as exc:
        log.debug("playground status: %s", exc)
    return answer


@dataclass(frozen=True)
class PortState:
    """One port of the list: who listens on it, and (for our own server) what /version said."""

    port: int
    holders: tuple[Holder, ...] = ()
    answer: dict[str, object] | None = None
    error: str = ""  # our server did not answer as it should
    unknown: bool = False  # the kernel tables could not be read and binding failed: held, by whom unknown

    @property
    def free(self) -> bool:
        return not self.holders and not self.unknown

    @property
    def ours(self) -> bool:
        return any(h.digisign and h.uid == os.getuid() for h in self.holders)


def port_state(port: int, ca_pem: Path, proc: Path = Path("/proc")) -> PortState:
    """Who holds ``port`` on loopback, and for our own server whether ``/version`` answers with our CA."""
    found = listeners(port, proc)
    if found is None:  # no /proc: a bind tells free from held, not who holds it
        import socket

        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
                return PortState(port)
            except OSError:
                return PortState(port, unknown=True)
    if not found:
        return PortState(port)
    people: dict[tuple[int | None, int], Holder] = {}
    for listener in found:
        for holder in holders(listener, proc):
            people.setdefault((holder.pid, holder.uid), holder)
    state = PortState(port, tuple(people.values()))
    if state.ours:
        host = "127.0.0.1" if any(":" not in entry.address for entry in found) else "::1"
        answer = probe_version(host, port, ca_pem)
        if isinstance(answer, str):
            return PortState(port, state.holders, error=answer)
        return PortState(port, state.holders, answer=answer)
    return state


def _server_summary(state: PortState) -> str:
    pids = ", ".join(str(h.pid) for h in state.holders if h.digisign and h.pid is not None)
    answer = state.answer or {}
    text = f"digisign-web (pid {pids or '?'}) answers on https://localhost:{state.port}/ with the local CA, " \
           f"SCS {inert_line(str(answer.get('version')))}"
    cards = answer.get("cards")
    if isinstance(cards, list):
        names = []
        for card in cards:
            token = card.get("token") if isinstance(card.get("token"), dict) else {}
            names.append(f"{inert_line(str(token.get('label') or token.get('profile') or 'card'))} in "
                         f"{inert_line(str(card.get('name')))}")
        text += f", {len(cards)} card(s)" + (": " + "; ".join(names) if names else "")
    elif answer.get("signatureAlgorithms"):
        text += f", card algorithms {inert_line(str(answer['signatureAlgorithms']))}"
    return text


def _who(states: Sequence[PortState]) -> str:
    return "; ".join(f"port {s.port} is held by "
                     + (", ".join(h.describe() for h in s.holders) if s.holders else "an unknown process")
                     for s in states)


def port_check(states: Sequence[PortState], serve: str = FIX_SERVE) -> Check:
    """The SCS port verdict over the port list, which ``serve`` claims first-free-wins and clients ask in order
    (F17): our server answering is ok; free is a warning (nothing serves yet); held by others everywhere fails."""
    ports = ",".join(str(s.port) for s in states)
    fix_taken = ("stop that program, or give digisign-web a free port: --port PORT, or httpsPorts in "
                 "DigiSign.conf (clients ask 53952 first, then 23124 and 8089)")
    for index, state in enumerate(states):
        if not state.ours:
            continue
        if state.error:
            fix = ("run doctor with the --state-dir that serve uses, or restart serve with this one"
                   if "certificate" in state.error else
                   "restart it (systemctl --user restart digisign-web, or stop it and run digisign-web serve)")
            return Check(PORT, "fail", f"digisign-web holds port {state.port} but {inert_line(state.error)}", fix,
                         str(state.port))
        before = [s for s in states[:index] if not s.free]
        if before:
            return Check(PORT, "warn", f"{_server_summary(state)}; but {_who(before)}, and clients ask there first",
                         fix_taken, ports)
        return Check(PORT, "ok", _server_summary(state), item=str(state.port))
    taken = [s for s in states if not s.free]
    free = next((s for s in states if s.free), None)
    if free is None:
        return Check(PORT, "fail", _who(taken), fix_taken, ports)
    if taken:
        return Check(PORT, "warn", f"{_who(taken)}; serve would take port {free.port}, which clients ask later",
                     f"{fix_taken}; or start it there: {serve}", ports)
    return Check(PORT, "warn", f"port {free.port} is free, but no digisign-web server is running", serve,
                 str(free.port))


# --- Chromium's Local Network Access ---------------------------------------------------------------------

def local_network_hint() -> Check:
    """What a Chromium user sees when a public site calls the server, and how to allow it (F21, F33).

    The permission lives in the browser and is checked before anything reaches the server, so doctor cannot
    see it; it can only say what to look for."""
    return Check(LOCAL_NETWORK_ACCESS, "info",
                 "Chromium/Chrome 142 and later ask before a page on a public site may call this server: the "
                 "prompt says the site wants to look for and connect to devices on your local network (from 145: "
                 "apps and services on this device). Choose Allow. Until it is allowed, signing fails with "
                 "'Failed to fetch' and nothing reaches digisign-web. Firefox does not ask",
                 "if you blocked it: click the site-information icon left of the address, open Site settings, "
                 "set Local network access (or Apps on device) to Allow, and reload the page")


# --- the runner ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DoctorOptions:
    state_dir: Path
    home: Path
    settings: Settings
    policy: CardPolicy
    ports: tuple[int, ...]
    wait: float = 2.0
    state_option: str = ""  # " --state-dir DIR" when doctor was given one, for the commands it suggests
    proc: Path = field(default=Path("/proc"))


def run_checks(options: DoctorOptions) -> list[Check]:
    """Every check, in the order a user would fix things. Cards are read when pcscd has readers or a
    pkcs11Module loads (the card manager reads PKCS#11 tokens beside PC/SC where the policy names modules)."""
    settings = options.settings
    checks = settings_checks(settings)
    probe = probe_pcsc()
    checks.append(pcscd_check(probe, pcscd_installed(), pcscd_socket()))
    if probe.readers is not None:
        checks += reader_checks(probe.readers, options.policy.exclude_reader)
    # pkcs11Module and --pkcs11-module, joined where the card manager gets them (settings.card_policy).
    modules = [pkcs11_check(Path(path)) for path in options.policy.pkcs11_modules]
    checks += modules
    # Only the modules that passed the probe are loaded here: one that crashed or hung the child would take
    # doctor itself down (D55).
    policy = dataclasses.replace(options.policy, pkcs11_modules=tuple(
        path for path, module in zip(options.policy.pkcs11_modules, modules, strict=True) if module.status == "ok"))
    if probe.readers or policy.pkcs11_modules:
        reports = card_reports(policy, options.wait)
        if isinstance(reports, str):
            checks.append(Check(CARD, "fail", f"the cards could not be read: {inert_line(reports)}",
                                "take the card out and put it back; check that no other program holds it"))
            checks.append(Check(SIGNING_CERTIFICATE, "fail", "no card could be read", "see the card line above"))
        else:
            checks += card_checks(reports, settings.cert_expiration_warning_days)
    elif probe.readers is None:
        checks.append(Check(SIGNING_CERTIFICATE, "fail", "no card can be read without pcscd",
                            "fix pcscd first (see above)"))
    else:
        checks.append(Check(SIGNING_CERTIFICATE, "fail", "no card reader, so no card",
                            "see the readers line above"))
    ca_pem = options.state_dir / "tls" / "ca.pem"
    checks += trust_checks(ca_pem, options.home, fix=f"digisign-web trust install{options.state_option}")
    states = [port_state(port, ca_pem, options.proc) for port in options.ports]
    serve = (f"digisign-web serve{options.state_option} (or, to start it at every login: "
             f"digisign-web service install{options.state_option})")
    checks.append(port_check(states, serve))
    checks.append(local_network_hint())
    return checks


def report(checks: Sequence[Check]) -> dict[str, object]:
    """The --json document: ``{"ok": bool, "checks": [{name, status, summary, fix, item}, ...]}``."""
    return {"ok": verdict(checks), "checks": [c.to_dict() for c in checks]}
