"""closeGUIServerWhenLock: the user's session locking (or the machine going to sleep), as logind tells it on the
system D-Bus (D44, D45, F27).

Watched, for the session ``GetSession("auto")`` names (ours, or our user's display session when the server runs
outside any session, as a systemd user service does):

* the session's ``Lock`` signal (``loginctl lock-session``, idle locking through logind);
* its ``LockedHint`` turning true (what a desktop that locks its screen itself, GNOME Shell for one, sets; F27);
* the manager's ``PrepareForSleep(true)``.

Each calls ``on_lock``. Where there is no system bus, no logind or no session, it logs that once at INFO and
does nothing. The client is jeepney, pure Python (D44); the bus address is injectable and defaults to
``$DBUS_SYSTEM_BUS_ADDRESS``, the standard override, else the system bus socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

LOGIN1 = "org.freedesktop.login1"
MANAGER_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
SESSION = "org.freedesktop.login1.Session"
PROPERTIES = "org.freedesktop.DBus.Properties"
SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
TIMEOUT = 5.0  # seconds for connecting and for each call: a bus that does not answer must not hang the server


def system_bus_address() -> str:
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS


def lock_reason(member: str, path: str, body: tuple, session: str) -> str | None:
    """Why this signal means "the user is gone" (None: it does not). Pure, so the rules are tested alone."""
    if member == "Lock" and path == session:
        return "the session was locked"
    if member == "PropertiesChanged" and path == session and len(body) >= 2 and body[0] == SESSION:
        hint = body[1].get("LockedHint") if isinstance(body[1], dict) else None
        if isinstance(hint, tuple) and len(hint) == 2 and hint[1] is True:
            return "the screen was locked"
    if member == "PrepareForSleep" and path == MANAGER_PATH and body[:1] == (True,):
        return "the computer is going to sleep"
    return None


class ScreenLockWatcher:
    """Calls ``on_lock(reason)`` for every lock of our logind session; :meth:`run` until cancelled."""

    def __init__(self, on_lock: Callable[[str], Awaitable[None]], address: str | None = None):
        self.on_lock = on_lock
        self.address = address

    async def run(self) -> None:
        try:
            from jeepney import (
                DBusAddress,
                DBusErrorResponse,
                HeaderFields,
                MatchRule,
                MessageType,
                message_bus,
                new_method_call,
            )
            from jeepney.io.asyncio import Proxy, open_dbus_router
            from jeepney.io.common import RouterClosed
        except ImportError:
            log.info("closeGUIServerWhenLock: jeepney is not installed, so screen locks are not watched")
            return
        address = self.address or system_bus_address()
        async with contextlib.AsyncExitStack() as stack:
            try:
                router = await asyncio.wait_for(stack.enter_async_context(open_dbus_router(address)), TIMEOUT)
                manager = DBusAddress(MANAGER_PATH, LOGIN1, MANAGER)
                reply = await asyncio.wait_for(
                    router.send_and_get_reply(new_method_call(manager, "GetSession", "s", ("auto",))), TIMEOUT)
                if reply.header.message_type is MessageType.error:
                    log.info("closeGUIServerWhenLock: logind knows no session of ours (%s); screen locks are not "
                             "watched", reply.header.fields.get(HeaderFields.error_name, "error"))
                    return
                session = str(reply.body[0])
                # Only logind's own signals count: a signal may also be sent to us directly, past every match rule.
                bus = Proxy(message_bus, router)
                (owner,) = await asyncio.wait_for(bus.GetNameOwner(LOGIN1), TIMEOUT)
                signals: asyncio.Queue = asyncio.Queue(100)
                for interface, member, path in ((SESSION, "Lock", session), (PROPERTIES, "PropertiesChanged", session),
                                                (MANAGER, "PrepareForSleep", MANAGER_PATH)):
                    # Filtered here without the sender (messages carry logind's unique name, checked below); the
                    # bus is asked only for logind's.
                    local = MatchRule(type="signal", interface=interface, member=member, path=path)
                    stack.enter_context(router.filter(local, queue=signals))
                    await asyncio.wait_for(bus.AddMatch(MatchRule(type="signal", sender=LOGIN1, interface=interface,
                                                                  member=member, path=path)), TIMEOUT)
            except (OSError, EOFError, TimeoutError, RuntimeError, ValueError, RouterClosed) as exc:
                # OSError: no socket; EOFError or RouterClosed: closed before an answer; RuntimeError: an address
                # jeepney cannot use; ValueError: jeepney's AuthenticationError (the bus refused us)
                log.info("closeGUIServerWhenLock: no system bus (%s: %s); screen locks are not watched",
                         type(exc).__name__, exc)
                return
            except DBusErrorResponse as exc:  # e.g. no logind on the bus
                log.info("closeGUIServerWhenLock: logind did not answer (%s); screen locks are not watched", exc)
                return
            log.info("closeGUIServerWhenLock: watching logind session %s for screen locks and sleep", session)
            while True:
                message = await signals.get()
                fields = message.header.fields
                if fields.get(HeaderFields.sender) != owner:
                    continue
                reason = lock_reason(str(fields.get(HeaderFields.member, "")), str(fields.get(HeaderFields.path, "")),
                                     tuple(message.body), session)
                if reason is None:
                    continue
                try:
                    await self.on_lock(reason)
                except Exception:  # the watcher outlives one failed reaction
                    log.exception("closeGUIServerWhenLock: reacting to a screen lock failed")
