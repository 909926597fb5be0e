"""The application's state, as typed ``web.AppKey``s (aiohttp's way; no module globals).

The signing service (and the card manager and card state it owns) sits in a :class:`Core`: built with the
app for tests and the benchmarks, or by ``serve`` in a worker thread once its port listens (D69). Importing
this module loads neither the card layer nor any cryptography.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from aiohttp import web

from digisign_web.settings import Settings

TYPE_CHECKING = False
if TYPE_CHECKING:
    from digisign_web.scs.service import SigningService


class Core:
    """The signing service, built once: now (:meth:`build`) or on first need, off the event loop
    (:meth:`service`)."""

    def __init__(self, build: Callable[[], SigningService]):
        self._build = build
        self._lock = threading.Lock()
        self._service: SigningService | None = None
        self._task: asyncio.Future[SigningService] | None = None
        self._begun = asyncio.Event()

    @property
    def loaded(self) -> SigningService | None:
        """The service if it has been built (None while ``serve`` is still loading it)."""
        return self._service

    def build(self) -> SigningService:
        with self._lock:
            if self._service is None:
                self._service = self._build()
            return self._service

    def begin(self) -> None:
        """Start building the service in a worker thread, once (``serve`` calls this when its port listens):
        the card layer's imports and the virtual card's keys never block the event loop."""
        if self._task is None:
            self._task = asyncio.ensure_future(asyncio.to_thread(self.build))
            self._begun.set()

    async def service(self) -> SigningService:
        """The service, built now if nobody has begun it yet, and waited for."""
        if self._service is not None:
            return self._service
        self.begin()
        assert self._task is not None
        return await asyncio.shield(self._task)

    async def begun(self) -> SigningService:
        """The service once someone has begun building it (a request, or ``serve`` after listening)."""
        if self._service is not None:
            return self._service
        await self._begun.wait()
        assert self._task is not None
        return await asyncio.shield(self._task)


SETTINGS = web.AppKey("settings", Settings)
CORE = web.AppKey("core", Core)
