"""One card operation and one dialog at a time (D23)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from digisign_web.scs.errors import ScsFailure

log = logging.getLogger(__name__)

class OperationQueue:
    """One card operation and one dialog at a time; waiting requests queue in FIFO order up to a bound.

    asyncio.Lock wakes waiters in arrival order. A waiter whose client went away is cancelled by aiohttp
    (handler cancellation is on) and leaves the queue at once. ``before`` runs first and counts against the
    bound without holding the lock: WebSigner shows its dialog page there, so a page that is never shown
    never holds the card.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = asyncio.Lock()
        self._waiting = 0

    @asynccontextmanager
    async def slot(self, before: Callable[[], Awaitable[None]] | None = None) -> AsyncIterator[None]:
        if self._waiting >= self.limit and (self._lock.locked() or before is not None):
            raise ScsFailure(403, "busy: another signature request is in progress and the queue is full")
        self._waiting += 1
        try:
            if before is not None:
                await before()
            await self._lock.acquire()
        finally:
            self._waiting -= 1
        try:
            yield
        finally:
            self._lock.release()


