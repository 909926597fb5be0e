"""``digisign-web doctor`` through the real stack: pcscd with vpcd and the virtual card in another process, a
real ``serve`` over HTTPS, real NSS databases written by ``trust install``, real listeners on real ports.

Each test gives doctor its own HOME (the NSS databases), XDG_CONFIG_HOME (no user DigiSign.conf) and state
directory (the local CA), so nothing of the machine's own setup leaks in. Run with ``flock /tmp/vpcd.lock``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from card.virtual.pki import CERT_DAYS_ENV
from tests.support.cli import cli_env
from tests.support.net import free_port
from tests.support.paths import ROOT
from tests.support.servers import start_server, stop

pytestmark = pytest.mark.pcscd

CARD_READER = "Virtual PCD 00 00"  # vpcd port 35963, where vpcd_card puts the card by default
EMPTY_READER = "Virtual PCD 00 01"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own virtual-card PKI (the expired-certificate test rewrites it; others' stay as they are)."""
    return tmp_path_factory.mktemp("doctor-pki")


@dataclass
class Doctor:
    home: Path
    config_home: Path
    state: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {**cli_env(), "HOME": str(self.home), "XDG_CONFIG_HOME": str(self.config_home), **extra}
        env.pop("DIGISIGN_CONF", None)
        return env

    def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
        """``doctor --json`` with this HOME and state directory: (exit code, the JSON report)."""
        proc = subprocess.run([sys.executable, "-m", "digisign_web", "doctor", "--json", "--state-dir",
                               str(self.state), "--wait", "5", *args], cwd=ROOT, env=env or self.env(),
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode in (0, 1), proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def trust_install(self) -> None:
        proc = subprocess.run([sys.executable, "-m", "digisign_web", "trust", "install", "--state-dir",
                               str(self.state)], cwd=ROOT, env=self.env(), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def checks(report: dict, name: str) -> list[dict]:
    return [c for c in report["checks"] if c["name"] == name]


def only(report: dict, name: str) -> dict:
    found = checks(report, name)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def doctor(tmp_path: Path) -> Doctor:
    home = tmp_path / "home"
    home.mkdir()
    return Doctor(home, tmp_path / "config", tmp_path / "state")


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Another program on a port: a plain Python socket listener in its own process."""
    port = free_port()
    code = ("import socket, sys, time\ns = socket.socket()\ns.bind(('127.0.0.1', int(sys.argv[1])))\n"
            "s.listen()\nprint('ready', flush=True)\ntime.sleep(120)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process, port
    process.kill()
    process.wait(5)


def test_healthy_setup_exits_0_with_every_line_ok(vpcd_card, doctor: Doctor, tmp_path: Path) -> None:
    """Card in pcscd, CA trusted in the NSS db of HOME, our server on the port: exit 0, nothing warns or fails."""
    vpcd_card("fineid-v4")
    server = start_server(tmp_path, port=free_port())  # state in tmp_path/state: the CA doctor checks
    try:
        doctor.trust_install()
        code, report = doctor.run("--port", str(server.port))
    finally:
        stop(server)
    assert code == 0 and report["ok"] is True, report
    assert {c["status"] for c in report["checks"]} <= {"ok", "info"}, report
    for name in ("pcscd", "readers", "signing-certificate", "trust", "port"):
        assert only(report, name)["status"] == "ok"
    cards = {c["item"]: c for c in checks(report, "card")}
    assert cards[CARD_READER]["status"] == "ok" and "fineid-v4" in cards[CARD_READER]["summary"]
    assert cards[EMPTY_READER]["status"] == "info"
    roles = {c["item"]: c for c in checks(report, "certificate")}
    assert {f"{CARD_READER}: signature", f"{CARD_READER}: authentication"} <= set(roles)
    assert all(c["status"] == "ok" and " (in " in c["summary"] for c in roles.values())
    stores = {c["item"]: c["status"] for c in checks(report, "trust-store")}
    assert stores["Chromium/Chrome"] == "ok"
    port = only(report, "port")
    assert f"pid {server.process.pid}" in port["summary"] and "SCS 1.1" in port["summary"], port
    assert "1 card(s)" in port["summary"], port
    assert only(report, "local-network-access")["status"] == "info"


def test_port_held_by_another_program_names_it_and_fails(vpcd_card, doctor: Doctor, listener) -> None:
    process, port = listener
    vpcd_card("fineid-v4")
    doctor.trust_install()
    code, report = doctor.run("--port", str(port))
    assert code == 1 and report["ok"] is False
    check = only(report, "port")
    assert check["status"] == "fail", check
    assert f"pid {process.pid}" in check["summary"] and "python" in check["summary"], check
    assert f"port {port} is held by" in check["summary"]
    assert "--port" in check["fix"] and "httpsPorts" in check["fix"]
    # Everything else is fine: the port alone decides.
    assert only(report, "signing-certificate")["status"] == "ok"
    assert only(report, "trust")["status"] == "ok"


def test_no_card_fails_with_the_fix(pcscd, doctor: Doctor) -> None:
    code, report = doctor.run("--port", str(free_port()))
    assert code == 1
    assert only(report, "pcscd")["status"] == "ok"
    assert {c["item"]: c["status"] for c in checks(report, "card")} == {CARD_READER: "info", EMPTY_READER: "info"}
    signing = only(report, "signing-certificate")
    assert signing["status"] == "fail" and "no card" in signing["summary"] and "insert" in signing["fix"]
    trust = only(report, "trust")  # nothing created yet in this state directory
    assert trust["status"] == "fail" and trust["fix"] == f"digisign-web trust install --state-dir {doctor.state}"


def test_settings_typo_warns_and_excluded_reader_is_reported(vpcd_card, doctor: Doctor, tmp_path: Path) -> None:
    vpcd_card("fineid-v4")
    config = tmp_path / "DigiSign.conf"
    config.write_text("excludeReader=*01\ncertExpirationWarnigDays=60\n")
    code, report = doctor.run("--config", str(config), "--port", str(free_port()))
    assert code == 1  # no CA trusted in this HOME
    warnings = [c for c in checks(report, "settings") if c["status"] == "warn"]
    assert len(warnings) == 1 and "certExpirationWarnigDays" in warnings[0]["summary"], warnings
    assert any(str(config) in c["summary"] for c in checks(report, "settings") if c["status"] == "info")
    excluded = only(report, "excluded-reader")
    assert excluded["item"] == EMPTY_READER and "excludeReader '*01'" in excluded["summary"]
    assert EMPTY_READER not in only(report, "readers")["summary"]
    assert [c["item"] for c in checks(report, "card")] == [CARD_READER]


def test_expired_signature_certificate_fails(vpcd_card, doctor: Doctor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The virtual card issues a signature certificate that expired yesterday: that line fails, signing too,
    while the authentication certificate (expiring in 10 days) only warns."""
    monkeypatch.setenv(CERT_DAYS_ENV, "sign=-1,auth=10")
    vpcd_card("fineid-v4")
    doctor.trust_install()
    code, report = doctor.run("--port", str(free_port()))
    assert code == 1
    roles = {c["item"]: c for c in checks(report, "certificate")}
    signature, authentication = roles[f"{CARD_READER}: signature"], roles[f"{CARD_READER}: authentication"]
    assert signature["status"] == "fail" and "expired on" in signature["summary"], signature
    assert authentication["status"] == "warn" and "fewer than 30 days left" in authentication["summary"], \
        authentication
    assert only(report, "signing-certificate")["status"] == "fail"
    assert only(report, "trust")["status"] == "ok"


def test_pcscd_not_running(doctor: Doctor, tmp_path: Path) -> None:
    """libpcsclite connects to $PCSCLITE_CSOCK_NAME: a socket nobody serves is pcscd not running."""
    socket = tmp_path / "no-pcscd.comm"
    code, report = doctor.run("--port", str(free_port()), env=doctor.env(PCSCLITE_CSOCK_NAME=str(socket)))
    assert code == 1
    check = only(report, "pcscd")
    assert check["status"] == "fail" and "not running" in check["summary"] and str(socket) in check["summary"]
    assert check["fix"] == "sudo systemctl start pcscd.socket"
    assert only(report, "signing-certificate")["status"] == "fail"
    assert not checks(report, "readers")


def test_text_output_one_line_per_check(pcscd, doctor: Doctor) -> None:
    """Without --json: one line per check with its status, the fix on the same line, and the verdict last."""
    proc = subprocess.run([sys.executable, "-m", "digisign_web", "doctor", "--state-dir", str(doctor.state),
                           "--port", str(free_port()), "--wait", "1"], cwd=ROOT, env=doctor.env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line[:6] in ("OK    ", "WARN  ", "FAIL  ", "INFO  ") for line in lines[:-1]), lines
    assert any(line.startswith("FAIL  signing-certificate: no card in any reader  -> fix: insert") for line in lines)
    assert any(line.startswith("OK    pcscd: running") and "fix" not in line for line in lines)
    assert lines[-1].startswith("Signing from a browser will not work")


def test_usage_errors_exit_2_in_one_line(doctor: Doctor, tmp_path: Path) -> None:
    for args in (["--config", str(tmp_path / "missing.conf")], ["--port", "0"], ["--wait", "soon"]):
        proc = subprocess.run([sys.executable, "-m", "digisign_web", "doctor", "--state-dir", str(doctor.state),
                               *args], cwd=ROOT, env=doctor.env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr, args


def test_a_pkcs11_token_signs_without_pcscd(softhsm_token, doctor: Doctor, tmp_path: Path) -> None:
    """pcscd not running, but a SoftHSM2 token with a signature key through --pkcs11-module: browser signing
    would work (the port is free, which only warns), so doctor exits 0 with the pcscd line failed."""
    token = softhsm_token(keys=(("p384", "signature"),))
    doctor.trust_install()
    env = doctor.env(PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd.comm"), **token.env)
    code, report = doctor.run("--pkcs11-module", str(token.module), "--port", str(free_port()), "--wait", "1",
                              env=env)
    assert only(report, "pcscd")["status"] == "fail"
    module = only(report, "pkcs11-module")
    assert module["status"] == "ok" and module["item"] == str(token.module)
    signature = [c for c in checks(report, "certificate") if c["item"].endswith(": signature")]
    assert len(signature) == 1 and signature[0]["status"] == "ok", report
    assert only(report, "signing-certificate")["status"] == "ok"
    assert only(report, "port")["status"] == "warn"
    assert code == 0 and report["ok"] is True, report
