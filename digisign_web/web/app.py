"""``build_app``: the one composition root. Settings, a reader source and a dialog in; a ready app out.

The server (:mod:`.serve`), the benchmarks and the tests all build the application here, so the wiring
(card manager → card state → signing service → routes) exists once. State lives in ``web.AppKey``s
(:mod:`.keys`); the card manager starts and stops with the app (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from card import CardPolicy, ReaderSource
from digisign_web.desktop.screenlock import ScreenLockWatcher
from digisign_web.dialog.protocol import Dialog
from digisign_web.scs.service import build_service
from digisign_web.settings import Settings
from digisign_web.web import card_page, playground, scs_routes, websigner
from digisign_web.web.dialog import WebDialog
from digisign_web.web.dialog import add_routes as add_dialog_routes
from digisign_web.web.keys import MANAGER, SERVICE, SETTINGS, STATE
from digisign_web.web.middleware import guard, on_prepare
from digisign_web.web.pages import add_static_routes, page, template

log = logging.getLogger(__name__)


def build_app(settings: Settings, dialog: Dialog, source: ReaderSource | None = None, *,
              policy: CardPolicy | None = None) -> web.Application:
    """The application: SCS, the playground, WebSigner, static files, and the web dialog's routes when
    ``dialog`` is a :class:`WebDialog`. ``source`` defaults to PC/SC readers."""
    service = build_service(settings, dialog, source, policy=policy)
    manager, state = service.manager, service.state
    # client_max_size is above our own limit: the SCS route enforces it with a JSON 413.
    app = web.Application(middlewares=[guard], client_max_size=settings.max_request_bytes + 1)
    app[SETTINGS] = settings
    app[MANAGER] = manager
    app[STATE] = state
    app[SERVICE] = service
    scs_routes.add_routes(app)
    app.router.add_get("/", playground_page)
    playground.add_routes(app)
    add_static_routes(app)
    if isinstance(dialog, WebDialog):
        add_dialog_routes(app, dialog)
    websigner.add_routes(app, service)
    card_page.add_routes(app)  # the "My card" page (D48)
    app.on_response_prepare.append(on_prepare)
    app.cleanup_ctx.append(_cards)
    app.cleanup_ctx.append(_screen_lock)
    return app


async def _screen_lock(app: web.Application) -> AsyncIterator[None]:
    """closeGUIServerWhenLock (D45): while the app runs, a lock of the user's session cancels the open dialog and
    logs the cards out. Watched in the background: a slow or missing system bus never delays the start."""
    if not app[SETTINGS].close_gui_server_when_lock:
        yield
        return
    service = app[SERVICE]

    async def locked(reason: str) -> None:
        log.info("%s: cancelling the open dialog and logging the cards out (closeGUIServerWhenLock)", reason)
        await service.screen_locked()

    watcher = asyncio.create_task(ScreenLockWatcher(locked).run())
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


async def _cards(app: web.Application) -> AsyncIterator[None]:
    """Start watching readers with the app; read the cards already present; stop with the app."""
    manager, state = app[MANAGER], app[STATE]
    manager.start()
    for reader, atr in manager.readers().items():
        if atr is not None:
            await asyncio.to_thread(state.refresh, reader)
    yield
    await asyncio.to_thread(manager.stop)


async def playground_page(request: web.Request) -> web.Response:
    """The signing playground: the page an integrator opens first."""
    # same-origin, not no-referrer: with no-referrer the WebSigner form's Origin header would be "null"
    # and the post refused as anonymous
    return page("playground", template("playground.html", lang=request.app[SETTINGS].language),
                referrer="same-origin")
