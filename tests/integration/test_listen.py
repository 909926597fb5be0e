"""``serve --listen ADDR`` (issue 13 item 8, D40), tested across a network namespace the test makes (docker
cannot run here): a veth pair joins this namespace (the "host", where serve runs) and a private one (the
"other container", where curl runs), on private addresses. A client in the other namespace is a socket this
kernel's namespace does not hold, like a browser in CI reaching a service container through its published
port.

Needs root (CAP_NET_ADMIN) and iproute2; the namespace and the veth pair are removed in a finally."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.net import free_port
from tests.support.servers import RunningServer, start_server, stop

needs_netns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
                                reason="needs root (network namespaces), iproute2 and curl")


@dataclass(frozen=True)
class Namespace:
    name: str
    host_address: str  # ours, on the veth end in this namespace
    other_address: str  # the other namespace's end

    def run(self, *command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *command], capture_output=True, text=True,
                              timeout=timeout)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


@pytest.fixture
def other_namespace() -> Iterator[Namespace]:
    """A network namespace joined to ours by a veth pair on a private /30 chosen from the pid (parallel runs
    get different ones)."""
    tag = os.getpid() % 16000
    subnet = ipaddress.ip_network(f"10.213.{tag // 64}.{(tag % 64) * 4}/30")
    host_address, other_address = (str(a) for a in subnet.hosts())
    name, here, there = f"dsw-listen-{tag}", f"dswh{tag}", f"dswn{tag}"
    try:
        _ip("netns", "add", name)
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{host_address}/30", "dev", here)
        _ip("link", "set", here, "up")
        _ip("-n", name, "addr", "add", f"{other_address}/30", "dev", there)
        _ip("-n", name, "link", "set", there, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, host_address, other_address)
    finally:
        subprocess.run(["ip", "link", "del", here], capture_output=True, timeout=20)  # also removes its peer
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def curl(ns: Namespace | None, server: RunningServer, address: str, host: str | None = None,
         user: int | None = None, path: str = "/version") -> subprocess.CompletedProcess[str]:
    """GET ``path`` (/version) at ``address`` as https://localhost:PORT (so SNI, certificate and Host are the ones a
    browser on a published port sends), from the other namespace or (``ns`` None) from here, optionally as
    another uid; ``host`` replaces the Host header."""
    command = ["curl", "-sS", "--max-time", "5", "--cacert", str(server.ca), "--resolve",
               f"localhost:{server.port}:{address}", "-w", "\n%{http_code}"]
    if host is not None:
        command += ["-H", f"Host: {host}"]
    command.append(f"https://localhost:{server.port}{path}")
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    if ns is not None:
        return ns.run(*command)
    return subprocess.run(command, capture_output=True, text=True, timeout=20)


def answer(result: subprocess.CompletedProcess[str]) -> tuple[int, dict]:
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), json.loads(body)


@needs_netns
def test_listen_serves_another_namespace_with_the_host_check_kept(other_namespace: Namespace,
                                                                   tmp_path: Path) -> None:
    ns = other_namespace
    server = start_server(tmp_path, "--listen", ns.host_address, "--virtual-card", "fineid-v4", "--dialog", "auto",
                          port=free_port())
    try:
        status, version = answer(curl(ns, server, ns.host_address))
        assert status == 200 and version["version"] == "1.1", version

        # The DNS-rebinding defence is unchanged: the Host must still name localhost with the port.
        status, refused = answer(curl(ns, server, ns.host_address, host=f"attacker.example:{server.port}"))
        assert status == 200 and refused["status"] == "failed" and refused["reasonCode"] == 403, refused
        status, refused = answer(curl(ns, server, ns.host_address, host=f"{ns.host_address}:{server.port}"))
        assert refused["status"] == "failed" and refused["reasonCode"] == 403, refused

        # A socket of this system is still checked (D30), whatever address it comes from: another uid is
        # closed before TLS, this uid is served.
        status, version = answer(curl(None, server, ns.host_address))
        assert status == 200 and version["version"] == "1.1"
        other_user = curl(None, server, ns.host_address, user=65534)
        assert other_user.returncode != 0 and '"version"' not in other_user.stdout, other_user

        # The My card page spends PIN tries: a peer admitted without a known user never gets it (D40, D48);
        # this computer's user does, through the same address.
        remote = curl(ns, server, ns.host_address, path="/card")
        assert remote.stdout.rpartition("\n")[2] == "403", remote.stdout
        local = curl(None, server, ns.host_address, path="/card")
        assert local.stdout.rpartition("\n")[2] == "200", local.stdout

        log = server.log()
        assert "refused the My card page to " + ns.other_address in log, log
        assert "WARNING" in log and "reachable from other hosts" in log, log
        assert "refused a connection from another local user (uid 65534)" in log, log
        # Only the --listen address: loopback does not answer.
        loopback = curl(None, server, "127.0.0.1")
        assert loopback.returncode != 0, loopback
    finally:
        stop(server)
    assert server.process.returncode is not None


@needs_netns
def test_without_listen_the_address_does_not_answer(other_namespace: Namespace, tmp_path: Path) -> None:
    ns = other_namespace
    server = start_server(tmp_path, "--virtual-card", "fineid-v4", "--dialog", "auto", port=free_port())
    try:
        status, version = answer(curl(None, server, "127.0.0.1"))  # it runs, on loopback
        assert status == 200
        assert version["version"] == "1.1"
        unreachable = curl(ns, server, ns.host_address)
        assert unreachable.returncode == 7, unreachable  # curl: failed to connect (refused)
        assert curl(None, server, ns.host_address).returncode == 7
    finally:
        stop(server)


@pytest.mark.parametrize("address", ["localhost", "10.0.0.300", "0.0.0.0:53952", ""])
def test_an_invalid_listen_address_is_one_line_and_exit_2(address: str, tmp_path: Path) -> None:
    result = run_cli("serve", "--listen", address, "--state-dir", str(tmp_path / "state"), timeout=30)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not an IP address" in result.stderr, result.stderr
    assert not (tmp_path / "state").exists()  # refused before any work


def test_an_address_this_host_lacks_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("serve", "--listen", "192.0.2.77", "--virtual-card", "fineid-v4", "--port", str(free_port()),
                     "--state-dir", str(tmp_path / "state"), timeout=30)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert errors == [errors[0]] and "cannot listen on 192.0.2.77" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
