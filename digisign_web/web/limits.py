"""Limits that keep the local server answering: who may connect, how many at once, how long a request
may dawdle, how much a body may hold, and how often one log line may repeat.

aiohttp has no request-head timeout and no connection cap. A client that opens many connections and
sends its requests a byte at a time (slowloris) would hold the server's file descriptors until none are
left and ``/version`` goes unanswered; the attack also grew the log by 92 MB in 40 s. So every accepted
socket passes through :class:`ConnectionLimits` before aiohttp sees it:

* a client socket owned by another local user is closed at once, before TLS (:mod:`.peer`);
* at most ``MAX_CONNECTIONS`` connections (fewer if the open-file limit cannot be raised enough), and
  ``PEER_SHARE`` of them from one client address. When a new connection would exceed a cap, the
  incomplete connection (request head or body still arriving) whose client has been quiet longest is
  closed to make room: a slow client loses its own connections, and a fresh request still gets in.
  Connections whose request is complete and being answered (e.g. waiting for the PIN) are never evicted;
* the TLS handshake and the complete request head must arrive within ``HEAD_TIMEOUT`` of the accept
  (or of the previous response on a kept-alive connection);
* a request body must keep arriving (``BODY_IDLE_TIMEOUT``) and be complete within ``BODY_TIMEOUT``.

TLS is started here rather than by the listening socket, so that refusals and caps apply before a
handshake is spent on a connection, and with a smaller read buffer than asyncio's (see :class:`_TLS`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import re
import ssl
import sys
import time
from asyncio import sslproto
from collections.abc import Callable
from typing import Any

from aiohttp import web

from digisign_web.web import peer

log = logging.getLogger(__name__)

HEAD_TIMEOUT = 10.0  # accept -> TLS handshake -> complete request head
BODY_IDLE_TIMEOUT = 10.0  # no body bytes for this long (while the server is reading)
BODY_TIMEOUT = 120.0  # a whole request body (1 GiB, the largest maxRequestBytes, at 9 MB/s)
MAX_CONNECTIONS = 2048  # at most; fewer when the open-file limit is lower (see fd_budget)
PEER_SHARE = 0.75  # of the connections one client address may hold: the rest stay for the others
FD_RESERVE = 128  # descriptors kept for everything but connections (card, logs, files)
SWEEP_INTERVAL = 1.0
EARLY_DATA_LIMIT = 1 << 16  # bytes buffered between the TLS handshake and aiohttp taking over


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"the request is larger than {limit} bytes")
        self.limit = limit


async def read_limited(request: web.BaseRequest, limit: int) -> bytearray:
    """The request body, or BodyTooLarge as soon as more than ``limit`` bytes have arrived. The bytes read
    are counted, not the Content-Length alone, which a chunked upload does not send. A bytearray, not
    bytes: converting would briefly double the largest buffer of the request."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 20):
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(limit)
    return body


class _TLS(sslproto.SSLProtocol):
    """asyncio's TLS protocol with a 32 KiB read buffer instead of 256 KiB. asyncio allocates and
    zero-fills that buffer for every connection: 1000 held slow connections took the server to 390 MB
    (measured), which glibc kept after they closed; with 32 KiB, 166 MB."""

    max_size = 32 * 1024


