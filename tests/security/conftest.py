"""Shared pieces of the security suite: each test replays an attack against a real `serve` process.

`served(*args)` starts `digisign-web serve` on a free port (in-process virtual card fineid-v4 and the
automatic dialog unless the test says otherwise) and stops it afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import browser_factory, chromium_path, trusted_home, web_server  # noqa: F401 (Chromium)
from tests.integration.test_scs_process import RunningServer, start_server, stop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``served("--dialog", "web")`` -> a running server (defaults: fineid-v4, auto dialog)."""
    servers: list[RunningServer] = []

    def start(*args: str, virtual_card: str | None = "fineid-v4") -> RunningServer:
        options = list(args)
        if virtual_card and "--virtual-card" not in options:
            options += ["--virtual-card", virtual_card]
        if "--dialog" not in options:
            options += ["--dialog", "auto"]
        server = start_server(tmp_path / f"s{len(servers)}", *options, port=free_port())
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop(server)
