"""``digisign_web.doctor``'s decisions on sample data: the /proc socket tables, who holds a port, the port,
pcscd, reader, certificate and trust lines, the exit-code rule and the JSON shape (D53, D54, D55).

The I/O around them (pcscd, a card, certutil, a running server) is tested in tests/integration/test_doctor.py;
here a fake /proc tree in a temporary directory stands in for the kernel's, built from real table text."""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest

from digisign_web import doctor
from digisign_web.doctor import CardReport, CertReport, Check, Holder, PortState
from digisign_web.settings import load_settings
from digisign_web.tls import trust
from digisign_web.wildcards import matcher
from tests.support.paths import ROOT

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)

# /proc/net/tcp as the kernel prints it: 127.0.0.1:53952 listening (uid 1234, inode 4242), 0.0.0.0:8089
# listening, an established connection from 53952, and a listener on 192.168.1.5:23124 (not loopback).
# Each row's tail after the inode ("1 0000000000000000 100 0 0 10 0") is left out: nothing reads it.
TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D2C0 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1234        0 4242 1
   1: 00000000:1F99 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5151 1
   2: 0100007F:D2C0 0100007F:A0B4 01 00000000:00000000 00:00000000 00000000  1234        0 6161 1
   3: 0501A8C0:5A54 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1234        0 7171 1
"""
# /proc/net/tcp6: [::1]:53952 listening (same owner, inode 4343), and [::]:23124 listening by uid 0.
V6_LOOPBACK, V6_ANY = "0" * 24 + "01000000", "0" * 32
TCP6 = f"""\
  sl  local_address                         remote_address                        st tx_queue rx_queue ...
   0: {V6_LOOPBACK}:D2C0 {V6_ANY}:0000 0A 00000000:00000000 00:00000000 00000000  1234        0 4343 1
   1: {V6_ANY}:5A54 {V6_ANY}:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8181 1
