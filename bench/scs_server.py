"""SCS server benchmark: /version and /sign latency over TLS, as ratios of an aiohttp hello-world served
over the same TLS setup in the same run (the floor: what aiohttp + TLS cost by themselves).

    python bench/scs_server.py [--rounds 200]

/sign uses the in-process virtual card and the automatic dialog, so it measures the server's own work
(parsing, policy, formats) plus the emulated card; a real card adds its APDU time (see card_apdus.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from card.virtual import VirtualCard, VirtualReader  # noqa: E402
from digisign_web.dialog.auto import AutoDialog  # noqa: E402
from digisign_web.settings import Settings  # noqa: E402
from digisign_web.tls.ca import ensure_tls, server_context  # noqa: E402
from digisign_web.web.app import build_app  # noqa: E402


async def _serve(app: web.Application, context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


async def _time(session: aiohttp.ClientSession, method: str, url: str, rounds: int, **kwargs: object) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        async with session.request(method, url, **kwargs) as response:  # type: ignore[arg-type]
            await response.read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        files = ensure_tls(Path(state))
        context = server_context(files)
        client_ssl = ssl.create_default_context(cafile=str(files.ca_cert))

        hello = web.Application()
        hello.router.add_get("/", lambda r: web.json_response({"hello": "world"}))
        hello_runner, hello_port = await _serve(hello, context)

        card = VirtualCard("fineid-v4", state)
        scs_runner, port = await _serve(build_app(Settings(), AutoDialog(), VirtualReader(card)), context)
        try:
            async with aiohttp.ClientSession() as session:
                headers = {"Host": f"localhost:{port}", "Origin": "https://bench.example"}
                floor = await _time(session, "GET", f"https://localhost:{hello_port}/", rounds, ssl=client_ssl)
                version = await _time(session, "GET", f"https://localhost:{port}/version", rounds, ssl=client_ssl,
                                      headers=headers)
                body = json.dumps({"content": base64.b64encode(b"x" * 1024).decode(),
                                   "selector": {"keyusages": ["nonrepudiation"]}})
                card.stats.reset()
                sign = await _time(session, "POST", f"https://localhost:{port}/sign", rounds // 4 or 1,
                                   ssl=client_ssl, headers=headers, data=body)
                per_sign = card.stats.apdus / (rounds // 4 or 1)
        finally:
            await scs_runner.cleanup()
            await hello_runner.cleanup()
    print(f"hello-world floor over TLS: {floor * 1000:.2f} ms (median of {rounds})")
    print(f"GET /version: {version * 1000:.2f} ms = {version / floor:.1f}x the floor; 0 APDUs")
    print(f"POST /sign (1 KiB, signature, P-384, auto dialog): {sign * 1000:.2f} ms = {sign / floor:.1f}x the floor; "
          f"{per_sign:.0f} APDUs per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    asyncio.run(main(parser.parse_args().rounds))
