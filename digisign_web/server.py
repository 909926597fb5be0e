"""The local HTTPS server: loopback only, TLS 1.2+, Host- and Origin-checked, serving SCS.

``create_app`` is the aiohttp app factory (state in ``web.AppKey``s, no globals); ``serve`` binds the SCS
port list (the first free port wins) on 127.0.0.1 and ::1 and runs until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import html
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from card import CardManager, CardPolicy, VirtualCard

from . import policy
from .dialog import AutoDialog, Dialog, TerminalDialog
from .limits import BodyTooLarge, ConnectionLimits, connection_of, fd_budget, limit_log_repeats, read_limited
from .playground import add_routes as add_playground_routes
from .scs import CardState, ScsFailure, SigningService, failure, parse_json, parse_request, version_payload
from .settings import Settings, load_settings
from .text import inert_line
from .tls import ensure_tls, server_context
from .trust import is_trusted_anywhere
from .webdialog import WebDialog, top_level_navigation
from .webdialog import add_routes as add_dialog_routes
from .websigner import add_routes as add_websigner_routes

log = logging.getLogger(__name__)

HOSTS = ("127.0.0.1", "::1")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SCS_PATHS = ("/version", "/sign")  # CORS for the origins allowedOrigins admits
CROSS_ORIGIN_PATHS = ("/websigner",)  # forms from relying parties: its handler checks the sender
NAVIGABLE = ("/", "/dialog/{token}")  # pages a link on another site may open in a tab (never in a frame)
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
FRAME_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "frame-ancestors 'none'"}
BACKLOG = 4096  # a burst of connections waits in the kernel (up to net.core.somaxconn) instead of being dropped

SERVICE = web.AppKey("signing_service", SigningService)
STATE = web.AppKey("card_state", CardState)
SETTINGS = web.AppKey("settings", Settings)


def _host_ok(request: web.Request) -> bool:
    """DNS-rebinding defence: the Host header must name loopback and the port we were reached on."""
    host = request.headers.get("Host", "")
    if host.startswith("["):
        name, _, port = host.partition("]")
        name, port = name + "]", port.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    if name.lower() not in LOOPBACK_NAMES:
        return False
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return True  # in-memory test transport: no socket to compare with
    return (port or ("443" if request.secure else "80")) == str(sockname[1])


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data, headers={"Cache-Control": "no-store"})


def own_origins(request: web.Request) -> set[str]:
    """This server's origins as a browser names them: the scheme and port the request came in on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = str(sockname[1]) if sockname else request.host.rpartition(":")[2]
    names = {f"{request.scheme}://{name}:{port}" for name in LOOPBACK_NAMES}
    if port == ("443" if request.secure else "80"):
        names |= {f"{request.scheme}://{name}" for name in LOOPBACK_NAMES}
    return names


def cross_site(request: web.Request) -> bool:
    """Whether a browser sent this request on behalf of another site, or of another port of localhost.

    ``Sec-Fetch-Site`` decides where the browser sends it; ``Origin`` where it does not (and an Origin
    naming someone else is refused either way). ``Origin: null`` passes only with ``same-origin``: that is
    our own result page's form post under ``Referrer-Policy: no-referrer``.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site not in (None, "same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None or origin in own_origins(request):
        return False
    return not (origin == "null" and site == "same-origin")


def _top_level_navigation(request: web.Request) -> bool:
    return request.method == "GET" and top_level_navigation(request)


def _harden(response: web.StreamResponse) -> None:
    """Headers every answer carries unless its handler chose its own: no framing, no MIME sniffing."""
    for name, value in FRAME_HEADERS.items():
        response.headers.setdefault(name, value)


def _scs_cors(response: web.StreamResponse, request: web.Request, origin: str | None, allowed: bool) -> None:
    """CORS (D3) for the SCS endpoints, for origins that allowedOrigins admits; never credentials."""
    response.headers["Vary"] = "Origin"
    if not (origin and allowed):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type, Accept")
        response.headers["Access-Control-Max-Age"] = "600"
        if request.headers.get("Access-Control-Request-Private-Network"):
            response.headers["Access-Control-Allow-Private-Network"] = "true"


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Host check for every path; CORS on the SCS endpoints only; every other route except the static
    files and the WebSigner entry refuses cross-site requests (a link may still open a page in a tab)."""
    settings = request.app[SETTINGS]
    connection = connection_of(request)
    if connection is not None:
        connection.request_started(request)  # the head is in: from here the body timeouts apply
    try:
        if not _host_ok(request):
            log.warning("refused a request with Host %r (DNS rebinding?)", request.headers.get("Host"))
            # SCS clients read failures from a 200 JSON body; other paths get a plain 403.
            response: web.StreamResponse = web.json_response(
                failure(settings.scs_version, 403, "the Host header does not name this local server (localhost, "
                                                   "127.0.0.1 or [::1])"),
                status=200 if request.path in SCS_PATHS else 403)
        elif request.path in SCS_PATHS:
            origin = request.headers.get("Origin")
            allowed = origin is not None and policy.origin_allowed(origin, settings.allowed_origins)
            if request.method == "OPTIONS" and not allowed:
                response = web.Response(status=403, text="origin not allowed (allowedOrigins)")
            else:
                response = await handler(request)
            _scs_cors(response, request, origin, allowed)
        elif request.path.startswith("/static/") or request.path in CROSS_ORIGIN_PATHS:
            response = await handler(request)
        elif cross_site(request) and not (_route(request) in NAVIGABLE and _top_level_navigation(request)):
            log.warning("refused a cross-site request for %s (Origin %s, Sec-Fetch-Site %s)", inert_line(request.path),
                        inert_line(request.headers.get("Origin")), inert_line(request.headers.get("Sec-Fetch-Site")))
            response = web.Response(status=403, text="This server's pages answer only its own pages.",
                                    headers={"Cache-Control": "no-store"})
        else:
            response = await handler(request)
    except web.HTTPException as exc:
        _harden(exc)
        raise
    finally:
        if connection is not None:
            connection.request_done()
    _harden(response)
    return response


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


