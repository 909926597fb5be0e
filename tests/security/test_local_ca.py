"""The local CA as an attacker's tool: whoever holds its key (a backup, a stolen home directory, malware that
read ``ca.key`` once) could make certificates that every browser trusting the CA accepts. With the name
constraints, Chromium accepts its certificates for ``localhost`` only; an earlier version's unconstrained CA is
replaced on upgrade and swapped out of the browser stores, so its (possibly stolen) key is worth nothing.

Each test trusts the CA the way a user does (``digisign-web trust install`` in a temporary HOME) and asks
Debian's headless Chromium. Chromium's NetLog tells why a certificate was refused.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.cli import cli_env
from tests.support.local_ca import issue_leaf, load_ca, old_design_ca, write_pem
from tests.support.paths import ROOT
from tests.support.servers import RunningServer

EVIL = "evil.example"
NAME_CONSTRAINT_ERROR = "Not permitted by name constraints"

# --- the CA design of earlier versions, and an attacker's leaf ----------------------------------------------


def sha256(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@contextmanager
def tls_site(tmp: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
             host: str = "127.0.0.1") -> Iterator[int]:
    """An HTTPS site on ``host`` (a free port) presenting ``cert``; yields the port."""
    tag = sha256(cert)[:12]
    write_pem(tmp / f"{tag}.key", key, 0o600)
    write_pem(tmp / f"{tag}.pem", cert, 0o644)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / f"{tag}.pem", tmp / f"{tag}.key")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"served by the attacker's certificate"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- the user's side: trust install, status, a browser --------------------------------------------------------


def run_trust(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "digisign_web", "trust", *args], cwd=ROOT,
                          env={**cli_env(), "HOME": str(home)}, capture_output=True, text=True, timeout=60)


def nss_listing(db: Path) -> dict[str, str]:
    """Nickname -> trust flags of an NSS database, read with certutil directly."""
    out = subprocess.run(["certutil", "-L", "-d", f"sql:{db}"], check=True, capture_output=True, text=True).stdout
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "SSL,S/MIME,JAR/XPI" in line) + 1
    return dict(line.rstrip().rsplit(None, 1) for line in lines[start:] if line.strip())  # type: ignore[misc]


def visit(launch: Callable[..., object], home: Path, netlog: Path, urls: list[str]) -> dict[str, str]:
    """Open each URL in a fresh headless Chromium (``evil.example`` resolves to 127.0.0.1); url -> the page's
    text, or ``ERROR <net error>`` when Chromium refused to load it."""
    browser = launch(home, [f"--host-resolver-rules=MAP {EVIL} 127.0.0.1", f"--log-net-log={netlog}",
                            "--net-log-capture-mode=Default"])
    seen = {}
    try:
        for url in urls:
            page = browser.new_page()  # type: ignore[attr-defined]  # a fresh page: no error page in the way
            try:
                response = page.goto(url, timeout=15000)
                seen[url] = f"{response.status} {page.inner_text('body')}"
            except Exception as exc:  # Playwright's Error: "net::ERR_CERT_... at URL"
                seen[url] = "ERROR " + str(exc).splitlines()[0]
    finally:
        browser.close()  # type: ignore[attr-defined]  # also completes the NetLog file
    return seen


def verifier_errors(netlog: Path) -> list[str]:
    """The certificate verifier's error texts in a Chromium NetLog (e.g. "ERROR: Not permitted by name
    constraints" under the certificate it concerns)."""
    events = json.loads(netlog.read_text()).get("events", [])
    return [e["params"]["errors"] for e in events if isinstance(e.get("params"), dict) and e["params"].get("errors")]


# --- the attacks ----------------------------------------------------------------------------------------------


def test_chromium_refuses_a_leaf_the_local_ca_issued_for_another_name(
        served: Callable[..., RunningServer], browser_factory: Callable[..., object], tmp_path: Path) -> None:
    server = served()
    state = server.ca.parent.parent
    home = tmp_path / "home"
    home.mkdir()
    installed = run_trust(home, "install", "--state-dir", str(state))
    assert installed.returncode == 0, installed.stdout + installed.stderr

    # The attacker has the CA key and signs certificates for a site of his and for another loopback address.
    ca_key, ca_cert = load_ca(state)
    evil_dns = issue_leaf(ca_key, ca_cert, [x509.DNSName(EVIL)])
    evil_ip = issue_leaf(ca_key, ca_cert, [x509.IPAddress(ipaddress.ip_address("127.0.0.2"))])
    # Contrast: the same leaf under a CA of the old design (no name constraints), trusted the same way.
    old_key, old_cert = old_design_ca(tmp_path / "old-design")
    subprocess.run(["certutil", "-A", "-d", f"sql:{home / '.pki/nssdb'}", "-n", "old design (contrast)", "-t",
                    "C,,", "-i", str(tmp_path / "old-design" / "tls" / "ca.pem")], check=True)
    evil_old = issue_leaf(old_key, old_cert, [x509.DNSName(EVIL)])

    netlog = tmp_path / "netlog.json"
    with tls_site(tmp_path, *evil_dns) as p1, tls_site(tmp_path, *evil_ip, host="127.0.0.2") as p2, \
            tls_site(tmp_path, *evil_old) as p3:
        urls = {"serve": f"{server.base}/version", "serve by IP": f"https://127.0.0.1:{server.port}/version",
                "evil.example": f"https://{EVIL}:{p1}/", "127.0.0.2": f"https://127.0.0.2:{p2}/",
                "old design": f"https://{EVIL}:{p3}/"}
        seen = visit(browser_factory, home, netlog, list(urls.values()))
    result = {label: seen[url] for label, url in urls.items()}

    # The constrained CA serves the signing server on localhost (by name and by address) ...
    for label in ("serve", "serve by IP"):
        assert result[label].startswith("200 "), result
        assert "hashAlgorithms" in json.loads(result[label].split(" ", 1)[1]), result
    # ... and its key is useless for any other name: Chromium refuses, because of the name constraints.
    for label in ("evil.example", "127.0.0.2"):
        assert result[label].startswith("ERROR ") and "ERR_CERT" in result[label], result
    refusals = [e for e in verifier_errors(netlog) if NAME_CONSTRAINT_ERROR in e]
    assert any(f"CN={EVIL}" in e for e in refusals), verifier_errors(netlog)
    assert any("CN=127.0.0.2" in e for e in refusals), verifier_errors(netlog)
    # The same kind of leaf under the old, unconstrained design is accepted: the refusal above is the constraints.
    assert result["old design"] == "200 served by the attacker's certificate", result


