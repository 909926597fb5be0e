"""The measuring tools of the benchmark: one keep-alive HTTPS client, subject/floor alternation, processes,
and a process's peak RSS. Nothing here knows the server's internals: it talks HTTP and reads ``/proc``."""

from __future__ import annotations

import functools
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ORIGIN = "https://bench.example"


@dataclass
class Stats:
    """Samples of one quantity (one per repeat): min, median (the headline) and max."""

    samples: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.samples.append(value)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)


def alternate(subject: Callable[[], float], floor: Callable[[], float], repeats: int) -> tuple[Stats, Stats]:
    """Subject, floor, subject, floor, ...: ``repeats`` samples of each, taken in turn, so that a machine that
    gets busier or quieter during the run (other processes, CPU frequency) weighs on both alike."""
    a, b = Stats(), Stats()
    for _ in range(repeats):
        a.add(subject())
        b.add(floor())
    return a, b


def client_context(ca: Path) -> ssl.SSLContext:
    """A client context trusting only ``ca``, made once per CA file (start-up polling would otherwise spend
    a millisecond per attempt on it, next to the process being started)."""
    stat = ca.stat()
    return _context(str(ca), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _context(ca: str, mtime: int, size: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


class Connection(http.client.HTTPSConnection):
    """One keep-alive HTTPS connection to 127.0.0.1:port, verified as ``localhost`` against the local CA.

    ``connects`` counts TCP+TLS handshakes: a timed batch must not contain one (see :meth:`batch`), so
    subject and floor are both measured on a connection that is already open."""

    def __init__(self, port: int, ca: Path, timeout: float = 300.0):
        context = client_context(ca)
        super().__init__("localhost", port, context=context, timeout=timeout)
        self._context = context
        self.connects = 0

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname="localhost")
        self.connects += 1

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Origin": ORIGIN}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.request(method, path, body=body, headers=headers)
        response = self.getresponse()
        data = response.read()
        if response.will_close:
            self.close()
        return response.status, data

    def fresh(self, path: str) -> None:
        """An untimed request that makes sure the connection is open, reopening it once if the server had
        closed it while idle (``serve`` closes a kept-alive connection that sends nothing for a while)."""
        try:
            status, _ = self.call("GET", path)
        except (http.client.HTTPException, OSError):
            self.close()
            status, _ = self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")

    def cipher(self) -> str:
        assert isinstance(self.sock, ssl.SSLSocket)
        name, version, _ = self.sock.cipher()  # type: ignore[misc]
        return f"{version} {name}"

    def batch(self, method: str, path: str, body: bytes | None, count: int, warm_path: str,
              check: Callable[[bytes], None]) -> float:
        """Seconds per request, the mean over ``count`` back-to-back requests on the open connection."""
        self.fresh(warm_path)
        connects = self.connects
        answers = []
        start = time.perf_counter()
        for _ in range(count):
            status, data = self.call(method, path, body)
            answers.append((status, data))
        elapsed = time.perf_counter() - start
        if self.connects != connects:
            raise RuntimeError(f"{path}: the connection was reopened during a timed batch")
        for status, data in answers:
            if status != 200:
                raise RuntimeError(f"{method} {path} answered HTTP {status}: {data[:200]!r}")
            check(data)
        return elapsed / count


# --- processes ------------------------------------------------------------------------------------------------


def clean_env(home: Path) -> dict[str, str]:
    """A minimal environment: no DIGISIGN_CONF, no settings keys as variables, config and caches under ``home``."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(home),
           "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}
    (home / "config").mkdir(parents=True, exist_ok=True)
    return env


def start(args: list[str], log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """A background process whose output goes to a file (a pipe nobody reads would stall it)."""
    with open(log, "ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                cwd=cwd)


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT as Ctrl-C would, SIGKILL after 10 s."""
    if process.poll() is None:
        process.send_signal(2)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_ready(process: subprocess.Popen[bytes], port: int, ca: Path, path: str, timeout: float = 60.0,
               interval: float = 0.002) -> float:
    """Seconds from now until ``GET path`` first answers 200 (each attempt a new connection), polled every
    ``interval``; fails if the process exits first."""
    start_time = time.perf_counter()
    deadline = time.monotonic() + timeout
    while True:
        connection = None
        try:
            connection = Connection(port, ca, timeout=5.0)  # the CA file appears with the first start
            status, _ = connection.call("GET", path)
            if status == 200:
                return time.perf_counter() - start_time
        except (OSError, http.client.HTTPException):
            pass
        finally:
            if connection is not None:
                connection.close()
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with {process.returncode} before {path} answered")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} on port {port} did not answer within {timeout} s")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- memory ---------------------------------------------------------------------------------------------------


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class PeakRss:
    """The peak RSS of another process while something runs: the kernel's own high-water mark, reset before
    (``echo 5 > /proc/<pid>/clear_refs``); where that is not allowed, VmRSS sampled every millisecond."""

    def __init__(self, pid: int):
        self.pid = pid
        self.method = "VmHWM after clear_refs 5"
        try:
            self._reset()
        except OSError:
            self.method = "VmRSS sampled every 1 ms"

    def _reset(self) -> None:
        with open(f"/proc/{self.pid}/clear_refs", "w") as fh:
            fh.write("5")

    def during(self, action: Callable[[], None]) -> tuple[int, int]:
        """(RSS before, peak RSS during ``action``) in bytes."""
        before = status_kib(self.pid, "VmRSS")
        if self.method.startswith("VmHWM"):
            self._reset()
            action()
            return before * 1024, status_kib(self.pid, "VmHWM") * 1024
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, status_kib(self.pid, "VmRSS"))
                time.sleep(0.001)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            action()
        finally:
            done.set()
            sampler.join()
        return before * 1024, max(peak, status_kib(self.pid, "VmRSS")) * 1024
