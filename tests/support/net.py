"""Free TCP ports for test servers: never a fixed port, so parallel runs and a running digisign-web do not
clash."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; bind it soon, it is not reserved)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