def test_upgrade_swaps_an_old_unconstrained_ca_out_of_every_store(
        served: Callable[..., RunningServer], browser_factory: Callable[..., object], tmp_path: Path) -> None:
    # An installation made by an earlier version: its CA trusted in Chromium's and a Firefox profile's NSS
    # database, under the nickname that version's `trust install` used; the attacker copied the CA key.
    state = tmp_path / "s0" / "state"  # where `served()` will look
    old_key, old_cert = old_design_ca(state)
    home = tmp_path / "home"
    dbs = [home / ".pki" / "nssdb", home / ".mozilla/firefox/abcd.default-release"]
    old_nick = f"digisign-web local CA {sha256(old_cert)[:8]}"
    for db in dbs:
        db.mkdir(parents=True)
        subprocess.run(["certutil", "-N", "-d", f"sql:{db}", "--empty-password"], check=True)
        subprocess.run(["certutil", "-A", "-d", f"sql:{db}", "-n", old_nick, "-t", "C,,", "-i",
                        str(state / "tls" / "ca.pem")], check=True)

    # `trust status` says the CA is old, in text and in JSON, and fails.
    text = run_trust(home, "status", "--state-dir", str(state))
    assert text.returncode == 1 and "OLD CA: no name constraints" in text.stdout, text.stdout + text.stderr
    report = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert report.returncode == 1, report.stderr
    ca = json.loads(report.stdout)["ca"]
    assert ca["old"] is True and ca["name_constraints"] == [] and ca["sha256"] == sha256(old_cert)
    assert any("no name constraints" in p for p in ca["problems"]) and any("3650" in p for p in ca["problems"])

    # The upgraded server replaces the CA at start: a new key, the old one gone.
    server = served()
    assert server.ca == state / "tls" / "ca.pem"
    _, new_cert = load_ca(state)
    assert sha256(new_cert) != sha256(old_cert)
    old_pem = old_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    assert all(old_pem not in f.read_bytes() for f in (state / "tls").iterdir())
    assert all((state / "tls" / k).stat().st_mode & 0o777 == 0o600 for k in ("ca.key", "localhost.key"))
    stale = json.loads(run_trust(home, "status", "--state-dir", str(state), "--json").stdout)
    assert stale["ca"]["old"] is False
    assert [s["status"] for s in stale["stores"]] == ["old digisign-web CA only"] * 2

    # `trust install` swaps it in every store: only the new CA is left.
    installed = run_trust(home, "install", "--state-dir", str(state))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    new_nick = f"digisign-web local CA {sha256(new_cert)[:8]}"
    for db in dbs:
        assert [n for n in nss_listing(db) if n.startswith("digisign-web")] == [new_nick]
    good = run_trust(home, "status", "--state-dir", str(state), "--json")
    assert good.returncode == 0 and {s["status"] for s in json.loads(good.stdout)["stores"]} == {"trusted"}

    # Chromium: the server works; whatever the stolen old key signs, even for localhost, is refused.
    netlog = tmp_path / "netlog.json"
    stolen_localhost = issue_leaf(old_key, old_cert, [x509.DNSName("localhost")])
    stolen_evil = issue_leaf(old_key, old_cert, [x509.DNSName(EVIL)])
    with tls_site(tmp_path, *stolen_localhost) as p1, tls_site(tmp_path, *stolen_evil) as p2:
        urls = [f"{server.base}/version", f"https://localhost:{p1}/", f"https://{EVIL}:{p2}/"]
        seen = visit(browser_factory, home, netlog, urls)
    assert seen[urls[0]].startswith("200 ") and "hashAlgorithms" in seen[urls[0]], seen
    for url in urls[1:]:
        assert "ERR_CERT_AUTHORITY_INVALID" in seen[url], seen


@pytest.fixture(autouse=True)
def _tools() -> None:
    if shutil.which("certutil") is None:
        pytest.fail("certutil is missing (libnss3-tools; scripts/test-deps.sh installs it)", pytrace=False)
