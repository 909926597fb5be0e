"""The local HTTPS server: loopback only, TLS 1.2+, ``Host``-checked, answering SCS ``/version``
from memory.

This is the foundation the SCS issue builds on: the app factory, the card state kept current by reader
events (a card is read once, in the background, when it arrives, so ``/version`` never sends an APDU),
binding with the SCS port fallback, and the local TLS identity. ``/sign`` is not implemented in this
build and says so in the SCS failure format.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import html
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from card import CardError, CardManager, CardPolicy, ReaderEvent, VirtualCard

from .tls import ensure_tls, server_context

log = logging.getLogger(__name__)

HTTPS_PORTS = (53952, 23124, 8089)
HOSTS = ("127.0.0.1", "::1")
SIGNATURE_TYPES = "signature,signature-plain,cms,cms-pades,pkcs7,xml"


@dataclass
class CardSummary:
    """What the server knows about one present card, read once when it arrived."""

    reader: str
    profile: str = ""
    serial: str = ""
    label: str = ""
    key_algorithms: list[str] = field(default_factory=list)
    certificates: list[dict[str, str]] = field(default_factory=list)
    problem: str = ""


class CardState:
    """Reader events in, summaries out. Summaries are built on a worker thread, never on a request."""

    def __init__(self, manager: CardManager):
        self.manager = manager
        self._lock = threading.Lock()
        self._summaries: dict[str, CardSummary] = {}
        manager.add_listener(self._on_event)

    def _on_event(self, event: ReaderEvent) -> None:
        with self._lock:
            self._summaries.pop(event.reader, None)
        if event.kind == "card-inserted":
            threading.Thread(target=self.refresh, args=(event.reader,), daemon=True).start()

    def refresh(self, reader: str) -> None:
        summary = CardSummary(reader)
        try:
            token = self.manager.token(reader)
            summary.profile, summary.serial, summary.label = token.profile.name, token.serial, token.label
            for cert in token.certificates():
                if cert.key is not None:
                    algo = "ECDSA" if cert.key_algorithm == "EC" else "RSA"
                    if algo not in summary.key_algorithms:
                        summary.key_algorithms.append(algo)
                summary.certificates.append({"role": cert.role, "subject": cert.subject,
                                             "issuer": cert.issuer})
        except CardError as exc:
            summary.problem = str(exc)
            log.warning("%s: %s", reader, exc)
        with self._lock:
            if self.manager.readers().get(reader) is not None:
                self._summaries[reader] = summary

    def summaries(self) -> list[CardSummary]:
        with self._lock:
            return list(self._summaries.values())


STATE = web.AppKey("card_state", CardState)


def _allowed_host(host: str | None, port: int | None) -> bool:
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in ("localhost", "127.0.0.1", "[::1]")


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """DNS-rebinding defence: only loopback Host names; CORS echo for the SCS endpoints."""
    if not _allowed_host(request.headers.get("Host"), None):
        return web.json_response({"status": "failed", "reasonCode": 403,
                                  "reasonText": "Host header is not a loopback name"}, status=403)
    origin = request.headers.get("Origin")
    if request.method == "OPTIONS":
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Content-Type, Accept")
            response.headers["Access-Control-Max-Age"] = "600"
            if request.headers.get("Access-Control-Request-Private-Network"):
                response.headers["Access-Control-Allow-Private-Network"] = "true"
    return response


def version_payload(summaries: list[CardSummary]) -> dict[str, object]:
    """The six mPollux fields (plus v1.2's signatureAlgorithms), from memory: no APDU."""
    usable = [s for s in summaries if s.key_algorithms]
    algorithms: list[str] = []
    for s in usable:
        algorithms += [a for a in s.key_algorithms if a not in algorithms]
    return {
        "version": "1.1",
        "httpMethods": "GET, POST",
        "contentTypes": "data, digest",
        "signatureTypes": SIGNATURE_TYPES,
        "selectorAvailable": True,
        "hashAlgorithms": "SHA1, SHA224, SHA256, SHA384, SHA512" if usable else "",
        "signatureAlgorithms": ",".join(algorithms),
    }


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_payload(request.app[STATE].summaries()))


async def sign(request: web.Request) -> web.Response:
    return web.json_response({"status": "failed", "reasonCode": 501,
                              "reasonText": "signing is not available in this build yet"})


async def status_page(request: web.Request) -> web.Response:
    rows = []
    for s in request.app[STATE].summaries():
        certs = "".join(f"<li>[{html.escape(c['role'])}] {html.escape(c['subject'])}</li>" for c in s.certificates)
        rows.append(f"<h2>{html.escape(s.reader)}</h2><p>{html.escape(s.profile)} · serial "
                    f"{html.escape(s.serial)} {html.escape(s.problem)}</p><ul>{certs}</ul>")
    body = "".join(rows) or "<p>No card.</p>"
    page = (f"<!doctype html><meta charset=utf-8><title>digisign-web</title><h1>digisign-web</h1>{body}"
            "<p>SCS endpoints: <code>GET /version</code>, <code>POST /sign</code>.</p>")
    return web.Response(text=page, content_type="text/html",
                        headers={"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"})


def create_app(state: CardState) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=100 * 1024 * 1024)
    app[STATE] = state
    app.router.add_get("/version", version)
    app.router.add_route("*", "/sign", sign)
    app.router.add_get("/", status_page)
    app.router.add_route("OPTIONS", "/{tail:.*}", sign)  # answered by the middleware
    return app


async def _run(args: argparse.Namespace) -> None:
    files = ensure_tls(args.state_dir)
    virtual = VirtualCard(args.virtual_card, args.state_dir) if args.virtual_card else None
    policy = CardPolicy(exclude_reader=args.exclude_reader, allow_unknown_cards=bool(args.allow_unknown_cards),
                        valid_token_info_label=args.valid_token_info_label)
    manager = CardManager(policy, virtual=virtual)
    state = CardState(manager)
    manager.start()
    if virtual is not None:
        await asyncio.to_thread(state.refresh, manager.virtual_reader)
    runner = web.AppRunner(create_app(state), access_log=None)
    await runner.setup()
    context = server_context(files)
    ports = (args.port, *[p for p in HTTPS_PORTS if p != args.port])
    bound = None
    for port in ports:
        sites = [web.TCPSite(runner, host, port, ssl_context=context) for host in HOSTS]
        try:
            await sites[0].start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                log.warning("port %d is taken, trying the next one", port)
                continue
            raise
        try:
            await sites[1].start()
        except OSError as exc:
            log.warning("no IPv6 loopback on port %d: %s", port, exc)
        bound = port
        break
    if bound is None:
        raise SystemExit(f"none of the ports {ports} is free")
    print(f"digisign-web listening on https://localhost:{bound}/ (127.0.0.1 and [::1])")
    print(f"local CA certificate (trust it once in your browser): {files.ca_cert}")
    if virtual is not None:
        print(f"virtual card {virtual.profile.name}: PIN1 1234, PIN2 123456, PUK 12345678")
    print("signing (/sign) is not available in this build yet; /version and the status page are", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        manager.stop()


def serve(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_run(args))
    except KeyboardInterrupt:
        pass
    return 0
