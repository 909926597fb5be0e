"""APDU counts for the benchmark, always from the virtual card's own counters (``stats`` of the card side,
an :class:`~card.transport.ApduStats`): what the card received, whoever sent it.

* :func:`warm_signature_apdus`: ``POST /sign`` over HTTPS to the app in this process (``build_app``, the one
  composition root, D33) serving an in-process fineid-v4 card with the automatic dialog, so that the card
  object and its counters are in reach; the timing figures come from ``serve`` subprocesses instead.
* :func:`cold_list_apdus`: ``digisign-web list`` against OpenSC's ``pkcs15-tool -D`` on the same virtual card
  plugged into pcscd through vpcd, re-inserted before every run so that each tool meets a cold card.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import Connection
from card.readers import reader_atr
from card.virtual.vpcd import listening as vpcd_listening

# The second slot first: the test suites plug their cards into the first one by default.
VPCD_SLOTS = {35964: "Virtual PCD 00 01", 35963: "Virtual PCD 00 00"}


@dataclass
class ApduSamples:
    """One APDU count per run, and what the runs sent by command (summed)."""

    counts: list[int] = field(default_factory=list)
    by_command: Counter[str] = field(default_factory=Counter)
    note: str = ""


# --- the warm signature -----------------------------------------------------------------------------------


def warm_signature_apdus(state_dir: Path, tls_dir: Path, body: bytes, runs: int) -> tuple[ApduSamples, ApduSamples]:
    """APDUs the card receives per ``POST /sign`` once the token is warm (after two untimed signatures), and per
    ``GET /version`` (answered from memory, D7)."""
    import ssl

    from aiohttp import web

    from card.virtual import VirtualCard, VirtualReader
    from digisign_web.dialog.auto import AutoDialog
    from digisign_web.settings import Settings
    from digisign_web.web.app import build_app

    card = VirtualCard("fineid-v4", state_dir)
    app = build_app(Settings(), AutoDialog(), VirtualReader(card))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_dir / "localhost.pem", tls_dir / "localhost.key")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port_box: list[int] = []

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return runner

    def run_loop() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run_loop, daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the in-process app did not start")
    samples, versions = ApduSamples(), ApduSamples()
    connection = Connection(port_box[0], tls_dir / "ca.pem")
    try:
        for _ in range(runs):
            card.stats.reset()
            status, data = connection.call("GET", "/version")
            if status != 200 or "version" not in json.loads(data):
                raise RuntimeError(f"in-process /version failed: {data[:300]!r}")
            versions.counts.append(card.stats.apdus)
            versions.by_command.update(card.stats.by_command)
        for warm in range(2 + runs):
            card.stats.reset()
            status, data = connection.call("POST", "/sign", body)
            answer = json.loads(data)
            if status != 200 or answer.get("status") != "ok":
                raise RuntimeError(f"in-process /sign failed: {data[:300]!r}")
            if warm >= 2:
                samples.counts.append(card.stats.apdus)
                samples.by_command.update(card.stats.by_command)
    finally:
        connection.close()
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
    samples.note = "in-process app, in-process card (T=0 rules as on a contact card)"
    return samples, versions


# --- the cold listing, against OpenSC -------------------------------------------------------------------------


def _wait(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _free_slot(timeout: float) -> tuple[int, str] | None:
    """A vpcd slot with no card in it (other test runs may be using one), waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port, reader in VPCD_SLOTS.items():
            if vpcd_listening(port) and reader_atr(reader) is None:
                return port, reader
        time.sleep(0.5)
    return None


@dataclass
class ListComparison:
    ours: ApduSamples
    opensc: ApduSamples
    reader: str
    ours_transport: list[int]  # what `list --stats` itself reports, as a cross-check of the card's count


def cold_list_apdus(root: Path, venv_bin: Path, work: Path, env: dict[str, str], runs: int) -> ListComparison | str:
    """``digisign-web list --stats`` and ``pkcs15-tool -D``, alternately, each on a freshly inserted card.
    Returns the reason instead when it cannot run (no pcscd, no vpcd slot free, no OpenSC)."""
    if shutil.which("pkcs15-tool") is None:
        return "skipped: pkcs15-tool (Debian's opensc) is not installed"
    started = subprocess.run(["bash", "scripts/pcscd.sh", "start"], cwd=root, capture_output=True, text=True)
    if started.returncode != 0:
        return "skipped: `bash scripts/pcscd.sh start` failed: " + (started.stderr or started.stdout).strip()[-300:]
    slot = _free_slot(60)
    if slot is None:
        return "skipped: both vpcd slots held a card for 60 s (another run is using pcscd)"
    port, reader = slot
    others = [name for name in VPCD_SLOTS.values() if name != reader]

    from card.virtual import VirtualCard
    from card.virtual.vpcd import run as vpcd_run

    card = VirtualCard("fineid-v4", work / "vpcd-card")
    stop = threading.Event()
    thread = threading.Thread(target=vpcd_run, args=(card, "127.0.0.1", port, stop), daemon=True)
    thread.start()
    # OpenSC 0.23 has no FINEID driver: its generic PKCS#15 reader needs the default driver enabled (see
    # tests/integration/test_opensc.py). File caching off, so every run reads the card.
    conf = work / "opensc.conf"
    conf.write_text("app default {\n    enable_default_driver = true;\n"
                    "    framework pkcs15 {\n        use_file_caching = no;\n    }\n}\n")
    opensc_env = {**env, "OPENSC_CONF": str(conf)}
    ours, opensc, transport = ApduSamples(), ApduSamples(), []

    def cold_run(command: list[str], run_env: dict[str, str], into: ApduSamples) -> str:
        card.remove()
        _wait(lambda: reader_atr(reader) is None, 15, f"the card to leave {reader}")
        card.insert()
        _wait(lambda: reader_atr(reader) is not None, 15, f"the card in {reader}")
        card.stats.reset()
        result = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr[-500:]}")
        into.counts.append(card.stats.apdus)
        into.by_command.update(card.stats.by_command)
        return result.stdout

    try:
        _wait(lambda: reader_atr(reader) is not None, 15, f"the virtual card in {reader}")
        for _ in range(runs):
            out = cold_run([str(venv_bin / "digisign-web"), "list", "--stats", "--json", "--wait", "5",
                            "--exclude-reader", " ".join(o.replace(" ", "*") for o in others)],
                           env, ours)
            mine = [entry for entry in json.loads(out)["apdu_stats"] if entry["reader"] == reader]
            transport.append(mine[0]["apdus"] if mine else -1)
            cold_run(["pkcs15-tool", "--reader", reader, "-D"], opensc_env, opensc)
    finally:
        stop.set()
        thread.join(15)
        try:
            _wait(lambda: reader_atr(reader) is None, 15, f"the card to leave {reader}")
        except RuntimeError:
            pass
    ours.note = "`digisign-web list --stats --json` (reads the certificates and every PIN's status)"
    opensc.note = "OpenSC `pkcs15-tool -D` (default driver on, file caching off)"
    return ListComparison(ours, opensc, reader, transport)
