"""Only the user who runs the server can use it (issue 10, item 3): a connection from another local uid is
closed before TLS, before any handler, with nothing said.

The attack: an unprivileged account on the same computer used the card through the server. Replayed with
a real second uid (``runuser -u nobody``, so the test needs root, as in CI) against a real ``serve``
process running as root: nobody's client asks ``/version`` and ``/sign``. So that the refusal is proved to
be the server's doing and not a TLS failure, the same client script, as the same nobody with the same
0644 copy of the CA, completes TLS and gets an answer from a control server that holds the server's own
certificate and key; and the script as root gets a normal answer from the server.

The two ways ``digisign_web.web.peer`` finds a socket's owner (netlink sock_diag and /proc/net/tcp) are also
checked against a socket that nobody really owns.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from digisign_web.web import peer
from tests.support.net import free_port
from tests.support.servers import RunningServer

NOBODY = 65534
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"

# The client: TCP, then TLS against the CA copy, then one HTTP request; what happened at each step, as JSON.
CLIENT = r"""
import json, socket, ssl, sys
port, ca, method, path, body = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].encode()
result = {"connected": False, "handshake": None, "answer": ""}
try:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    result["connected"] = True
    tls = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="localhost")
    result["handshake"] = "ok"
    tls.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://eservice.example\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body)
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    result["answer"] = data.decode(errors="replace")
except Exception as exc:
    key = "handshake" if result["connected"] and result["handshake"] is None else "error"
    result[key] = f"{type(exc).__name__}: {exc}"
print(json.dumps(result))
"""
SIGN_BODY = json.dumps({"content": "aGVsbG8=", "selector": {"keyusages": ["nonrepudiation"]}})


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can read: the client script and a 0644 copy of the CA go there."""
    if os.geteuid() != 0:
        pytest.fail("this test switches to a second uid with runuser: run it as root (CI does)", pytrace=False)
    if shutil.which("runuser") is None:
        pytest.fail("runuser is missing (util-linux)", pytrace=False)
    path = Path(tempfile.mkdtemp(prefix="digisign-peer-"))
    path.chmod(0o755)
    (path / "client.py").write_text(CLIENT)
    (path / "client.py").chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_client(shared: Path, port: int, method: str, path: str, as_nobody: bool) -> dict:
    command = [PYTHON, "-I", str(shared / "client.py"), str(port), str(shared / "ca.pem"), method, path,
               SIGN_BODY if method == "POST" else ""]
    if as_nobody:
        command = ["runuser", "-u", "nobody", "--", *command]
    done = subprocess.run(command, cwd=shared, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)



@pytest.fixture
def control_server(served: Callable[..., RunningServer]) -> Iterator[tuple[RunningServer, int]]:
    """The real server, and a control TLS server with the same certificate and key that answers anyone."""
    server = served()
    tls_dir = server.ca.parent
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dir / "localhost.pem", tls_dir / "localhost.key")
    listener = socket.create_server(("127.0.0.1", free_port()))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(65536)
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\ncontrol")
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server, listener.getsockname()[1]
    stop.set()
    thread.join(2)
    listener.close()


def test_another_uid_gets_nothing(control_server: tuple[RunningServer, int], shared_dir: Path) -> None:
    server, control_port = control_server
    shutil.copyfile(server.ca, shared_dir / "ca.pem")
    (shared_dir / "ca.pem").chmod(0o644)

    # nobody can read the CA copy and complete TLS with this very certificate ...
    control = run_client(shared_dir, control_port, "GET", "/version", as_nobody=True)
    assert control["handshake"] == "ok" and control["answer"].endswith("control"), control
    # ... and root, the server's own user, is served normally by the same script.
    own = run_client(shared_dir, server.port, "GET", "/version", as_nobody=False)
    assert own["handshake"] == "ok" and own["answer"].startswith("HTTP/1.1 200") and "hashAlgorithms" in own["answer"]

    for method, path in (("GET", "/version"), ("POST", "/sign"), ("GET", "/playground/status")):
        other = run_client(shared_dir, server.port, method, path, as_nobody=True)
        assert other["connected"], other  # the port is open to everyone ...
        assert other["handshake"] != "ok", other  # ... but the server closes the connection before TLS,
        assert "CERTIFICATE_VERIFY_FAILED" not in str(other["handshake"]), other  # (not a trust problem)
        assert other["answer"] == "", other  # and nothing is answered.
    log = server.log(wait=0.5)
    assert f"refused a connection from another local user (uid {NOBODY})" in log, log[-2000:]
    assert "sign request" not in log  # no handler ran


@pytest.mark.parametrize("lookup", [peer.netlink_uid, peer.proc_uid], ids=["sock_diag", "proc"])
def test_owner_lookup_names_the_other_uid(shared_dir: Path, lookup: Callable[..., int | None]) -> None:
    """A socket that nobody owns is named as nobody's by both lookups, and a closed one as no one's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        holder = subprocess.Popen(["runuser", "-u", "nobody", "--", PYTHON, "-I", "-c",
                                   "import socket, sys; s = socket.create_connection(('127.0.0.1', int(sys.argv[1])));"
                                   " print('up', flush=True); sys.stdin.read()", str(port)],
                                  cwd=shared_dir, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
            conn, client = listener.accept()
            with conn:
                assert lookup(client[:2], conn.getsockname()[:2]) == NOBODY
                mine = socket.create_connection(("127.0.0.1", port))
                other, mine_address = listener.accept()
                with mine, other:
                    assert lookup(mine_address[:2], other.getsockname()[:2]) == os.geteuid()
                assert lookup(("127.0.0.1", 1), conn.getsockname()[:2]) is None
        finally:
            holder.kill()
            holder.wait()
