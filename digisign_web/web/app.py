"""``build_app``: the one composition root. Settings, a reader source and a dialog in; a ready app out.

The server (:mod:`.serve`), the benchmarks and the tests all build the application here, so the wiring
(card manager → card state → signing service → routes) exists once. State lives in ``web.AppKey``s
(:mod:`.keys`); the card manager starts and stops with the app (``cleanup_ctx``).

``serve`` passes ``load``: then the signing service, and with it the card layer and the cryptography
libraries, load in a worker thread once the port listens, and the cards present are read after that (D69).
So nothing here imports them at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from digisign_web.desktop.screenlock import ScreenLockWatcher
from digisign_web.dialog.protocol import Dialog
from digisign_web.settings import Settings
from digisign_web.web import card_page, playground, scs_routes, websigner
from digisign_web.web.dialog import WebDialog
from digisign_web.web.dialog import add_routes as add_dialog_routes
from digisign_web.web.keys import CORE, SETTINGS, Core
from digisign_web.web.middleware import guard, on_prepare
from digisign_web.web.pages import add_static_routes, page, template

TYPE_CHECKING = False
if TYPE_CHECKING:
    from card import CardPolicy, ReaderSource
    from digisign_web.scs.service import SigningService

log = logging.getLogger(__name__)


def build_app(settings: Settings, dialog: Dialog, source: ReaderSource | None = None, *,
              policy: CardPolicy | None = None, load: Callable[[], SigningService] | None = None) -> web.Application:
    """The application: SCS, the playground, WebSigner, the "My card" page, static files, and the web dialog's
    routes when ``dialog`` is a :class:`WebDialog`. The signing service is built here from ``source``
    (default: PC/SC readers) and ``policy``, or, given ``load``, by it in the background once the app serves."""
    core = Core(load or functools.partial(_service, settings, dialog, source, policy))
    if load is None:
        core.build()
    # client_max_size is above our own limit: the SCS route enforces it with a JSON 413.
    app = web.Application(middlewares=[guard], client_max_size=settings.max_request_bytes + 1)
    app[SETTINGS] = settings
    app[CORE] = core
    scs_routes.add_routes(app)
    app.router.add_get("/", playground_page)
    playground.add_routes(app)
    add_static_routes(app)
    if isinstance(dialog, WebDialog):
        add_dialog_routes(app, dialog)
    websigner.add_routes(app)
    card_page.add_routes(app)  # the "My card" page (D48)
    app.on_response_prepare.append(on_prepare)
    app.cleanup_ctx.append(_cards)
    app.cleanup_ctx.append(_screen_lock)
    return app


def _service(settings: Settings, dialog: Dialog, source: ReaderSource | None,
             policy: CardPolicy | None) -> SigningService:
    from digisign_web.scs.service import build_service

    return build_service(settings, dialog, source, policy=policy)


async def _screen_lock(app: web.Application) -> AsyncIterator[None]:
    """closeGUIServerWhenLock (D45): while the app runs, a lock of the user's session cancels the open dialog and
    logs the cards out. Watched in the background: a slow or missing system bus never delays the start."""
    if not app[SETTINGS].close_gui_server_when_lock:
        yield
        return
    core = app[CORE]

    async def locked(reason: str) -> None:
        service = core.loaded
        if service is None:  # still loading: no dialog is open and no card has been used yet
            return
        log.info("%s: cancelling the open dialog and logging the cards out (closeGUIServerWhenLock)", reason)
        await service.screen_locked()

    watcher = asyncio.create_task(ScreenLockWatcher(locked).run())
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _cards(app: web.Application) -> AsyncIterator[None]:
    """Start watching readers with the app and read the cards already present; stop with the app. A service
    built with the app does this before the app serves; one that ``serve`` loads does it in the background,
    so the port answers first (D69) and ``/version`` lists a card once it has been read (D7)."""
    core = app[CORE]

    async def start() -> None:
        service = await core.begun()  # with the app, or once serve listens (or a request needs it)
        service.manager.start()
        present = [reader for reader, atr in service.manager.readers().items() if atr is not None]
        for reader in present:
            await asyncio.to_thread(service.state.refresh, reader)
        log.info("ready: the signing service is loaded and the %d card(s) present have been read", len(present))

    starting = None
    if core.loaded is not None:
        await start()
    else:
        starting = asyncio.create_task(start())
        starting.add_done_callback(_log_failure)
    yield
    if starting is not None and not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
    if core.loaded is not None:
        await asyncio.to_thread(core.loaded.manager.stop)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the signing service could not start", exc_info=task.exception())


async def playground_page(request: web.Request) -> web.Response:
    """The signing playground: the page an integrator opens first."""
    # same-origin, not no-referrer: with no-referrer the WebSigner form's Origin header would be "null"
    # and the post refused as anonymous
    return page("playground", template("playground.html", lang=request.app[SETTINGS].language),
                referrer="same-origin")
