"""``digisign-web trust``: the local CA in real NSS databases (real certutil) and a faked system store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from digisign_web import cli, trust
from digisign_web.tls import ensure_tls

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ".mozilla/firefox/abcd.default-release"



@pytest.fixture(autouse=True)
def _certutil() -> None:
    """These tests use the real certutil: without it they fail with the fix, never skip silently."""
    if shutil.which("certutil") is None:
        pytest.fail("certutil missing: sudo apt-get install libnss3-tools (scripts/test-deps.sh does)", pytrace=False)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with one Firefox profile (its own NSS database) and no ~/.pki yet."""
    home = tmp_path / "home"
    profile = home / PROFILE
    profile.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{profile}", "--empty-password"], check=True)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The system store redirected into tmp; the update command appends a line to a marker file."""
    target = tmp_path / "sys" / "ca-certificates" / "digisign-web-local-ca.crt"
    marker = tmp_path / "update-called"
    monkeypatch.setattr(trust, "SYSTEM_CA_PATH", target)
    monkeypatch.setattr(trust, "SYSTEM_UPDATE_CMD",
                        [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('called\\n')"])
    return target, marker


def dbs(home: Path) -> list[Path]:
    return [home / ".pki/nssdb", home / PROFILE]


def listing(db: Path) -> dict[str, str]:
    """Nickname -> trust flags, read independently of trust.py."""
    out = subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "SSL,S/MIME,JAR/XPI" in line) + 1
    return dict(line.rstrip().rsplit(None, 1) for line in lines[start:] if line.strip())  # type: ignore[misc]


def ours(db: Path) -> dict[str, str]:
    return {n: t for n, t in listing(db).items() if n.startswith("digisign-web local CA")}


def sha256(pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def regenerate(state: Path) -> Path:
    shutil.rmtree(state / "tls")
    return ensure_tls(state).ca_cert


def statuses(ca: Path, home: Path) -> dict[Path, str]:
    return {r.store.path: r.status for r in trust.status(ca, trust.find_stores(home, system=False))}


def run_trust(home: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(home), PYTHONPATH=str(ROOT))
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "digisign_web", "trust", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_find_stores(home: Path, system: tuple[Path, Path]) -> None:
    (home / ".mozilla/firefox/Crash Reports").mkdir()  # not a profile
    legacy = home / "snap/firefox/common/.mozilla/firefox/old.default"
    legacy.mkdir(parents=True)
    (legacy / "prefs.js").write_text("")
    stores = trust.find_stores(home, system=False)
    assert [(s.kind, s.path) for s in stores] == [("nss", home / ".pki/nssdb"), ("nss", home / PROFILE),
                                                  ("nss", legacy)]
    assert "abcd.default-release" in stores[1].name
    assert not (home / ".pki").exists()  # finding creates nothing
    with_system = trust.find_stores(home, system=True)
    assert with_system[-1] == trust.Store(with_system[-1].name, "system", system[0])


def test_install_trusts_current_ca_in_chromium_and_firefox(home: Path, state: Path) -> None:
    ca = ensure_tls(state).ca_cert
    fp = sha256(ca)
    assert set(statuses(ca, home).values()) == {trust.NOT_TRUSTED}
    results = trust.install(ca, trust.find_stores(home, system=False))
    assert [(r.status, r.ok) for r in results] == [("installed", True)] * 2
    assert (home / ".pki/nssdb/cert9.db").exists()
    assert (home / ".pki/nssdb").stat().st_mode & 0o777 == 0o700
    assert statuses(ca, home) == {db: trust.TRUSTED for db in dbs(home)}
    nick = f"digisign-web local CA {fp[:8]}"
    for db in dbs(home):
        assert ours(db) == {nick: ours(db)[nick]} and "C" in ours(db)[nick].split(",")[0]
        pem = subprocess.run(["certutil", "-L", "-d", f"sql:{db}", "-n", nick, "-a"], check=True,
                             capture_output=True).stdout
        assert hashlib.sha256(x509.load_pem_x509_certificate(pem).public_bytes(
            serialization.Encoding.DER)).hexdigest() == fp


def test_reinstall_is_idempotent(home: Path, state: Path) -> None:
    ca = ensure_tls(state).ca_cert
    stores = trust.find_stores(home, system=False)
    trust.install(ca, stores)
    second = trust.install(ca, stores)
    assert all(r.ok and r.status == "installed" and r.detail == "" for r in second)
    for db in dbs(home):
        assert len(ours(db)) == 1


def test_regenerated_ca_replaces_the_old_one(home: Path, state: Path) -> None:
    old = ensure_tls(state).ca_cert
    old_fp = sha256(old)
    old_nick = f"digisign-web local CA {old_fp[:8]}"
    trust.install(old, trust.find_stores(home, system=False))
    new = regenerate(state)
    assert sha256(new) != old_fp
    before = trust.status(new, trust.find_stores(home, system=False))
    assert [r.status for r in before] == [trust.OLD_ONLY] * 2
    assert all(old_nick in r.detail and not r.ok for r in before)
    assert not trust.is_trusted_anywhere(new, home)
    results = trust.install(new, trust.find_stores(home, system=False))
    assert all(r.ok and old_nick in r.detail for r in results)
    assert statuses(new, home) == {db: trust.TRUSTED for db in dbs(home)}
    for db in dbs(home):
        assert list(ours(db)) == [f"digisign-web local CA {sha256(new)[:8]}"]


def test_uninstall_removes_only_ours(home: Path, state: Path, tmp_path: Path) -> None:
    ca = ensure_tls(state).ca_cert
    other = ensure_tls(tmp_path / "other").ca_cert  # someone else's certificate, another nickname
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / PROFILE}", "-n", "unrelated", "-t", "C,,", "-i",
                    str(other)], check=True)
    stores = trust.find_stores(home, system=False)
    trust.install(ca, stores)
    results = trust.uninstall(stores)
    assert [r.status for r in results] == ["removed"] * 2
    assert statuses(ca, home) == {db: trust.NOT_TRUSTED for db in dbs(home)}
    assert all(ours(db) == {} for db in dbs(home))
    assert "unrelated" in listing(home / PROFILE)
    assert [r.status for r in trust.uninstall(stores)] == ["not present"] * 2


