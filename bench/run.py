"""``make bench``: the server's costs as ratios against floors measured in the same run, written to
docs/benchmarks.md and printed.

    .venv/bin/python -m bench.run [--quick] [--out docs/benchmarks.md]

Rules every figure follows:

* a ratio against a floor measured in the same run, the samples taken alternately (subject, floor, subject,
  floor, ...), at least 5 of each; min / median / max are shown and the median is the headline;
* like with like: POST with POST, both servers in their own process over the same TLS (the ``serve`` state
  directory's localhost certificate, verified against its local CA), each timed on one already open
  keep-alive connection with the same client code;
* APDUs are counted by the virtual card itself, never written down as constants;
* the code measured is the working tree's (``python -m digisign_web`` run from the repository root), not
  whatever copy is installed in .venv.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import cards
from bench.harness import (
    Connection,
    PeakRss,
    Stats,
    alternate,
    clean_env,
    free_port,
    start,
    status_kib,
    stop,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
FLOOR = ROOT / "bench" / "floor_server.py"
MIB = 1024 * 1024
SELECTOR = {"keyusages": ["nonrepudiation"]}
DOCUMENT = bytes(range(256)) * 4  # the 1 KiB document


@dataclass(frozen=True)
class Plan:
    repeats: int  # alternated samples of each side (>= 5)
    get_batch: int  # requests per sample, GET /version and hello-world
    post_batch: int  # requests per sample, 1 KiB POST /sign
    large_repeats: int  # one request per sample
    max_body: int | None  # None: the default maxRequestBytes (digisign_web/settings.py)
    startups: int
    helps: int
    apdu_runs: int
    list_runs: int

    def __post_init__(self) -> None:
        counts = (self.repeats, self.large_repeats, self.startups, self.helps, self.apdu_runs, self.list_runs)
        if min(counts) < 5:
            raise ValueError("every figure needs at least 5 samples of each side")


FULL = Plan(repeats=9, get_batch=200, post_batch=20, large_repeats=5, max_body=None, startups=7, helps=10,
            apdu_runs=10, list_runs=5)
QUICK = Plan(repeats=5, get_batch=50, post_batch=10, large_repeats=5, max_body=8 * MIB, startups=5, helps=5,
             apdu_runs=5, list_runs=5)


@dataclass
class Pair:
    subject: Connection
    floor: Connection
    serve_pid: int
    floor_pid: int


@dataclass
class Row:
    measure: str
    subject: str
    floor: str
    ratio: str
    target: str
    result: str


# --- formatting -----------------------------------------------------------------------------------------------


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.01:
        return f"{value * 1000:.0f} ms"
    if value >= 0.001:
        return f"{value * 1000:.2f} ms"
    return f"{value * 1e6:.0f} µs"


def spread(stats: Stats, unit: Callable[[float], str] = seconds) -> str:
    return f"{unit(stats.min)} / {unit(stats.median)} / {unit(stats.max)}"


def mib(value: float) -> str:
    return f"{value / MIB:.1f} MiB"


def verdict(value: float, limit: float) -> str:
    return "PASS" if value <= limit else "FAIL"


def timed_row(measure: str, subject: Stats, floor: Stats, target: float | None) -> Row:
    ratio = subject.median / floor.median
    # The subject does all the floor does and more: below 1 means noise (or an unfair floor), not speed.
    shown = f"{ratio:.2f}×" + (" (below 1: noise?)" if round(ratio, 2) < 1 else "")
    return Row(measure, spread(subject), spread(floor), shown,
               f"≤ {target:g}×" if target else "report", verdict(ratio, target) if target else "—")


# --- requests -------------------------------------------------------------------------------------------------


def sign_body(kind: str, content: bytes, content_type: str = "data") -> bytes:
    return json.dumps({"version": "1.1", "signatureType": kind, "contentType": content_type,
                       "hashAlgorithm": "SHA384", "selector": SELECTOR,
                       "content": base64.b64encode(content).decode("ascii")}).encode()


def largest_content(kind: str, limit: int) -> int:
    """The longest content whose request body (base64 in JSON) is at most ``limit`` bytes: one byte more
    adds a base64 quantum of 4 characters, which no longer fits."""
    overhead = len(sign_body(kind, b""))
    return (limit - overhead) // 4 * 3


def check_version(data: bytes) -> None:
    if "version" not in json.loads(data):
        raise RuntimeError(f"unexpected answer: {data[:200]!r}")


def check_hello(data: bytes) -> None:
    if json.loads(data) != {"hello": "world"}:
        raise RuntimeError(f"unexpected answer: {data[:200]!r}")


def check_signed(min_length: int = 0) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        answer = json.loads(data)
        if answer.get("status") != "ok" or len(answer.get("signature", "")) < min_length:
            raise RuntimeError(f"not signed: {data[:300]!r}")

    return check


# --- the run --------------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, plan: Plan, work: Path):
        self.plan = plan
        self.work = work
        self.env = clean_env(work / "home")
        self.state = work / "state"
        self.tls = self.state / "tls"
        self.ca = self.tls / "ca.pem"
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.config: list[str] = []
        if plan.max_body is not None:
            conf = work / "DigiSign.conf"
            conf.write_text(f"maxRequestBytes={plan.max_body}\n")
            self.config = ["--config", str(conf)]
        self.limit = plan.max_body or self.default_limit()

    @staticmethod
    def default_limit() -> int:
        from digisign_web.settings import Settings

        return Settings().max_request_bytes

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def serve_args(self, port: int) -> list[str]:
        return [str(VENV_BIN / "python"), "-m", "digisign_web", "serve", "--virtual-card", "fineid-v4",
                "--dialog", "auto", "--port", str(port), "--state-dir", str(self.state), *self.config]

    def floor_args(self, port: int, sign: bool, chain: Path | None = None) -> list[str]:
        args = [str(VENV_BIN / "python"), str(FLOOR), "--port", str(port), "--cert", str(self.tls / "localhost.pem"),
                "--key", str(self.tls / "localhost.key"), "--max-body", str(self.limit)]
        if sign:
            args += ["--sign", "--chain", str(chain)] if chain else ["--sign"]
        return args

    def start_serve(self) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        process = start(self.serve_args(port), self.work / "serve.log", self.env, ROOT)
        wait_ready(process, port, self.ca, "/version")
        return process, port

    # -- 1 to 4: one serve process and one floor process ---------------------------------------------------------

    @contextlib.contextmanager
    def pair(self, warm_body: bytes) -> Iterator[Pair]:
        """A fresh ``serve`` and a fresh floor process, each with one open connection that has answered one
        ``warm_body`` signature (lazy imports done, as in a server that has signed before)."""
        serve, serve_port = self.start_serve()
        floor = None
        connections: list[Connection] = []
        try:
            subject = Connection(serve_port, self.ca)
            connections.append(subject)
            _, data = subject.call("POST", "/sign", warm_body)
            answer = json.loads(data)
            if answer.get("status") != "ok":
                raise RuntimeError(f"serve does not sign: {data[:300]!r}")
            chain = self.work / "chain.json"
            if not chain.exists():
                chain.write_text(json.dumps(answer["chain"]))  # the floor answers with the very same certificates
            floor_port = free_port()
            floor = start(self.floor_args(floor_port, True, chain), self.work / "floor.log", self.env, ROOT)
            wait_ready(floor, floor_port, self.ca, "/hello")
            base = Connection(floor_port, self.ca)
            connections.append(base)
            base.call("POST", "/sign", warm_body)
            subject.fresh("/version")
            base.fresh("/hello")
            yield Pair(subject, base, serve.pid, floor.pid)
        finally:
            for connection in connections:
                connection.close()
            stop(serve)
            if floor is not None:
                stop(floor)

    def servers(self) -> None:
        with self.pair(sign_body("signature", DOCUMENT)) as pair:
            self.notes.append(f"TLS: `serve` negotiated {pair.subject.cipher()}, the floor {pair.floor.cipher()} "
                              f"(same certificate and key, one keep-alive connection each, `http.client`).")
            self.small(pair.subject, pair.floor)

    def small(self, subject: Connection, base: Connection) -> None:
        p = self.plan
        self.log("GET /version vs hello-world ...")
        a, b = alternate(lambda: subject.batch("GET", "/version", None, p.get_batch, "/version", check_version),
                         lambda: base.batch("GET", "/hello", None, p.get_batch, "/hello", check_hello), p.repeats)
        self.rows.append(timed_row("`GET /version` vs aiohttp hello-world GET", a, b, None))

        self.log("POST /sign signature 1 KiB vs the minimal signing server ...")
        body = sign_body("signature", DOCUMENT)
        ok = check_signed()
        a, b = alternate(lambda: subject.batch("POST", "/sign", body, p.post_batch, "/version", ok),
                         lambda: base.batch("POST", "/sign", body, p.post_batch, "/hello", ok), p.repeats)
        self.rows.append(timed_row("`POST /sign` 1 KiB `signature` vs minimal aiohttp signing server", a, b, 1.5))

        for kind, content_type, target in (("cms", "data", 2.0), ("pkcs7", "data", 2.0),
                                           ("cms-pades", "digest", 2.0), ("xml", "data", None)):
            self.log(f"POST /sign {kind} 1 KiB vs signature ...")
            content = hashlib.sha384(DOCUMENT).digest() if content_type == "digest" else DOCUMENT
            kind_body = sign_body(kind, content, content_type)
            a, b = alternate(lambda kb=kind_body: subject.batch("POST", "/sign", kb, p.post_batch, "/version", ok),
                             lambda: subject.batch("POST", "/sign", body, p.post_batch, "/version", ok), p.repeats)
            what = "the SHA-384 digest of 1 KiB" if content_type == "digest" else "1 KiB"
            self.rows.append(timed_row(f"`POST /sign` `{kind}` ({what}) vs `signature` 1 KiB, same server",
                                       a, b, target))
        self.notes.append(f"1 KiB requests: each sample is the mean of {p.post_batch} back-to-back POSTs "
                          f"({p.get_batch} GETs); an untimed GET before each sample keeps the connection open.")

    def large(self) -> None:
        """The largest admitted document per type, each type in a fresh pair of processes: a process keeps
        memory it has once used, which would hide the next type's peak."""
        p = self.plan
        document = os.urandom(max(largest_content(kind, self.limit) for kind in ("signature", "cms", "xml")))
        checked = False
        for kind, rss_target in (("signature", 3.0), ("cms", 4.0), ("xml", 4.0)):
            size = largest_content(kind, self.limit)
            body = sign_body(kind, document[:size])
            # size is a multiple of 3: one byte more costs 4 more base64 characters
            if len(body) > self.limit or len(body) + 4 <= self.limit or size % 3:
                raise RuntimeError(f"{kind}: {len(body)} bytes is not the largest body within {self.limit}")
            self.log(f"POST /sign {kind} {size / MIB:.1f} MiB (body {len(body)} bytes) ...")
            ok = check_signed(len(body) - 1024 if kind != "signature" else 0)
            with self.pair(sign_body(kind, DOCUMENT)) as pair:
                if not checked:
                    self.boundary(pair.subject.port)
                    checked = True
                serve_rss, floor_rss = PeakRss(pair.serve_pid), PeakRss(pair.floor_pid)
                idle = {"serve": status_kib(pair.serve_pid, "VmRSS") * 1024,
                        "floor": status_kib(pair.floor_pid, "VmRSS") * 1024}
                peaks: dict[str, list[int]] = {"serve": [], "floor": []}

                def sample(connection: Connection, warm: str, rss: PeakRss, side: str, body: bytes = body,
                           ok: Callable[[bytes], None] = ok, peaks: dict[str, list[int]] = peaks) -> float:
                    elapsed, _, peak = self.large_request(connection, warm, rss, body, ok)
                    peaks[side].append(peak)
                    return elapsed

                a, b = alternate(functools.partial(sample, pair.subject, "/version", serve_rss, "serve"),
                                 functools.partial(sample, pair.floor, "/hello", floor_rss, "floor"),
                                 p.large_repeats)
            label = f"`{kind}` {size / MIB:.1f} MiB (body {len(body) / MIB:.1f} MiB)"
            self.rows.append(timed_row(f"`POST /sign` {label}: time", a, b, 1.5))
            ga = Stats([float(x - idle["serve"]) for x in peaks["serve"]])
            gb = Stats([float(x - idle["floor"]) for x in peaks["floor"]])
            per_body = ga.median / len(body)
            self.rows.append(Row(
                f"`POST /sign` {label}: peak RSS above idle",
                f"{spread(ga, mib)} ({per_body:.3f}× body)",
                f"{spread(gb, mib)} ({gb.median / len(body):.3f}× body)",
                f"{ga.median / gb.median:.2f}×" if gb.median > 0 else "—",
                f"≤ {rss_target:g}× body", verdict(per_body, rss_target)))
            self.notes.append(
                f"`{kind}` large: idle RSS `serve` {mib(idle['serve'])}, floor {mib(idle['floor'])}; peak RSS "
                f"(median) `serve` {mib(statistics.median(peaks['serve']))}, floor "
                f"{mib(statistics.median(peaks['floor']))}.")
        self.notes.append(
            f"Large documents: the limit is {self.limit} bytes (maxRequestBytes"
            f"{'' if self.plan.max_body is None else ', set by --quick'}); the content is the longest whose "
            f"base64 JSON body fits, and `serve` refuses a body one byte longer (413). Each type runs in a new "
            f"pair of processes warmed by one 1 KiB request of that type; peak RSS above idle = the peak during "
            f"the request ({PeakRss(os.getpid()).method}) minus the process's RSS once warm and idle. One "
            f"request per sample.")

    @staticmethod
    def large_request(connection: Connection, warm: str, rss: PeakRss, body: bytes,
                      check: Callable[[bytes], None]) -> tuple[float, int, int]:
        """One timed POST on an open connection: (seconds, RSS before, peak RSS during) of the server."""
        connection.fresh(warm)
        connects = connection.connects
        result: list[tuple[float, int, bytes]] = []

        def request() -> None:
            t0 = time.perf_counter()
            status, data = connection.call("POST", "/sign", body)
            result.append((time.perf_counter() - t0, status, data))

        before, peak = rss.during(request)
        elapsed, status, data = result[0]
        if connection.connects != connects or status != 200:
            raise RuntimeError(f"port {connection.port}: reconnected, or HTTP {status}")
        check(data)
        return elapsed, before, peak

    def boundary(self, port: int) -> None:
        """``serve`` must refuse a body one byte over the limit: then the limit used here is the server's."""
        connection = Connection(port, self.ca)
        try:
            connection.putrequest("POST", "/sign")
            connection.putheader("Origin", "https://bench.example")
            connection.putheader("Content-Type", "application/json")
            connection.putheader("Content-Length", str(self.limit + 1))
            connection.endheaders()
            answer = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        if answer.get("reasonCode") != 413:
            raise RuntimeError(f"a body of limit + 1 bytes was not refused with 413: {answer}")

    # -- 5 and 6: start-up ----------------------------------------------------------------------------------------

    def startup(self) -> None:
        card_listed = Stats()

        def serve_once() -> float:
            port = free_port()
            t0 = time.perf_counter()
            process = start(self.serve_args(port), self.work / "serve-startup.log", self.env, ROOT)
            try:
                wait_ready(process, port, self.ca, "/version")
                first = time.perf_counter() - t0
                wait_card_listed(port, self.ca, t0, card_listed)  # D69: the card is read after the port opens
                return first
            finally:
                stop(process)

        def floor_once() -> float:
            port = free_port()
            t0 = time.perf_counter()
            process = start(self.floor_args(port, False), self.work / "floor-startup.log", self.env, ROOT)
            try:
                wait_ready(process, port, self.ca, "/hello")
                return time.perf_counter() - t0
            finally:
                stop(process)

        self.log("serve start-up vs hello-world start-up ...")
        serve_once(), floor_once()  # untimed: byte-code caches and the page cache warm for both
        a, b = alternate(serve_once, floor_once, self.plan.startups)
        self.rows.append(timed_row("`serve` start → first `/version` 200 vs hello-world start → first 200",
                                   a, b, 1.3))
        card_listed.samples = card_listed.samples[1:]  # the untimed warm-up run's
        self.rows.append(timed_row("`serve` start → `/version` lists the virtual card vs hello-world start → first "
                                   "200", card_listed, b, None))
        self.notes.append("Start-up: from `Popen` to the first 200, polling a new TLS connection every 2 ms; "
                          "`serve` with a state directory that already holds its TLS files and virtual card. "
                          "`serve` answers once its port listens and loads the card layer and reads the card "
                          "after (D69); the second start-up row is the time until `/version` names the card.")

    def help(self) -> None:
        python = str(VENV_BIN / "python")

        def run(args: list[str]) -> Callable[[], float]:
            def once() -> float:
                t0 = time.perf_counter()
                subprocess.run(args, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, check=True)
                return time.perf_counter() - t0

            return once

        self.log("digisign-web --help vs python -c pass ...")
        subject, floor = run([python, "-m", "digisign_web", "--help"]), run([python, "-c", "pass"])
        subject(), floor()
        a, b = alternate(subject, floor, self.plan.helps)
        self.rows.append(timed_row("`python -m digisign_web --help` vs `python -c pass`", a, b, 4.0))

    # -- APDUs ---------------------------------------------------------------------------------------------------

    def warm_apdus(self) -> None:
        self.log("APDUs per warm signature ...")
        samples, versions = cards.warm_signature_apdus(self.work / "inprocess", self.tls,
                                                       sign_body("signature", DOCUMENT), self.plan.apdu_runs)
        seen = Stats([float(c) for c in versions.counts])
        self.rows.append(Row("APDUs per `GET /version` with a card present, from the card",
                             f"{seen.min:.0f} / {seen.median:.0f} / {seen.max:.0f}", "—", "—", "0",
                             verdict(seen.max, 0)))
        counts = Stats([float(c) for c in samples.counts])
        runs = len(samples.counts)
        per = {name: n / runs for name, n in sorted(samples.by_command.items())}
        without = counts.median - per.get("GET RESPONSE", 0)
        breakdown = ", ".join(f"{name} {n:g}" for name, n in per.items())
        self.rows.append(Row("APDUs per warm `signature` (fineid-v4, P-384, PIN2 each time), from the card",
                             f"{counts.min:.0f} / {counts.median:.0f} / {counts.max:.0f} ({breakdown})", "—", "—",
                             "4 (+ GET RESPONSE on T=0)", verdict(without, 4)))

    def list_apdus(self) -> None:
        self.log("cold list: digisign-web list vs OpenSC pkcs15-tool -D through pcscd ...")
        # SmartCardSNCache=0: with the cache (on by default, D56) every run after the first would be a cached one.
        result = cards.cold_list_apdus(ROOT, VENV_BIN, self.work, {**self.env, "SmartCardSNCache": "0"},
                                       self.plan.list_runs)
        if isinstance(result, str):
            self.rows.append(Row("Cold `list` APDUs vs OpenSC `pkcs15-tool -D`", result, "—", "—", "report", "—"))
            return
        ours, theirs = Stats([float(c) for c in result.ours.counts]), Stats([float(c) for c in result.opensc.counts])

        def cell(stats: Stats) -> str:
            return f"{stats.min:.0f} / {stats.median:.0f} / {stats.max:.0f} APDUs"

        self.rows.append(Row("Cold `list` APDUs (fineid-v4 via pcscd + vpcd) vs OpenSC `pkcs15-tool -D`",
                             cell(ours), cell(theirs), f"{ours.median / theirs.median:.2f}×", "report", "—"))

        def by_command(samples: cards.ApduSamples) -> str:
            runs = len(samples.counts)
            return ", ".join(f"{name} {n / runs:g}" for name, n in sorted(samples.by_command.items()))

        agree = "agrees" if result.ours_transport == result.ours.counts else "DISAGREES"
        self.notes.append(
            f"Cold `list`: the virtual card in {result.reader} (through pcscd and vpcd) is removed and re-inserted "
            f"before each run, the two tools alternate, and the card counts what it receives. {result.ours.note}: "
            f"{by_command(result.ours)} per run; its own `--stats` ({result.ours_transport}) {agree} with the "
            f"card. {result.opensc.note}: {by_command(result.opensc)} per run.")

    def cache_apdus(self) -> None:
        """The smart-card cache (D57): a card's insertion cold (an empty cache) and cached (the same card again),
        alternately, through CardManager with SmartCardSNCache=3, counted by the card; READ BINARY per file too."""
        self.log("card insertions: cold vs cached (smart-card cache) ...")
        from card import CardManager, CardPolicy
        from card.cache import CardCache, MachineUserKey
        from card.virtual import VirtualCard, VirtualReader

        certificate_files = {"4331", "4332", "4333", "4334", "4335", "4336"}

        class FileCountingCard(VirtualCard):
            """The virtual card, also counting READ BINARY of certificate files (its own current EF)."""

            certificate_reads = 0

            def _read_binary(self, c):  # type: ignore[no-untyped-def]
                if self._current_ef is not None and self._current_ef.fid.hex().upper() in certificate_files:
                    self.certificate_reads += 1
                return super()._read_binary(c)

        card = FileCountingCard("fineid-v4", self.work / "inprocess")
        key = MachineUserKey(self.work / "cache-home" / "card-cache.key")
        warm = CardCache(self.work / "cache-home" / "cards", 3, key)
        counts: dict[str, list[int]] = {"cold": [], "cached": []}
        reads: dict[str, list[int]] = {"cold": [], "cached": []}
        by_command: dict[str, Counter[str]] = {"cold": Counter(), "cached": Counter()}

        def insertion(kind: str, cache: CardCache) -> None:
            reader = VirtualReader(card)
            manager = CardManager(CardPolicy(cache=cache), reader)
            manager.start()
            try:
                reader.remove()
                card.stats.reset()
                card.certificate_reads = 0
                reader.insert()
                [token] = manager.tokens()
                token.certificates()
                if token.cache_state != ("cached" if kind == "cached" else "stored"):
                    raise RuntimeError(f"a {kind} insertion came out {token.cache_state}")
            finally:
                manager.stop()
            counts[kind].append(card.stats.apdus)
            reads[kind].append(card.certificate_reads)
            by_command[kind].update(card.stats.by_command)

        insertion("cold", warm)  # fills the cache the cached runs use (not counted below)
        for kind in (counts, reads):
            kind["cold"].clear()
        by_command["cold"].clear()
        for run in range(self.plan.apdu_runs):
            insertion("cold", CardCache(self.work / "cache-home" / f"cold{run}", 3, key))
            insertion("cached", warm)
        cold, cached = Stats([float(c) for c in counts["cold"]]), Stats([float(c) for c in counts["cached"]])
        runs = self.plan.apdu_runs

        def cell(kind: str, stats: Stats) -> str:
            per = ", ".join(f"{name} {n / runs:g}" for name, n in sorted(by_command[kind].items()))
            return f"{stats.min:.0f} / {stats.median:.0f} / {stats.max:.0f} ({per})"

        self.rows.append(Row("APDUs per card insertion (fineid-v4), cached vs cold, from the card",
                             cell("cached", cached), cell("cold", cold), f"{cached.median / cold.median:.2f}×",
                             "< 1", verdict(cached.median / cold.median, 0.99)))
        self.rows.append(Row("READ BINARY of certificate files per cached insertion vs cold, from the card",
                             f"{max(reads['cached'])} (max)", f"{min(reads['cold'])} (min)", "—", "0",
                             verdict(max(reads["cached"]), 0)))

    # -- report --------------------------------------------------------------------------------------------------

    def run(self, steps: list[Callable[[], None]]) -> None:
        for step in steps:
            try:
                step()
            except Exception as exc:  # one broken measure must not hide the others
                name = step.__name__
                self.log(f"{name} failed:\n{traceback.format_exc()}")
                self.rows.append(Row(f"{name}: ERROR", str(exc)[:300].replace("|", "/"), "—", "—", "—", "FAIL"))


