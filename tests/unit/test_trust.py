"""``digisign-web trust``: the local CA in real NSS databases (real certutil) and a faked system store."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
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

from digisign_web import cli
from digisign_web.tls import ca as tls
from digisign_web.tls import trust
from digisign_web.tls.ca import ensure_tls
from tests.support.local_ca import issue_leaf, load_ca, old_design_ca, write_pem
from tests.support.paths import ROOT

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
    return sha256_of(x509.load_pem_x509_certificate(pem.read_bytes()))


def sha256_of(cert: x509.Certificate) -> str:
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


@pytest.mark.process  # `digisign-web trust` as a process, with its own HOME
def test_cli_round_trip(home: Path, state: Path) -> None:
    done = run_trust(home, "install", "--state-dir", str(state))
    assert done.returncode == 0, done.stdout + done.stderr
    fp = sha256(state / "tls" / "ca.pem")  # install created the CA
    assert fp in done.stdout and "installed" in done.stdout
    assert all(f"digisign-web local CA {fp[:8]}" in ours(db) for db in dbs(home))
    st = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert st.returncode == 0, st.stderr
    report = json.loads(st.stdout)
    assert {(Path(r["path"]), r["status"], r["kind"]) for r in report["stores"]} == {
        (db, "trusted", "nss") for db in dbs(home)}
    assert report["ca"]["sha256"] == fp and report["ca"]["old"] is False and report["ca"]["problems"] == []
    assert report["ca"]["name_constraints"] == ["DNS:localhost", "IP:127.0.0.1/32", "IP:::1/128"]
    gone = run_trust(home, "uninstall", "--state-dir", str(state))
    assert gone.returncode == 0 and "removed" in gone.stdout
    st = run_trust(home, "status", "--state-dir", str(state))
    assert st.returncode == 1 and "not trusted" in st.stdout and " trusted" not in st.stdout.replace("not trusted", "")


@pytest.mark.process
def test_cli_status_of_regenerated_ca(home: Path, state: Path) -> None:
    assert run_trust(home, "install", "--state-dir", str(state)).returncode == 0
    regenerate(state)
    st = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert st.returncode == 1
    assert {r["status"] for r in json.loads(st.stdout)["stores"]} == {"old digisign-web CA only"}


@pytest.mark.process  # a PATH without certutil, for the process only
def test_cli_without_certutil(home: Path, state: Path) -> None:
    done = run_trust(home, "install", "--state-dir", str(state), path=str(home / "empty-bin"))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: certutil not found") and len(done.stderr.splitlines()) == 1
    assert "install libnss3-tools: sudo apt-get install libnss3-tools" in done.stderr
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
    report = {r["kind"]: r["status"] for r in json.loads(capsys.readouterr().out)["stores"]}
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


# --- the name-constrained local CA (tls.py) and the upgrade from an unconstrained one ---------------------------

PERMITTED = ["DNS:localhost", "IP:127.0.0.1/32", "IP:::1/128"]


def openssl_verify(ca: Path, leaf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """OpenSSL as the independent verifier of a chain (it enforces name constraints on the trust anchor)."""
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), *extra, str(leaf)], capture_output=True,
                          text=True, timeout=30)


def test_local_ca_is_name_constrained_and_short_lived(state: Path, tmp_path: Path) -> None:
    files = ensure_tls(state)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical and constraints.value.excluded_subtrees is None
    assert tls.name_constraints(ca) == (True, PERMITTED)
    assert ca.not_valid_after_utc - ca.not_valid_before_utc <= dt.timedelta(days=tls.CA_DAYS, hours=1)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert tls.ca_problems(ca) == [] and files.ca_replaced == ""
    for key in (state / "tls" / "ca.key", files.key):
        assert key.stat().st_mode & 0o777 == 0o600
    assert openssl_verify(files.ca_cert, files.cert, "-verify_hostname", "localhost").returncode == 0
    assert openssl_verify(files.ca_cert, files.cert, "-verify_ip", "::1").returncode == 0
    # A certificate its key makes for any other name does not verify, even with no host name asked for.
    ca_key, _ = load_ca(state)
    for name in (x509.DNSName("evil.example"), x509.IPAddress(ipaddress.ip_address("127.0.0.2"))):
        key, leaf = issue_leaf(ca_key, ca, [name])
        write_pem(tmp_path / "evil.pem", leaf, 0o644)
        refused = openssl_verify(files.ca_cert, tmp_path / "evil.pem")
        assert refused.returncode != 0 and "permitted subtree violation" in refused.stdout + refused.stderr
    assert ensure_tls(state) == files  # kept while good


def test_unconstrained_ca_is_replaced_with_a_new_key(state: Path) -> None:
    old_key, old_cert = old_design_ca(state)
    assert any("no name constraints" in p for p in tls.ca_problems(old_cert))
    files = ensure_tls(state)
    assert "no name constraints" in files.ca_replaced and "3650" in files.ca_replaced
    _, new_cert = load_ca(state)
    assert tls.ca_problems(new_cert) == [] and sha256(files.ca_cert) != sha256_of(old_cert)
    old_pem = old_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    assert all(old_pem not in f.read_bytes() for f in (state / "tls").iterdir())  # the old key is deleted
    assert sorted(f.name for f in (state / "tls").iterdir()) == ["ca.key", "ca.pem", "checked.json", "localhost.key",
                                                                 "localhost.pem"]
    assert (state / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (state / "tls" / "checked.json").stat().st_mode & 0o777 == 0o600  # the full check's stamp (D69)
    assert openssl_verify(files.ca_cert, files.cert, "-verify_hostname", "localhost").returncode == 0
    assert ensure_tls(state).ca_replaced == ""  # and kept from now on
    assert load_ca(state)[1] == new_cert


def test_ca_is_renewed_before_it_expires_with_its_leaf(state: Path) -> None:
    files = ensure_tls(state)
    tls_dir = state / "tls"
    now = dt.datetime.now(dt.UTC)
    # A CA made long ago that has 120 days left is kept, and a new leaf never outlives it.
    key, cert = tls._new_ca(now - dt.timedelta(days=tls.CA_DAYS - 120))
    write_pem(tls_dir / "ca.key", key, 0o600)
    write_pem(tls_dir / "ca.pem", cert, 0o644)
    assert ensure_tls(state).ca_replaced == ""
    leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
    leaf.verify_directly_issued_by(cert)
    assert leaf.not_valid_after_utc <= cert.not_valid_after_utc
    # With 60 days left (inside CA_RENEW_BEFORE) it is renewed, and the leaf with it.
    key, cert = tls._new_ca(now - dt.timedelta(days=tls.CA_DAYS - 60))
    write_pem(tls_dir / "ca.key", key, 0o600)
    write_pem(tls_dir / "ca.pem", cert, 0o644)
    assert any("expires on" in p for p in tls.ca_problems(cert))
    renewed = ensure_tls(state)
    assert "expires on" in renewed.ca_replaced
    new_ca = x509.load_pem_x509_certificate(renewed.ca_cert.read_bytes())
    assert new_ca.not_valid_after_utc - now > dt.timedelta(days=tls.CA_DAYS - 1)
    x509.load_pem_x509_certificate(renewed.cert.read_bytes()).verify_directly_issued_by(new_ca)


def test_broken_ca_files_are_replaced(state: Path) -> None:
    ensure_tls(state)
    (state / "tls" / "ca.key").write_text("not a key")
    assert ensure_tls(state).ca_replaced.startswith("unreadable")
    other_key, _ = tls._new_ca(dt.datetime.now(dt.UTC))
    write_pem(state / "tls" / "ca.key", other_key, 0o644)
    assert ensure_tls(state).ca_replaced == "its key does not match the certificate"
    assert (state / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600
    os.chmod(state / "tls" / "ca.key", 0o644)  # loosened by hand: tightened again
    assert ensure_tls(state).ca_replaced == ""
    assert (state / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600


def test_status_flags_an_old_or_expiring_ca(home: Path, state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old_design_ca(state)
    assert cli.main(["trust", "status", "--json", "--state-dir", str(state)]) == 1
    ca = json.loads(capsys.readouterr().out)["ca"]
    assert ca["old"] is True and ca["name_constraints"] == []
    assert any("no name constraints" in p for p in ca["problems"])
    assert (state / "tls" / "ca.key").exists()  # status changes nothing
    assert cli.main(["trust", "status", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert "OLD CA: no name constraints" in out and "`digisign-web trust install` replaces it" in out
    key, cert = tls._new_ca(dt.datetime.now(dt.UTC) - dt.timedelta(days=tls.CA_DAYS - 30))
    write_pem(state / "tls" / "ca.key", key, 0o600)
    write_pem(state / "tls" / "ca.pem", cert, 0o644)
    assert cli.main(["trust", "status", "--json", "--state-dir", str(state)]) == 1
    ca = json.loads(capsys.readouterr().out)["ca"]
    assert ca["old"] is True and ca["name_constraints"] == PERMITTED
    assert [p.split(",")[0] for p in ca["problems"]] == [f"expires on {cert.not_valid_after_utc:%Y-%m-%d}"]


def test_install_swaps_an_old_ca_in_every_store(home: Path, state: Path, system: tuple[Path, Path],
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """An earlier version's CA, trusted by its `trust install` (Firefox, system) and by the manual certutil
    command of the old certs/README.md (nickname "digisign-web", Chromium): one `trust install` swaps all."""
    target, marker = system
    monkeypatch.setattr(trust, "_is_root", lambda: True)
    _, old_cert = old_design_ca(state)
    old_pem = state / "tls" / "ca.pem"
    chromium = home / ".pki/nssdb"
    chromium.mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", f"sql:{chromium}", "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", f"sql:{chromium}", "-n", "digisign-web", "-t", "C,,", "-i",
                    str(old_pem)], check=True)
    old_nick = f"digisign-web local CA {sha256_of(old_cert)[:8]}"
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / PROFILE}", "-n", old_nick, "-t", "C,,", "-i",
                    str(old_pem)], check=True)
    target.parent.mkdir(parents=True)
    shutil.copyfile(old_pem, target)
    # Before the upgrade all three trust the old CA (found by fingerprint, also under the legacy nickname).
    assert [r.status for r in trust.status(old_pem, trust.find_stores(home, system=True))] == [trust.TRUSTED] * 3

    assert cli.main(["trust", "install", "--system", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "replaced an old CA (no name constraints" in out and "Restart `digisign-web serve`" in out
    new_pem = state / "tls" / "ca.pem"
    assert tls.ca_problems(x509.load_pem_x509_certificate(new_pem.read_bytes())) == []
    new_nick = f"digisign-web local CA {sha256(new_pem)[:8]}"
    for db in dbs(home):
        assert [n for n in listing(db) if n.startswith("digisign-web")] == [new_nick]
    assert target.read_bytes() == new_pem.read_bytes() and marker.read_text() == "called\n"
    assert cli.main(["trust", "status", "--system", "--json", "--state-dir", str(state)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ca"]["old"] is False and {s["status"] for s in report["stores"]} == {trust.TRUSTED}


def test_status_flags_a_store_that_still_trusts_an_old_ca(home: Path, state: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ca = ensure_tls(state).ca_cert
    trust.install(ca, trust.find_stores(home, system=False))
    old_design_ca(state.parent / "old")
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / PROFILE}", "-n", "digisign-web", "-t", "C,,", "-i",
                    str(state.parent / "old" / "tls" / "ca.pem")], check=True)
    assert statuses(ca, home) == {home / ".pki/nssdb": trust.TRUSTED, home / PROFILE: trust.ALSO_OLD}
    assert trust.is_trusted_anywhere(ca, home)
    assert cli.main(["trust", "status", "--state-dir", str(state)]) == 1
    out = capsys.readouterr().out
    assert f"{trust.ALSO_OLD} (digisign-web)" in out and "swaps it for the current one" in out
    assert cli.main(["trust", "install", "--state-dir", str(state)]) == 0
    assert statuses(ca, home) == {db: trust.TRUSTED for db in dbs(home)}


def test_the_current_ca_added_by_hand_counts_as_trusted(home: Path, state: Path) -> None:
    """certs/README.md's manual certutil command: found by fingerprint, and `install` renames it to ours."""
    ca = ensure_tls(state).ca_cert
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / PROFILE}", "-n", "digisign-web local CA", "-t", "C,,",
                    "-i", str(ca)], check=True)
    assert statuses(ca, home)[home / PROFILE] == trust.TRUSTED
    trust.install(ca, trust.find_stores(home, system=False))
    assert list(ours(home / PROFILE)) == [f"digisign-web local CA {sha256(ca)[:8]}"]