def test_legacy_and_empty_profiles_are_skipped_not_created(home: Path, state: Path) -> None:
    legacy = home / ".mozilla/firefox/old.default"
    legacy.mkdir()
    (legacy / "cert8.db").write_bytes(b"")
    ca = ensure_tls(state).ca_cert
    results = {r.store.path: r for r in trust.install(ca, trust.find_stores(home, system=False))}
    assert results[legacy].status == "skipped" and "cert8.db" in results[legacy].detail
    assert not (legacy / "cert9.db").exists()
    assert results[home / PROFILE].status == "installed"


def test_is_trusted_anywhere(home: Path, state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = ensure_tls(state).ca_cert
    assert trust.is_trusted_anywhere(ca, home) is False
    trust.install(ca, trust.find_stores(home, system=False))
    start = time.monotonic()
    assert trust.is_trusted_anywhere(ca, home) is True
    assert time.monotonic() - start < 5
    # Firefox alone is enough.
    shutil.rmtree(home / ".pki")
    assert trust.is_trusted_anywhere(ca, home) is True
    # Never raises: a missing CA, a missing home, a corrupt database, no certutil.
    assert trust.is_trusted_anywhere(state / "nope.pem", home) is False
    assert trust.is_trusted_anywhere(ca, home / "nonexistent") is False
    (home / PROFILE / "cert9.db").write_bytes(b"garbage")
    assert trust.is_trusted_anywhere(ca, home) is False
    monkeypatch.setattr(trust, "CERTUTIL", "certutil-does-not-exist")
    assert trust.is_trusted_anywhere(ca, home) is False


def test_cli_round_trip(home: Path, state: Path) -> None:
    done = run_trust(home, "install", "--state-dir", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    fp = sha256(state / "tls" / "ca.pem")  # install created the CA
    assert fp in done.stdout and "installed" in done.stdout
    assert all(f"digisign-web local CA {fp[:8]}" in ours(db) for db in dbs(home))
    st = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert st.returncode == 0, st.stderr
    report = json.loads(st.stdout)
    assert {(Path(r["path"]), r["status"], r["kind"]) for r in report} == {
        (db, "trusted", "nss") for db in dbs(home)}
    gone = run_trust(home, "uninstall", "--state-dir", str(state))
    assert gone.returncode == 0 and "removed" in gone.stdout
    st = run_trust(home, "status", "--state-dir", str(state))
    assert st.returncode == 1 and "not trusted" in st.stdout and " trusted" not in st.stdout.replace("not trusted", "")


def test_cli_status_of_regenerated_ca(home: Path, state: Path) -> None:
    assert run_trust(home, "install", "--state-dir", str(state)).returncode == 0
    regenerate(state)
    st = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert st.returncode == 1
    assert {r["status"] for r in json.loads(st.stdout)} == {"old digisign-web CA only"}


def test_cli_without_certutil(home: Path, state: Path) -> None:
    done = run_trust(home, "install", "--state-dir", str(state), path=str(home / "empty-bin"))
    assert done.returncode == 2
    assert "install libnss3-tools: sudo apt-get install libnss3-tools" in done.stdout
    assert not (home / ".pki").exists()


def test_system_store_as_root(home: Path, state: Path, system: tuple[Path, Path],
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target, marker = system
    monkeypatch.setattr(trust, "_is_root", lambda: True)
    assert cli.main(["trust", "install", "--system", "--state-dir", str(state)]) == 0
    ca = state / "tls" / "ca.pem"
    assert target.read_bytes() == ca.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o644
    assert marker.read_text() == "called\n"
    capsys.readouterr()
    assert cli.main(["trust", "status", "--system", "--json", "--state-dir", str(state)]) == 0
    report = {r["kind"]: r["status"] for r in json.loads(capsys.readouterr().out)}
    assert report == {"nss": "trusted", "system": "trusted"}
    regenerate(state)
    system_result = trust.status(ca, [trust.find_stores(home, system=True)[-1]])[0]
    assert system_result.status == trust.OLD_ONLY
    assert cli.main(["trust", "uninstall", "--system", "--state-dir", str(state)]) == 0
    assert not target.exists()
    assert marker.read_text() == "called\ncalled\n"


def test_system_store_needs_root(home: Path, state: Path, system: tuple[Path, Path],
                                 monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    target, marker = system
    monkeypatch.setattr(trust, "_is_root", lambda: False)
    assert cli.main(["trust", "install", "--system", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert "needs root" in out and "sudo install -m 0644" in out and str(target) in out
    assert "update-called" in out  # the (faked) update command is part of the advice
    assert not target.exists() and not marker.exists()
    # The browser stores were still done.
    ca = state / "tls" / "ca.pem"
    assert statuses(ca, home) == {db: trust.TRUSTED for db in dbs(home)}
    # Uninstalling a system file that is there needs root too; one that is not there does not.
    assert cli.main(["trust", "uninstall", "--system", "--state-dir", str(state)]) == 0
    target.parent.mkdir(parents=True)
    shutil.copyfile(ca, target)
    assert cli.main(["trust", "uninstall", "--system", "--state-dir", str(state)]) == 1
    assert "sudo rm -f" in capsys.readouterr().out and target.exists()
