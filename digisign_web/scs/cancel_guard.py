"""The cancel guard: an origin whose requests keep being cancelled or left unanswered is refused for a while."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class CancelGuard:
    """Spam defence: after `limit` cancels from one origin within `window` seconds, refuse it for `block` seconds.

    A page that re-sends a request every time the user cancels would otherwise pin the dialog on screen. A
    request that ends unanswered counts the same: its dialog was never shown (a hidden or tiny window, a page
    that went away), the user let it time out, or its client left while it held the card.
    """

    _SWEEP_AT = 1024  # origins tracked before stale entries are dropped

    def __init__(
        self,
        limit: int = 3,
        window: float = 60.0,
        block: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window <= 0 or block < 0:
            raise ValueError("CancelGuard needs limit >= 1, window > 0 and block >= 0")
        self.limit = limit
        self.window = window
        self.block = block
        self._clock = clock
        self._cancels: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def _prune(self, origin: str, now: float) -> deque[float]:
        cancels = self._cancels.setdefault(origin, deque())
        while cancels and now - cancels[0] >= self.window:
            cancels.popleft()
        return cancels

    def _sweep(self, now: float) -> None:
        for origin in [o for o, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[origin]
        for origin in list(self._cancels):
            if not self._prune(origin, now):
                del self._cancels[origin]

    def record_cancel(self, origin: str) -> None:
        """Count a cancelled (or unanswered) request; the `limit`-th within `window` seconds starts a block."""
        with self._lock:
            now = self._clock()
            if len(self._cancels) + len(self._blocked_until) > self._SWEEP_AT:
                self._sweep(now)
            if self._blocked_until.get(origin, now) > now:
                return  # already blocked: the block is not extended
            cancels = self._prune(origin, now)
            cancels.append(now)
            if len(cancels) >= self.limit:
                self._blocked_until[origin] = now + self.block
                del self._cancels[origin]
                log.warning("%d cancelled requests from %r within %.0f s: refusing it for %.0f s",
                            self.limit, origin, self.window, self.block)

    def blocked_for(self, origin: str) -> float:
        """Seconds left of the origin's block (0.0 if not blocked)."""
        with self._lock:
            until = self._blocked_until.get(origin)
            if until is None:
                return 0.0
            left = until - self._clock()
            if left <= 0:
                del self._blocked_until[origin]
                return 0.0
            return left

    def record_success(self, origin: str) -> None:
        """A completed signature clears the origin's cancel history (a running block stays)."""
        with self._lock:
            self._cancels.pop(origin, None)
