"""The local TLS identity (SAN, validity, key modes) and the quickstart server over a real TLS socket.
The SCS handlers themselves are tested in test_scs.py."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import signal
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cryptography import x509

from digisign_web.tls import ensure_tls, server_context
from tests.conftest import ROOT, cli_env

SIX = {"version", "httpMethods", "contentTypes", "signatureTypes", "selectorAvailable", "hashAlgorithms"}


def test_tls_identity(tmp_path: Path) -> None:
    files = ensure_tls(tmp_path)
    for key in (files.key, tmp_path / "tls" / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf = x509.load_pem_x509_certificate(files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    leaf.verify_directly_issued_by(ca)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(san.get_values_for_type(x509.IPAddress)) == {ipaddress.ip_address("127.0.0.1"),
                                                           ipaddress.ip_address("::1")}
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= dt.timedelta(days=398)
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # (A client-side TLS 1.1 probe would prove nothing: OpenSSL 3 clients refuse 1.1 themselves.)
    assert server_context(files).minimum_version == ssl.TLSVersion.TLSv1_2
    again = ensure_tls(tmp_path)
    assert again.cert.read_bytes() == files.cert.read_bytes()  # kept while fresh


def test_serve_quickstart_over_tls(tmp_path: Path) -> None:
    """The README's first command: HTTPS on loopback with a certificate the local CA vouches for."""
    port = 53990
    process = subprocess.Popen([sys.executable, "-m", "digisign_web", "serve", "--virtual-card", "fineid-v3",
                                "--state-dir", str(tmp_path), "--port", str(port)],
                               cwd=ROOT, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
                with urllib.request.urlopen(f"https://localhost:{port}/version", context=context, timeout=5) as r:
                    data = json.load(r)
                break
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert SIX <= set(data) and data["signatureAlgorithms"] == "RSA,ECDSA"
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert f"https://localhost:{port}/" in out and "ca.pem" in out
