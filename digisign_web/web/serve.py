"""Serving: bind the SCS port list on loopback (the first free port wins), from a typed options object.

``--listen ADDR`` binds that one address instead (a container in CI, D40); the Host check stays.

The HTTPS port is claimed *before* the application is built, so everything that names the server's own
address (the web dialog's links) is given it at construction instead of being patched after start.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import logging
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from digisign_web.dialog.auto import AutoDialog
from digisign_web.dialog.protocol import Dialog
from digisign_web.dialog.terminal import TerminalDialog
from digisign_web.settings import Settings, card_policy, load_settings
from digisign_web.tls.files import ensure_tls, server_context
from digisign_web.web.app import build_app
from digisign_web.web.dialog import WebDialog
from digisign_web.web.keys import CORE
from digisign_web.web.limits import ConnectionLimits, fd_budget, limit_log_repeats

TYPE_CHECKING = False
if TYPE_CHECKING:
    from digisign_web.scs.service import SigningService

log = logging.getLogger(__name__)

HOSTS = ("127.0.0.1", "::1")
BACKLOG = 4096  # a burst of connections waits in the kernel (up to net.core.somaxconn) instead of being dropped


@dataclass(frozen=True)
class ServeOptions:
    """What ``digisign-web serve`` was asked for (the CLI builds this from its arguments)."""

    state_dir: Path
    config: Path | None = None
    port: int | None = None
    dialog: str = "terminal"  # terminal | web | auto
    virtual_card: str | None = None  # a VIRTUAL_PROFILES name: serve the in-process virtual card
    auto_pin1: str | None = None
    auto_pin2: str | None = None
    auto_cancel: bool = False
    auto_approve_real_cards: bool = False
    exclude_reader: str = ""
    allow_unknown_cards: bool = True
    valid_token_info_label: str = ""
    pkcs11_modules: tuple[str, ...] = ()  # --pkcs11-module (adds to pkcs11Module)
    listen: str | None = None  # --listen: this IP address instead of loopback (D40); see listen_address()


def build_dialog(options: ServeOptions, settings: Settings, base_url: str) -> Dialog:
    if options.dialog == "auto":
        return AutoDialog(options.auto_pin1, options.auto_pin2, cancel=options.auto_cancel,
                          allow_real_cards=options.auto_approve_real_cards)
    if options.dialog == "web":
        return WebDialog(base_url, timeout=settings.dialog_timeout, language=settings.language)
    return TerminalDialog()


class LimitedSite(web.BaseSite):
    """A site on an already bound socket whose connections pass :class:`~.limits.ConnectionLimits` (this
    user only, caps, deadlines) before aiohttp sees them; TLS starts only for admitted connections."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, ssl_context: Any, limits: ConnectionLimits):
        super().__init__(runner, ssl_context=ssl_context, backlog=BACKLOG)
        self._sock, self._limits = sock, limits

    @property
    def name(self) -> str:
        host, port = self._sock.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._ssl_context else 'http'}://{host}:{port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._limits.protocol_factory(server, self._ssl_context), sock=self._sock, backlog=self._backlog)


def listen_address(text: str | None) -> str | None:
    """``--listen``'s ADDR as the IP address to bind (``[::]`` may keep its brackets), or ValueError with
    the one line to show. Host names are refused: what gets exposed must be explicit."""
    if text is None:
        return None
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        raise ValueError(f"--listen {text!r} is not an IP address (e.g. 0.0.0.0 for every IPv4 address, :: for "
                         "every address, or one address of this host)") from None


def _claim_listen(ports: tuple[int, ...], address: str) -> tuple[int, list[socket.socket]] | None:
    """The first port of ``ports`` free on ``address`` (``::`` also takes IPv4 where the system allows)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for port in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                log.warning("port %d is taken on %s, trying the next one", port, address)
                continue
            raise
        return port, [sock]
    return None


def claim_port(ports: tuple[int, ...], listen: str | None = None) -> tuple[int, list[socket.socket]] | None:
    """Bind the first port of ``ports`` that is free on 127.0.0.1 (and on ::1 where there is IPv6), or on
    the one address ``listen`` (serve --listen, D40)."""
    if listen is not None:
        return _claim_listen(ports, listen)
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOSTS[0], port))
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                log.warning("port %d is taken, trying the next one", port)
                continue
            raise
        socks = [sock]
        six = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            six.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            six.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            six.bind((HOSTS[1], port))
            socks.append(six)
        except OSError as exc:
            six.close()
            log.warning("no IPv6 loopback on port %d: %s", port, exc)
        return port, socks
    return None


async def start_sites(runner: web.AppRunner, socks: list[socket.socket], ssl_context: Any,
                      limits: ConnectionLimits) -> None:
    for sock in socks:
        await LimitedSite(runner, sock, ssl_context, limits).start()


async def bind(runner: web.AppRunner, ports: tuple[int, ...], ssl_context: Any,
               limits: ConnectionLimits | None = None, listen: str | None = None) -> int | None:
    """Claim the first free port of ``ports`` and serve ``runner`` there; None when none is free."""
    claimed = claim_port(ports, listen)
    if claimed is None:
        return None
    port, socks = claimed
    await start_sites(runner, socks, ssl_context, limits or ConnectionLimits())
    return port


class ListenLimits(ConnectionLimits):
    """The connection limits under ``--listen`` (D40). A client whose socket this kernel holds (a process
    on this computer or in this container, whatever address it connects from) is checked as always: only
    this uid. A client the kernel does not know (another host, container or network namespace) cannot be
    checked; it is admitted, because the explicit ``--listen`` is the consent to serve it, but marked
    (``unchecked``), so that what only this computer's user may do (the "My card" page) stays refused."""

    def _admits_unknown(self, peername: tuple[Any, ...]) -> bool:
        return not ipaddress.ip_address(str(peername[0]).split("%", 1)[0]).is_loopback