"""


def fake_proc(root: Path, processes: dict[int, tuple[str, list[str], list[int]]]) -> Path:
    """A /proc with the two tables and, per pid, comm, cmdline and fd links to the given socket inodes."""
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(TCP)
    (root / "net" / "tcp6").write_text(TCP6)
    for pid, (comm, cmdline, inodes) in processes.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in cmdline) + b"\0")
        os.symlink("/dev/null", root / str(pid) / "fd" / "0")
        for number, inode in enumerate(inodes, 3):
            os.symlink(f"socket:[{inode}]", root / str(pid) / "fd" / str(number))
    return root


# --- /proc parsing and who holds a port -----------------------------------------------------------------------

def test_parse_listeners_reads_listen_rows_of_the_port() -> None:
    found = doctor.parse_listeners(TCP, 53952)
    assert [(x.address, x.uid, x.inode) for x in found] == [("127.0.0.1", 1234, 4242)]  # not the connection
    assert [(x.address, x.inode) for x in doctor.parse_listeners(TCP6, 53952)] == [("::1", 4343)]
    assert [x.address for x in doctor.parse_listeners(TCP, 8089)] == ["0.0.0.0"]
    assert doctor.parse_listeners(TCP, 1) == []
    assert doctor.parse_listeners("garbage\n 0: nonsense 0A\n", 53952) == []


def test_listeners_keep_loopback_and_wildcard_only(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "proc", {})
    assert {x.address for x in doctor.listeners(53952, proc)} == {"127.0.0.1", "::1"}
    assert [x.address for x in doctor.listeners(23124, proc)] == ["::"]  # 192.168.1.5 does not block loopback
    assert doctor.listeners(53952, tmp_path / "no-proc") is None


def test_port_held_by_another_program_names_it(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "proc", {777: ("nginx", ["nginx: master process"], [4242, 4343])})
    state = doctor.port_state(53952, tmp_path / "ca.pem", proc)
    assert [(h.pid, h.name, h.uid) for h in state.holders] == [(777, "nginx", 1234)]
    assert not state.ours and not state.free
    check = doctor.port_check([state])
    assert check.status == "fail" and check.item == "53952"
    assert "port 53952 is held by nginx (pid 777, user" in check.summary and "(uid 1234)" in check.summary
    assert "--port" in check.fix


def test_a_process_we_cannot_see_is_named_by_its_owner(tmp_path: Path) -> None:
    """Another user's process: its fds are unreadable, so only the socket's owner (uid) can be told."""
    proc = fake_proc(tmp_path / "proc", {})
    state = doctor.port_state(53952, tmp_path / "ca.pem", proc)
    assert [h.pid for h in state.holders] == [None]
    check = doctor.port_check([state])
    assert check.status == "fail"
    assert "a process of user" in check.summary and "(uid 1234)" in check.summary and "not visible" in check.summary


def test_a_free_port_is_a_warning_and_a_taken_first_port_says_where_serve_goes(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path / "proc", {999: ("python3", ["python3", "-m", "http.server"], [4242])})
    free = doctor.port_state(23125, tmp_path / "ca.pem", proc)
    assert free.free
    check = doctor.port_check([free], serve="digisign-web serve --state-dir /x")
    assert (check.status, check.fix) == ("warn", "digisign-web serve --state-dir /x")
    taken = doctor.port_state(53952, tmp_path / "ca.pem", proc)
    check = doctor.port_check([taken, free])
    assert check.status == "warn" and "python3 (pid 999" in check.summary and "serve would take port 23125" \
        in check.summary


def test_our_server_answering_is_ok_and_not_answering_fails() -> None:
    me = os.getuid()
    ours = Holder(4321, me, "me", "python", ("/venv/bin/python", "-m", "digisign_web", "serve", "--port", "5"))
    answered = PortState(53952, (ours,), answer={"version": "1.1", "cards": [
        {"name": "Virtual PCD 00 00", "card": True, "token": {"label": "FINEID", "profile": "fineid-v4"}}]})
    check = doctor.port_check([answered])
    assert check.status == "ok"
    assert "pid 4321" in check.summary and "SCS 1.1" in check.summary and "1 card(s): FINEID in Virtual PCD 00 00" \
        in check.summary
    broken = PortState(53952, (ours,), error="its certificate is not from the local CA in /s")
    check = doctor.port_check([broken])
    assert check.status == "fail" and "not from the local CA" in check.summary and "--state-dir" in check.fix
    silent = PortState(53952, (ours,), error="/version did not answer: timed out")
    assert "restart" in doctor.port_check([silent]).fix
    stranger = PortState(53952, (Holder(9, me + 1, "bob", "nc", ("nc", "-l")),))
    check = doctor.port_check([stranger, PortState(23124, (ours,), answer={"version": "1.1"})])
    assert check.status == "warn" and "answers on https://localhost:23124/" in check.summary
    assert "port 53952 is held by nc (pid 9, user bob" in check.summary


def test_only_a_digisign_serve_of_this_user_is_ours() -> None:
    me = os.getuid()
    assert Holder(1, me, "me", "digisign-web", ("/usr/bin/python3", "/usr/bin/digisign-web", "serve")).digisign
    assert not Holder(1, me, "me", "python", ("python", "-m", "digisign_web", "virtual-card")).digisign
    assert not Holder(1, me, "me", "nc", ("nc", "-l", "53952")).digisign
    other = Holder(1, me + 1, "bob", "python", ("python", "-m", "digisign_web", "serve"))
    assert not PortState(53952, (other,)).ours


def test_probe_version_talks_to_loopback_only(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        doctor.probe_version("192.0.2.1", 53952, tmp_path / "ca.pem")
    assert "no local CA" in str(doctor.probe_version("127.0.0.1", 53952, tmp_path / "ca.pem"))


# --- pcscd and readers -----------------------------------------------------------------------------------------

def test_pcscd_lines_tell_not_installed_from_not_running() -> None:
    no_service = doctor.PcscProbe(code=doctor.SCARD_E_NO_SERVICE, message="Service not available.")
    check = doctor.pcscd_check(no_service, installed=False, socket="/run/pcscd/pcscd.comm")
    assert (check.status, check.fix) == ("fail", "sudo apt-get install pcscd") and "not installed" in check.summary
    check = doctor.pcscd_check(no_service, installed=True, socket="/tmp/x.comm")
    assert (check.status, check.fix) == ("fail", "sudo systemctl start pcscd.socket")
    assert "not running" in check.summary and "/tmp/x.comm" in check.summary
    check = doctor.pcscd_check(doctor.PcscProbe(library="OSError: libpcsclite.so.1"), True, "s")
    assert check.status == "fail" and "libpcsclite1" in check.fix
    check = doctor.pcscd_check(doctor.PcscProbe(code=0x80100001, message="Internal error."), True, "s")
    assert check.status == "fail" and "0x80100001" in check.summary
    assert doctor.pcscd_check(doctor.PcscProbe(readers=()), True, "s").status == "ok"


def test_reader_lines_name_the_excluded_ones() -> None:
    readers = ["Virtual PCD 00 00", "Virtual PCD 00 01", "O2Micro CCID"]
    checks = doctor.reader_checks(readers, matcher("*01 *O2*", "excludeReader"))
    assert checks[0].status == "ok" and checks[0].summary == "1 reader(s): Virtual PCD 00 00"
    excluded = [c for c in checks if c.name == "excluded-reader"]
    assert [c.item for c in excluded] == ["Virtual PCD 00 01", "O2Micro CCID"]
    assert all(c.status == "info" and "excludeReader '*01 *O2*'" in c.summary for c in excluded)
    none = doctor.reader_checks([], None)
    assert none[0].status == "fail" and "no card reader" in none[0].summary
    all_out = doctor.reader_checks(readers[:1], matcher("*", "excludeReader"))
    assert all_out[0].status == "fail" and "every reader is excluded" in all_out[0].summary


# --- cards, certificates, expiry -------------------------------------------------------------------------------

def cert(role: str, days_left: float, *, blocked: bool = False, starts_in: float = -300) -> CertReport:
    return CertReport(role, f"TEST {role.upper()}", "EC secp384r1", NOW + dt.timedelta(days=starts_in),
                      NOW + dt.timedelta(days=days_left), "PIN2" if role == "signature" else "PIN1", blocked)


def test_certificate_lines_follow_expiry_and_pin_state() -> None:
    line = doctor.certificate_check("R", cert("signature", 400), 30, NOW)
    assert line.status == "ok" and "expires 2028-01-04 (in 400 days)" in line.summary and line.item == "R: signature"
    line = doctor.certificate_check("R", cert("signature", 10), 30, NOW)
    assert line.status == "warn" and "(in 10 days): fewer than 30 days left" in line.summary
    line = doctor.certificate_check("R", cert("signature", -1), 30, NOW)
    assert line.status == "fail" and "expired on 2026-11-29" in line.summary and "new card" in line.fix
    line = doctor.certificate_check("R", cert("authentication", 400, starts_in=5), 30, NOW)
    assert line.status == "fail" and "not valid before" in line.summary
    line = doctor.certificate_check("R", cert("signature", 400, blocked=True), 30, NOW)
    assert line.status == "fail" and line.fix == "digisign-web pin unblock --pin2 (with the PUK)"
    assert doctor.certificate_check("R", cert("signature", 10), 5, NOW).status == "ok"  # warning days apply


def card(*certs: CertReport, reader: str = "Virtual PCD 00 00") -> CardReport:
    return CardReport(reader, b"\x3b\x7f", "fineid-v4", "FINEID v4", "123", "FINEID", certificates=certs)


def test_signing_certificate_needs_a_usable_signature_certificate() -> None:
    def signing(reports: list[CardReport]) -> Check:
        return next(c for c in doctor.card_checks(reports, 30, NOW) if c.name == "signing-certificate")

    assert signing([card(cert("signature", 400), cert("authentication", -1))]).status == "ok"
    assert signing([card(cert("signature", 5))]).status == "ok"  # expiring soon still signs
    expired = signing([card(cert("signature", -1), cert("authentication", 400))])
    assert expired.status == "fail" and "usable" in expired.summary
    assert signing([card(cert("signature", 400, blocked=True))]).status == "fail"
    empty = signing([CardReport("Virtual PCD 00 00", None)])
    assert empty.status == "fail" and "no card" in empty.summary and "insert" in empty.fix
    unusable = doctor.card_checks([CardReport("R", b"\x3b\x00", problem="no PKCS#15 application")], 30, NOW)
    assert unusable[0].status == "fail" and "3B 00" in unusable[0].summary and "supported" in unusable[0].fix
    held = CardReport("R", b"\x3b", problem="cannot connect: Sharing violation. (0x8010000B)")
    assert "exclusively" in doctor.card_checks([held], 30, NOW)[0].fix


def test_outside_text_is_inert_in_every_line() -> None:
    """Reader names, card labels and certificate names come from outside: an ESC never reaches the terminal."""
    report = CardReport("Evil\x1b[2JReader", b"\x3b", "p", "d\u202e", "1", "L\x07",
                        certificates=(CertReport("signature", "CN\x1b]0;x", "EC", NOW, NOW, "PIN2"),))
    lines = [c.line() for c in doctor.card_checks([report], 30, NOW)]
    assert lines and not any("\x1b" in line or "\x07" in line or "\u202e" in line for line in lines)
    assert any("Evil␛[2JReader" in line for line in lines)


# --- settings, trust, pkcs11, the hint ------------------------------------------------------------------------

def test_settings_lines(tmp_path: Path) -> None:
    conf = tmp_path / "DigiSign.conf"
    conf.write_text("excludReader=*01\ncertExpirationWarningDays=abc\ncloseBrowsers=1\n")
    settings = load_settings(conf, env={})
    checks = doctor.settings_checks(settings)
    assert checks[0].status == "info" and str(conf) in checks[0].summary
    warns = [c for c in checks if c.status == "warn"]
    assert len(warns) == 2 and "excludReader" in warns[0].summary and "certExpirationWarningDays" in warns[1].summary
    assert checks[-1].status == "info" and "ignored" in checks[-1].summary
    assert doctor.settings_checks(load_settings(None, env={"HOME": str(tmp_path)}))[0].summary.startswith("no ")


def store_result(name: str, kind: str, ok: bool, status: str = trust.TRUSTED) -> trust.Result:
    return trust.Result(trust.Store(name, kind, Path("/x") / name), status if ok else trust.NOT_TRUSTED, ok)  # type: ignore[arg-type]


def test_trust_needs_one_browser_store() -> None:
    ca = trust.CaInfo(Path("/s/tls/ca.pem"), "ab" * 32, "2028-01-01", ["DNS:localhost"], [])
    fix = "digisign-web trust install --state-dir /s"
    lines = doctor.trust_lines(ca, [store_result("Chromium/Chrome", "nss", True),
                                    store_result("Firefox (p)", "nss", False),
                                    store_result("system (ca-certificates)", "system", False)], fix)
    by_item = {c.item: c for c in lines}
    assert by_item["Chromium/Chrome"].status == "ok"
    assert by_item["Firefox (p)"].status == "warn" and by_item["Firefox (p)"].fix.startswith(fix)
    assert by_item["system (ca-certificates)"].status == "info"
    assert lines[-1].name == "trust" and lines[-1].status == "ok" and "Chromium/Chrome" in lines[-1].summary
    only_system = doctor.trust_lines(ca, [store_result("Chromium/Chrome", "nss", False),
                                          store_result("system (ca-certificates)", "system", True)], fix)
    assert (only_system[-1].status, only_system[-1].fix) == ("fail", fix)
    missing = trust.CaInfo(Path("/s/tls/ca.pem"), None, None, [], [])
    assert doctor.trust_lines(missing, [], fix)[-1].status == "fail"
    old = trust.CaInfo(Path("/s/tls/ca.pem"), "ab" * 32, "2030-01-01", [], ["no name constraints"])
    assert doctor.trust_lines(old, [store_result("Chromium/Chrome", "nss", True)], fix)[-1].status == "warn"


def test_pkcs11_module_checks(tmp_path: Path) -> None:
    """Real files: a text file, libc (a library, but not PKCS#11) and OpenSC's module, loaded in a child."""
    text = tmp_path / "module.so"
    text.write_text("not a library")
    assert doctor.pkcs11_check(tmp_path / "missing.so").summary == "does not exist"
    assert doctor.pkcs11_check(text).summary == "not an ELF file"
    libc = next(p for p in (Path("/lib/x86_64-linux-gnu/libc.so.6"), Path("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                            Path("/lib64/libc.so.6")) if p.exists())
    check = doctor.pkcs11_check(libc)
    assert check.status == "fail" and "C_GetFunctionList" in check.summary
    opensc = Path("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")
    assert opensc.exists(), "OpenSC is part of the test stack (scripts/test-deps.sh)"
    check = doctor.pkcs11_check(opensc)
    assert check.status == "ok", check
    assert doctor.elf_shared_object(Path(sys.executable)) in ("", "an ELF file, but not a shared library")


def test_local_network_hint_is_information_with_the_way_to_allow() -> None:
    hint = doctor.local_network_hint()
    assert hint.status == "info" and "Allow" in hint.summary and "Site settings" in hint.fix


# --- the verdict, the lines and --json -------------------------------------------------------------------------

def good() -> list[Check]:
    return [Check("pcscd", "ok", "running"), Check("signing-certificate", "ok", "usable"),
            Check("trust", "ok", "trusted"), Check("port", "warn", "free", "digisign-web serve"),
            Check("certificate", "fail", "authentication: expired", "new card", "R: authentication"),
            Check("settings", "warn", "typo", "fix it")]


def test_verdict_counts_only_what_stops_a_browser_signature() -> None:
    assert doctor.verdict(good())
    for name in doctor.REQUIRED:
        failed = [c if c.name != name else Check(name, "fail", "x", "y") for c in good()]
        assert not doctor.verdict(failed), name
        assert not doctor.verdict([c for c in good() if c.name != name]), name  # missing is not ok either


def test_line_shows_the_fix_only_when_not_ok() -> None:
    assert Check("pcscd", "ok", "running", "never shown").line() == "OK    pcscd: running"
    assert Check("trust-store", "warn", "not trusted", "digisign-web trust install", "Firefox (a)").line() == \
        "WARN  trust-store [Firefox (a)]: not trusted  -> fix: digisign-web trust install"


def test_json_shape_is_stable() -> None:
    document = json.loads(json.dumps(doctor.report(good())))
    assert set(document) == {"ok", "checks"} and document["ok"] is True
    assert all(set(c) == {"name", "status", "summary", "fix", "item"} for c in document["checks"])
    assert {c["name"] for c in document["checks"]} <= {
        doctor.SETTINGS, doctor.PCSCD, doctor.READERS, doctor.EXCLUDED_READER, doctor.CARD, doctor.CERTIFICATE,
        doctor.SIGNING_CERTIFICATE, doctor.PKCS11_MODULE, doctor.TRUST_STORE, doctor.TRUST, doctor.PORT,
        doctor.LOCAL_NETWORK_ACCESS}


def test_doctor_imports_no_web_layer() -> None:
    """D53: doctor must work where the server cannot start, so neither it nor its command imports
    digisign_web.web or aiohttp, at any level (test_layers.py does not list doctor)."""
    for path in (ROOT / "digisign_web" / "doctor.py", ROOT / "digisign_web" / "cli" / "doctor.py"):
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names.append(node.module or "")
        assert names and not [n for n in names if n.startswith(("digisign_web.web", "aiohttp"))], path


def test_bounded_gives_up_on_a_hung_call() -> None:
    import threading

    hang = threading.Event()
    with pytest.raises(TimeoutError):
        doctor._bounded(lambda: hang.wait(5), 0.05, "a hung pcscd")
    hang.set()
    with pytest.raises(ZeroDivisionError):
        doctor._bounded(lambda: 1 / 0, 1, "x")


def test_cards_are_read_only_through_modules_that_passed_the_probe(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """D55: a module whose probe failed (here libc: no C_GetFunctionList) is reported, never loaded into doctor's
    own process by the card manager. pcscd and the other checks are stand-ins: only the policy matters here."""
    from card import CardPolicy

    good, bad = str(tmp_path / "good.so"), "/lib/x86_64-linux-gnu/libc.so.6"
    seen: list[CardPolicy] = []
    monkeypatch.setattr(doctor, "probe_pcsc", lambda: doctor.PcscProbe(readers=["Virtual PCD 00 00"]))
    monkeypatch.setattr(doctor, "pkcs11_check", lambda path: Check(doctor.PKCS11_MODULE, "ok" if str(path) == good
                                                                   else "fail", "", "", str(path)))
    monkeypatch.setattr(doctor, "card_reports", lambda policy, wait: seen.append(policy) or [])
    monkeypatch.setattr(doctor, "trust_checks", lambda *a, **k: [])
    monkeypatch.setattr(doctor, "port_state", lambda *a: PortState(53952, []))
    options = doctor.DoctorOptions(tmp_path, tmp_path, load_settings(), CardPolicy(pkcs11_modules=(bad, good)),
                                   (53952,))
    doctor.run_checks(options)
    assert [p.pkcs11_modules for p in seen] == [(good,)]