class _Connection(asyncio.Protocol):
    """One accepted socket: checked and counted by the limits, then (after TLS) handed to aiohttp."""

    def __init__(self, limits: ConnectionLimits, make_handler: Callable[[], asyncio.Protocol],
                 ssl_context: ssl.SSLContext | None):
        self.limits = limits
        self.make_handler = make_handler
        self.ssl_context = ssl_context
        self.loop = asyncio.get_running_loop()
        self.raw: asyncio.Transport | None = None
        self.transport: asyncio.Transport | None = None  # what aiohttp writes to (TLS or raw)
        self.handler: asyncio.Protocol | None = None
        self.peer = ""
        self.unchecked = False  # a peer this kernel does not know, admitted under --listen (D40): user unknown
        self.request: web.BaseRequest | None = None  # the request being answered, once its head is in
        self.phase_start = self.last_data = self.loop.time()
        self.early = bytearray()
        self.early_eof = False
        self.tls_task: asyncio.Task[None] | None = None

    # -- asyncio ---------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.raw = transport
        if not self.limits.admit(self):
            transport.abort()
            return
        if self.ssl_context is None:
            self._attach(transport)
        else:
            transport.pause_reading()  # start_tls takes over the bytes from here
            self.tls_task = self.loop.create_task(self._start_tls())

    async def _start_tls(self) -> None:
        assert self.raw is not None and self.ssl_context is not None
        try:
            tls = await self._handshake(self.raw, self.ssl_context)
        except Exception as exc:  # a failed or abandoned handshake: nothing to answer
            log.debug("TLS handshake with %s failed: %s", self.peer, exc)
            self.raw.abort()
            self.limits.release(self)
            return
        if tls is None or tls.is_closing():  # None: the connection was lost as the handshake ended
            self.limits.release(self)
            return
        self._attach(tls)

    async def _handshake(self, raw: asyncio.Transport, context: ssl.SSLContext) -> asyncio.Transport | None:
        """What ``loop.start_tls`` does, with the smaller buffer of :class:`_TLS`."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        try:
            tls = _TLS(self.loop, self, context, waiter, server_side=True, call_connection_made=False,
                       ssl_handshake_timeout=HEAD_TIMEOUT)
        except TypeError:  # asyncio's TLS protocol changed: the public way, with asyncio's larger buffer
            return await self.loop.start_tls(raw, self, context, server_side=True, ssl_handshake_timeout=HEAD_TIMEOUT)
        raw.set_protocol(tls)
        tls.connection_made(raw)
        raw.resume_reading()
        await waiter
        return tls._app_transport

    def _attach(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.last_data = self.loop.time()  # quiet from here on is the client's doing
        self.handler = self.make_handler()
        self.handler.connection_made(transport)
        if self.early:
            data, self.early = bytes(self.early), bytearray()
            self.handler.data_received(data)  # type: ignore[attr-defined]
        if self.early_eof:
            self.handler.eof_received()  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.last_data = self.loop.time()
        if self.handler is not None:
            self.handler.data_received(data)  # type: ignore[attr-defined]
        elif len(self.early) + len(data) <= EARLY_DATA_LIMIT:
            self.early += data  # the request right behind the handshake, before _attach ran
        else:
            self.drop("sent too much before its request could be read")

    def eof_received(self) -> bool | None:
        if self.handler is None:
            self.early_eof = True
            return None
        return self.handler.eof_received()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.limits.release(self)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()

    # -- state -------------------------------------------------------------------------------------
    def request_started(self, request: web.BaseRequest) -> None:
        self.request = request
        self.phase_start = self.last_data = self.loop.time()

    def request_done(self) -> None:
        self.request = None
        self.phase_start = self.loop.time()  # the next request head (or a close) is due within HEAD_TIMEOUT

    def incomplete(self) -> bool:
        """Still waiting for its request (TLS, head or body): what a slow client holds."""
        return self.request is None or not self.request.content.is_eof()

    def drop(self, why: str) -> None:
        log.info("closed a connection from %s: %s", self.peer, why)
        if self.raw is not None:
            self.raw.abort()
        self.limits.release(self)


class ConnectionLimits:
    """Shared by every listening socket of the server: the registry of open connections, the caps, the
    deadlines, and the check that the client is this user."""

    def __init__(self, check_peer: bool = True, max_connections: int = MAX_CONNECTIONS):
        self.check_peer = check_peer and sys.platform == "linux"
        self.max_connections = max_connections
        self.max_per_peer = max(1, int(max_connections * PEER_SHARE))
        self.connections: dict[_Connection, None] = {}  # in accept order
        self.per_peer: collections.Counter[str] = collections.Counter()
        self._uid = os.geteuid() if hasattr(os, "geteuid") else -1
        self._sweeper: asyncio.TimerHandle | None = None

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol],
                         ssl_context: ssl.SSLContext | None) -> Callable[[], asyncio.Protocol]:
        """For ``loop.create_server``: ``make_handler`` is aiohttp's ``web.Server`` (one handler per
        connection); TLS, when given, is started after the connection is admitted."""
        return lambda: _Connection(self, make_handler, ssl_context)

    def admit(self, conn: _Connection) -> bool:
        assert conn.raw is not None
        peername, sockname = conn.raw.get_extra_info("peername"), conn.raw.get_extra_info("sockname")
        conn.peer = str(peername[0]) if isinstance(peername, tuple) else "?"
        if self.check_peer:
            same = self._same_user(peername, sockname)
            if same is False:
                return False
            conn.unchecked = same is None
        self.connections[conn] = None
        self.per_peer[conn.peer] += 1
        if self.per_peer[conn.peer] > self.max_per_peer and not self._evict(conn, conn.peer):
            self.release(conn)
            log.warning("refused a connection from %s: %d connections from there are all busy", conn.peer,
                        self.max_per_peer)
            return False
        if len(self.connections) > self.max_connections and not self._evict(conn, None):
            self.release(conn)
            log.warning("refused a connection from %s: %d connections are all busy", conn.peer, self.max_connections)
            return False
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(SWEEP_INTERVAL, self._sweep)
        return True

    def _same_user(self, peername: Any, sockname: Any) -> bool | None:
        """True: this uid. False: refused (another user, or no way to tell). None: a peer this kernel holds no
        socket for, which only :meth:`_admits_unknown` lets in, unchecked."""
        if not (isinstance(peername, tuple) and isinstance(sockname, tuple)):
            return False
        try:
            uid = peer.peer_uid((str(peername[0]), int(peername[1])), (str(sockname[0]), int(sockname[1])))
        except peer.LookupUnavailable as exc:
            log.warning("refused a connection from %s: cannot tell which local user it is (%s)", peername[0], exc)
            return False
        if uid == self._uid:
            return True
        if uid is None and self._admits_unknown(peername):
            log.debug("admitted %s: not a socket of this system (--listen)", peername[0])
            return None
        log.warning("refused a connection from another local user (uid %s): only uid %d may use this server",
                    "unknown" if uid is None else uid, self._uid)
        return False

    def _admits_unknown(self, peername: tuple[Any, ...]) -> bool:
        """Whether a peer with no socket in this kernel may come in unchecked: never, but under --listen."""
        return False

    def _evict(self, newcomer: _Connection, peer_key: str | None) -> bool:
        """Close the incomplete connection (of ``peer_key``, or any) whose client has been quiet longest.
        Connections still in their TLS handshake go last: they may be waiting for us, not we for them."""
        candidates = [c for c in self.connections if c is not newcomer and c.incomplete()
                      and (peer_key is None or c.peer == peer_key)]
        if not candidates:
            return False
        slowest = min(candidates, key=lambda c: (c.transport is None, c.last_data))
        slowest.drop("too many connections; this one was the slowest")
        return True

    def release(self, conn: _Connection) -> None:
        if self.connections.pop(conn, False) is None:
            self.per_peer[conn.peer] -= 1
            if self.per_peer[conn.peer] <= 0:
                del self.per_peer[conn.peer]

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in list(self.connections):
            if conn.request is None:
                if now - conn.phase_start > HEAD_TIMEOUT:
                    conn.drop(f"no complete request within {HEAD_TIMEOUT:.0f} s")
            elif not conn.request.content.is_eof():
                if conn.transport is not None and not conn.transport.is_reading():
                    conn.last_data = now  # the server is not reading: the client is not to blame
                elif now - conn.last_data > BODY_IDLE_TIMEOUT:
                    conn.drop(f"the request body stalled for {BODY_IDLE_TIMEOUT:.0f} s")
                elif now - conn.phase_start > BODY_TIMEOUT:
                    conn.drop(f"the request body took longer than {BODY_TIMEOUT:.0f} s")
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def fd_budget(wanted: int = MAX_CONNECTIONS + FD_RESERVE) -> int:
    """How many connections fit in the open-file limit, after raising its soft value toward the hard one
    (desktop sessions start at 1024, where 1000 slow connections would leave none for the browser)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return MAX_CONNECTIONS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.info("could not raise the open-file limit from %d: %s", soft, exc)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - FD_RESERVE))


def connection_of(request: web.BaseRequest) -> _Connection | None:
    """The limits' record of the connection a request came on (None in in-memory test servers)."""
    transport = request.transport
    protocol = transport.get_protocol() if transport is not None else None
    return protocol if isinstance(protocol, _Connection) else None


class RepeatLimit(logging.Filter):
    """Let each kind of log line (logger, level and message template, numbers ignored) through at most
    ``burst`` times per ``window`` seconds; the next one let through says how many were suppressed. An attack can then
    neither fill the disk nor bury the lines that matter."""

    def __init__(self, burst: int = 10, window: float = 10.0, kinds: int = 1000):
        super().__init__()
        self.burst, self.window, self.kinds = burst, window, kinds
        self._seen: collections.OrderedDict[tuple[str, int, str], list[float | int]] = collections.OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, re.sub(r"\d+", "#", str(record.msg)[:120]))
        now = time.monotonic()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window:
            suppressed = int(state[2]) if state is not None else 0
            self._seen[key] = [now, 1, 0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.kinds:
                self._seen.popitem(last=False)
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} more like this in the last {self.window:g} s suppressed]"
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


def limit_log_repeats() -> None:
    """Install :class:`RepeatLimit` on the root logger's handlers (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(RepeatLimit())
