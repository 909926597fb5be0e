"""The local TLS identity (SAN, validity, key modes), the quickstart server over a real TLS socket, and the
server's limits that need no attack to check (log repeats, the open-file budget). The SCS handlers are tested
in test_scs.py; the attacks on the server (cross-site reads, framing, other users, slowloris) in
tests/security."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import resource
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509

from digisign_web.tls.ca import ensure_tls
from digisign_web.tls.files import server_context
from digisign_web.web.limits import FD_RESERVE, MAX_CONNECTIONS, ConnectionLimits, RepeatLimit
from digisign_web.web.serve import bind
from tests.support.cli import cli_env
from tests.support.paths import ROOT
from tests.support.wait import async_wait_until

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


@pytest.mark.process
def test_serve_quickstart_over_tls(tmp_path: Path) -> None:
    """The README's first command: HTTPS on loopback with a certificate the local CA vouches for."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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
                assert SIX <= set(data)
                if data["signatureAlgorithms"]:  # the port answers first, the card is listed once read (D69)
                    break
                raise OSError("no card listed yet")
            except (OSError, ssl.SSLError):
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        assert SIX <= set(data) and data["signatureAlgorithms"] == "RSA,ECDSA"
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
    assert f"https://localhost:{port}/" in out and "ca.pem" in out


def test_repeated_log_lines_are_limited() -> None:
    """An attack repeats a few kinds of line: each kind passes `burst` times per window, then one line says
    how many were left out. Lines that differ only in numbers are one kind; other kinds are unaffected."""
    limit = RepeatLimit(burst=3, window=0.3)

    def record(message: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("digisign_web.web.limits", logging.INFO, __file__, 1, message, args, None)

    passed = [limit.filter(record("closed a connection from %s", f"127.0.0.{n}")) for n in range(10)]
    assert passed == [True] * 3 + [False] * 7
    tasks = [limit.filter(record(f"Task-{n} exception was never retrieved")) for n in range(5)]
    assert tasks == [True] * 3 + [False] * 2
    assert limit.filter(record("listening on port %d", 1))
    time.sleep(0.35)  # the window (0.3 s) elapsing IS the test
    later = record("closed a connection from %s", "127.0.0.1")
    assert limit.filter(later)
    assert later.getMessage() == "closed a connection from 127.0.0.1 [7 more like this in the last 0.3 s suppressed]"


def test_open_file_budget_raises_a_desktop_soft_limit() -> None:
    """Started with a desktop session's soft limit of 1024, the server raises it toward the hard limit, so
    that its connection cap fits."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    code = ("import resource; from digisign_web.web.limits import fd_budget; budget = fd_budget(); "
            "print(budget, resource.getrlimit(resource.RLIMIT_NOFILE)[0])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                          timeout=60, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard)))
    budget, soft = map(int, done.stdout.split())
    wanted = MAX_CONNECTIONS + FD_RESERVE
    expected_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    assert soft == expected_soft
    assert budget == min(MAX_CONNECTIONS, soft - FD_RESERVE)


async def test_a_full_house_of_slow_connections_makes_room(tmp_path: Path) -> None:
    """Past the cap, the quietest incomplete connection is closed for a newcomer, so a fresh request still
    gets its answer (the real-process slowloris test stays below the cap of a normal server)."""
    files = ensure_tls(tmp_path)

    async def version(request: web.Request) -> web.Response:
        return web.Response(text="answered")

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    limits = ConnectionLimits(max_connections=8)  # 6 per client address
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await bind(runner, (port,), server_context(files), limits) == port
    context = ssl.create_default_context(cafile=str(files.ca_cert))
    try:
        slow = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
            writer.write(b"GET /version HTTP/1.1\r\nHost: localhost\r\n")  # never finished
            slow.append((reader, writer))
            await asyncio.sleep(0.01)  # pacing: one slow client after another, as an attacker opens them

        def closed() -> list[asyncio.StreamReader]:
            return [reader for reader, _ in slow if reader.at_eof() or reader.exception() is not None]

        await async_wait_until(lambda: len(closed()) >= 20 - limits.max_per_peer, 10,
                               "the server to close the quietest connections")
        assert len(limits.connections) <= limits.max_per_peer
        assert len(closed()) >= 20 - limits.max_per_peer
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
        writer.write(f"GET /version HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"answered")
        for _, w in [*slow, (reader, writer)]:
            w.transport.abort()
    finally:
        limits.close()
        await runner.cleanup()