async def version(request: web.Request) -> web.Response:
    return _json(version_payload(request.app[STATE].summaries(), request.app[SETTINGS].scs_version))


def _origin(request: web.Request, settings: Settings) -> str | None:
    """The requesting origin, or ScsFailure(403). No Origin is accepted only from non-browser clients."""
    origin = request.headers.get("Origin")
    if origin is None:
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site not in (None, "none", "same-origin"):
            # A browser navigation from another site (e.g. a GET /sign link) carries no Origin: refuse it.
            raise ScsFailure(403, "a cross-site browser request without an Origin header is refused")
        return None
    if not policy.origin_allowed(origin, settings.allowed_origins):
        raise ScsFailure(403, f"origin {origin} is not allowed (allowedOrigins)")
    return origin


async def _read_body(request: web.Request, limit: int) -> bytearray:
    """The body, or 413 without reading it all when it is larger than the limit."""
    try:
        return await read_limited(request, limit)
    except BodyTooLarge as exc:
        raise ScsFailure(413, str(exc)) from None


async def sign(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    try:
        origin = _origin(request, settings)
        if request.method == "GET":
            scs_request = parse_request(dict(request.query), from_query=True)
        elif request.method == "POST":
            if request.content_type == "application/jwt":
                raise ScsFailure(501, "the SCS 1.3 JWS/JWE transaction flow is not implemented")
            body = await _read_body(request, settings.max_request_bytes)
            fields = parse_json(body)
            del body  # keep peak memory near the payload size: the JSON text is no longer needed
            scs_request = parse_request(fields)
            del fields
        else:
            raise ScsFailure(400, f"method {request.method} is not used by SCS")
        log.info("sign request from %s: %s/%s/%s, %d bytes", inert_line(origin) or "(no origin)",
                 scs_request.signature_type,
                 scs_request.content_type, scs_request.hash_algorithm, len(scs_request.content))
        result = await service.sign(scs_request, origin)
        log.info("sign request from %s: signed", inert_line(origin) or "(no origin)")
        return _json(result)
    except ScsFailure as exc:
        log.info("sign request from %s: failed %d: %s", inert_line(origin) or "(no origin)", exc.code,
                 inert_line(exc.text, 1000))  # header text (the origin) inert in the log, see text.py
        return _json(failure(settings.scs_version, exc.code, exc.text))
    except Exception:
        log.exception("internal error while signing")
        return _json(failure(settings.scs_version, 500, "internal error; see the server log"))


PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' "
            "https://localhost:* https://127.0.0.1:*; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


async def playground_page(request: web.Request) -> web.Response:
    """The signing playground: the page an integrator opens first."""
    text = (static_dir() / "playground.html").read_text(encoding="utf-8")
    text = text.replace("{{lang}}", html.escape(request.app[SETTINGS].language))
    return web.Response(text=text, content_type="text/html",
                        headers={"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY",
                                 # same-origin, not no-referrer: with no-referrer the WebSigner form's
                                 # Origin header would be "null" and the post refused as anonymous
                                 "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)  # the middleware adds the CORS headers


def static_dir() -> Path:
    """The installed ``static`` package: scs.js, the dialog and the playground."""
    return Path(str(resources.files("static")))


def add_static_routes(app: web.Application) -> None:
    """``/static/<name>`` for scripts and style sheets only, readable from any origin (``import`` of
    scs.mjs by an e-service page). The HTML pages there are templates: ``/`` and the dialog serve them,
    with their security headers, so they are not served raw."""
    files = {path.name: path for path in static_dir().iterdir() if path.suffix in STATIC_TYPES}

    async def static_file(request: web.Request) -> web.FileResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                               "Access-Control-Allow-Origin": "*",
                                               "Cross-Origin-Resource-Policy": "cross-origin",
                                               "Cache-Control": "no-cache"})

    app.router.add_get("/static/{name}", static_file)


def create_app(service: SigningService) -> web.Application:
    # client_max_size is above our own limit: _read_body enforces it with a JSON 413.
    app = web.Application(middlewares=[guard], client_max_size=service.settings.max_request_bytes + 1)
    app[SERVICE] = service
    app[STATE] = service.state
    app[SETTINGS] = service.settings
    app.router.add_get("/version", version)
    app.router.add_route("GET", "/sign", sign)
    app.router.add_route("POST", "/sign", sign)
    app.router.add_get("/", playground_page)
    add_playground_routes(app)
    for path in SCS_PATHS:
        app.router.add_route("OPTIONS", path, preflight)
    add_static_routes(app)
    if isinstance(service.dialog, WebDialog):
        add_dialog_routes(app, service.dialog)
    add_websigner_routes(app, service)
    return app


def build_dialog(args: argparse.Namespace, settings: Settings) -> Dialog:
    if args.dialog == "auto":
        return AutoDialog(args.auto_pin1, args.auto_pin2, cancel=args.auto_cancel,
                          allow_real_cards=args.auto_approve_real_cards)
    if args.dialog == "web":
        return WebDialog(timeout=settings.dialog_timeout, language=settings.language)
    return TerminalDialog()


class LimitedSite(web.BaseSite):
    """A TCP site whose connections pass :class:`~.limits.ConnectionLimits` (this user only, caps,
    deadlines) before aiohttp sees them; TLS starts only for admitted connections."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, ssl_context: Any, limits: ConnectionLimits):
        super().__init__(runner, ssl_context=ssl_context, backlog=BACKLOG)
        self._host, self._port, self._limits = host, port, limits

    @property
    def name(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{'https' if self._ssl_context else 'http'}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._limits.protocol_factory(server, self._ssl_context), self._host, self._port, backlog=self._backlog)


async def _bind(runner: web.AppRunner, ports: tuple[int, ...], ssl_context: Any,
                limits: ConnectionLimits | None = None) -> int | None:
    limits = limits or ConnectionLimits()
    for port in ports:
        sites = [LimitedSite(runner, host, port, ssl_context, limits) for host in HOSTS]
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
        return port
    return None


async def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)  # logs its own warnings
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.ignored:
        log.info("settings that do not apply here (ignored): %s", ", ".join(settings.ignored))
    if args.dialog == "auto" and args.auto_approve_real_cards:
        log.warning("!!! --auto-approve-real-cards: every request is signed WITHOUT asking anyone, "
                    "with any card, including real ones !!!")
    files = ensure_tls(args.state_dir)
    virtual = VirtualCard(args.virtual_card, args.state_dir) if args.virtual_card else None
    card_policy = CardPolicy(
        exclude_reader=args.exclude_reader or settings.exclude_reader,
        allow_unknown_cards=settings.allow_unknown_cards and bool(args.allow_unknown_cards),
        valid_token_info_label=args.valid_token_info_label or settings.valid_token_info_label,
        refresh_interval=settings.build_reader_list_timer,
    )
    manager = CardManager(card_policy, virtual=virtual)
    state = CardState(manager)
    service = SigningService(manager, state, settings, build_dialog(args, settings))
    manager.start()
    if virtual is not None:
        await asyncio.to_thread(state.refresh, manager.virtual_reader)
    limit_log_repeats()
    runner = web.AppRunner(create_app(service), access_log=None, handler_cancellation=True)
    await runner.setup()
    https_ports = (args.port, *[p for p in settings.https_ports if p != args.port]) if args.port \
        else settings.https_ports
    limits = ConnectionLimits(max_connections=fd_budget())
    if not limits.check_peer:
        log.warning("this system cannot tell which local user a connection comes from: other users are not refused")
    port = await _bind(runner, https_ports, server_context(files), limits)
    if port is None:
        print(f"error: none of the ports {https_ports} is free", file=sys.stderr)
        await runner.cleanup()
        manager.stop()
        return 2
    if isinstance(service.dialog, WebDialog):
        service.dialog.base_url = f"https://localhost:{port}"
    print(f"digisign-web listening on https://localhost:{port}/ (127.0.0.1 and [::1])")
    if settings.http_ports:
        http_port = await _bind(runner, settings.http_ports, None, limits)
        if http_port:
            print(f"plain HTTP (httpPorts) on http://localhost:{http_port}/")
    print(f"local CA certificate (trust it once in your browser): {files.ca_cert}")
    if not is_trusted_anywhere(files.ca_cert, Path.home()):
        print("hint: browsers do not trust it yet; run `digisign-web trust install` (see certs/README.md)")
    if virtual is not None:
        print(f"virtual card {virtual.profile.name}: PIN1 1234, PIN2 123456, PUK 12345678")
    print(f"dialog: {args.dialog}", flush=True)
    log.info("listening on port %d", port)
    try:
        await asyncio.Event().wait()
    finally:
        limits.close()
        await runner.cleanup()
        manager.stop()
    return 0


def serve(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