def wait_card_listed(port: int, ca: Path, t0: float, into: Stats, timeout: float = 30.0) -> None:
    """Poll ``/version`` on one connection until it names a card (non-empty signatureAlgorithms); record the
    seconds since ``t0``."""
    connection = Connection(port, ca, timeout=5.0)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            status, data = connection.call("GET", "/version")
            if status == 200 and json.loads(data).get("signatureAlgorithms"):
                into.add(time.perf_counter() - t0)
                return
            time.sleep(0.002)
    finally:
        connection.close()
    raise RuntimeError("/version never listed the virtual card")


def table(rows: list[Row]) -> str:
    lines = ["| measure | subject min / median / max | floor min / median / max | ratio | target | result |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.measure} | {r.subject} | {r.floor} | {r.ratio} | {r.target} | {r.result} |" for r in rows]
    return "\n".join(lines)


def git_state() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.rstrip("\n")

    commit = git("rev-parse", "--short", "HEAD") or "an unknown commit"
    dirty = [line[3:] for line in git("status", "--porcelain", "--", "card", "digisign_web").splitlines()]
    return f"{commit} with uncommitted changes to {', '.join(dirty)}" if dirty else commit


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, Python {platform.python_version()} "
            f"({sys.executable})")


def document(bench: Bench, command: str, started: dt.datetime, elapsed: float, load: tuple[str, str],
             code: tuple[str, str]) -> str:
    passed = sum(r.result == "PASS" for r in bench.rows)
    failed = sum(r.result == "FAIL" for r in bench.rows)
    notes = "\n".join(f"- {n}" for n in bench.notes)
    return f"""# Benchmarks

Written by `make bench` (`bench/run.py`); every run overwrites this file. **Each figure is a ratio against
a floor measured in the same run**, subject and floor sampled alternately, min / median / max over the
samples; the ratio is median over median and is what the target is checked against.

- Date: {started:%Y-%m-%d %H:%M} UTC; run time {elapsed:.0f} s
- Command: `{command}`
- Machine: {machine()}
- Load average (1 min) at start {load[0]}, at end {load[1]}: other work on the machine widens the spread
- Code: the working tree (`python -m digisign_web` from the repository root) at {code[0]}{
    "" if code[0] == code[1] else f"; at the end: {code[1]} (it changed during the run)"}
- Result: {passed} PASS, {failed} FAIL

{table(bench.rows)}

## What is compared

- `GET /version`: `digisign-web serve` (subprocess) against an aiohttp hello-world GET
  (`bench/floor_server.py`, subprocess), same TLS certificate and client.
- `POST /sign` 1 KiB `signature`: `serve --virtual-card fineid-v4 --dialog auto` (P-384 card, PIN2 per
  signature) against a minimal aiohttp server that parses the JSON, base64-decodes, hashes with SHA-384,
  signs with ECDSA P-384 in software (`cryptography`) and answers JSON with the signature and the same chain.
- `cms`, `pkcs7`, `cms-pades`, `xml`: the same `serve`, the given type against the `signature` request,
  alternately on the same connection.
- Largest document: per type a new `serve` and a new floor process; the floor answers the attached types
  (`cms`, `xml`) with the content again in base64. Memory: the target is on `serve`'s peak RSS above its
  idle RSS, per byte of request body; the floor's figure is there for comparison.
- Start-up: `python -m digisign_web serve ...` against `python bench/floor_server.py` (hello-world only: no
  `cryptography` import).
- `--help`: `.venv/bin/python -m digisign_web --help` (not the console script, which runs the copy
  installed in .venv) against `.venv/bin/python -c pass`.
- APDUs: counted by the virtual card itself (`stats.by_command`). Per warm signature and per `/version`: the
  app built in this process (`build_app`, as `serve` builds it) around an in-process fineid-v4 card, over the
  same HTTPS client; cold `list`: the card plugged into pcscd through vpcd.

## Notes from this run

{notes}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests per sample and an 8 MiB size limit for the large documents")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="Markdown file to write ('-': print only)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    started, t0 = dt.datetime.now(dt.UTC), time.monotonic()
    load_start = open("/proc/loadavg").read().split()[0]
    code_start = git_state()
    with tempfile.TemporaryDirectory(prefix="digisign-bench-") as tmp:
        bench = Bench(plan, Path(tmp))
        bench.run([bench.servers, bench.large, bench.warm_apdus, bench.startup, bench.help, bench.list_apdus,
                   bench.cache_apdus])
    load_end = open("/proc/loadavg").read().split()[0]
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "-m", "bench.run",
                          *sys.argv[1:]])
    if os.environ.get("BENCH_VIA_MAKE"):
        command = f"make bench` → `{command}"
    text = document(bench, command, started, time.monotonic() - t0, (load_start, load_end),
                    (code_start, git_state()))
    print(table(bench.rows))
    print()
    print("\n".join(f"- {n}" for n in bench.notes))
    if str(args.out) != "-":
        args.out.write_text(text)
        print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