async def _run(options: ServeOptions) -> int:
    try:
        settings = load_settings(options.config)  # logs its own warnings
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.ignored:
        log.info("settings that do not apply here (ignored): %s", ", ".join(settings.ignored))
    if options.dialog == "auto" and options.auto_approve_real_cards:
        log.warning("!!! --auto-approve-real-cards: every request is signed WITHOUT asking anyone, "
                    "with any card, including real ones !!!")
    files = ensure_tls(options.state_dir)
    https_ports = (options.port, *[p for p in settings.https_ports if p != options.port]) if options.port \
        else settings.https_ports
    try:
        claimed = claim_port(https_ports, options.listen)
    except OSError as exc:  # --listen on an address this host does not have, or may not bind
        print(f"error: cannot listen on {options.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if claimed is None:
        print(f"error: none of the ports {https_ports} is free", file=sys.stderr)
        return 2
    port, socks = claimed
    dialog = build_dialog(options, settings, f"https://localhost:{port}")
    # The card layer, the virtual card and the signing service load once the port listens (D69).
    app = build_app(settings, dialog, load=functools.partial(load_service, options, settings, dialog))
    limit_log_repeats()
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    limits = (ListenLimits if options.listen else ConnectionLimits)(max_connections=fd_budget())
    # SIGTERM (systemd's stop, `kill`) ends the server like Ctrl-C does: through the cleanup below, so the card
    # manager stops and the card is released, instead of the process dying where it stands. Set before anything
    # says "listening", so a stop that follows at once is clean too.
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        await runner.setup()
        if not limits.check_peer:
            log.warning("this system cannot tell which local user a connection comes from: other users are not "
                        "refused")
        await start_sites(runner, socks, server_context(files), limits)
        if options.listen:
            shown = f"[{options.listen}]" if ":" in options.listen else options.listen
            print(f"digisign-web listening on https://localhost:{port}/ (on {shown}:{port}, --listen)")
            log.warning("--listen %s: the server is reachable from other hosts and containers on port %d; requests "
                        "must still name Host localhost:%d, and this computer's other users are still refused (D40)",
                        shown, port, port)
        else:
            print(f"digisign-web listening on https://localhost:{port}/ (127.0.0.1 and [::1])")
        app[CORE].begin()  # the card layer and the signing service load now, behind the open port (D69)
        if settings.http_ports:
            http_port = await bind(runner, settings.http_ports, None, limits, options.listen)
            if http_port:
                print(f"plain HTTP (httpPorts) on http://localhost:{http_port}/")
        print(f"local CA certificate (trust it once in your browser): {files.ca_cert}")
        if not await asyncio.to_thread(_ca_trusted, files.ca_cert):
            print("hint: browsers do not trust it yet; run `digisign-web trust install` (see certs/README.md)")
        if options.virtual_card:
            print(f"virtual card {options.virtual_card}: PIN1 1234, PIN2 123456, PUK 12345678")
        print(f"dialog: {options.dialog}", flush=True)
        log.info("listening on port %d", port)
        await stopping.wait()
        log.info("stopping (SIGTERM)")
    finally:
        limits.close()
        await runner.cleanup()
        for sock in socks:
            sock.close()
    return 0


def load_service(options: ServeOptions, settings: Settings, dialog: Dialog) -> SigningService:
    """The signing service over PC/SC readers (or the virtual card) and PKCS#11 modules: run in a worker
    thread once the port listens, so the card layer and the cryptography libraries load after it (D69)."""
    from card.virtual import VirtualCard, VirtualReader
    from digisign_web.scs.service import build_service

    policy = card_policy(settings, exclude_reader=options.exclude_reader,
                         allow_unknown_cards=options.allow_unknown_cards,
                         valid_token_info_label=options.valid_token_info_label,
                         pkcs11_modules=options.pkcs11_modules)
    source = VirtualReader(VirtualCard(options.virtual_card, options.state_dir)) if options.virtual_card else None
    return build_service(settings, dialog, source, policy=policy)


def _ca_trusted(ca_cert: Path) -> bool:
    from digisign_web.tls.trust import is_trusted_anywhere

    return is_trusted_anywhere(ca_cert, Path.home())


def serve(options: ServeOptions) -> int:
    try:
        return asyncio.run(_run(options))
    except KeyboardInterrupt:
        return 0
