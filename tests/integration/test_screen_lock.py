"""closeGUIServerWhenLock (issue 13, item 7): a lock of the user's session cancels the open dialog and logs the
card out, so whoever comes back to the computer needs PIN1 again (D45).

logind cannot run here (PID 1 is not systemd), so each test runs a private D-Bus daemon, points the server at
it through DBUS_SYSTEM_BUS_ADDRESS (the standard override of the system bus), and has :class:`LogindStandIn`
own ``org.freedesktop.login1`` there and emit the signals logind emits. The server is a real ``serve`` process
with the web dialog, answered over HTTP as its page would.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import queue
import re
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from jeepney import DBusAddress, MessageType, message_bus, new_error, new_method_return, new_signal
from jeepney.io.blocking import open_dbus_connection

from card.virtual import VirtualCard, VirtualReader
from digisign_web.desktop import screenlock
from digisign_web.dialog.protocol import Dialog, DialogAnswer, DialogRequest
from digisign_web.scs.errors import ScsFailure
from digisign_web.scs.request import parse_request
from digisign_web.scs.service import build_service
from digisign_web.settings import Settings
from tests.support.servers import RunningServer, WebServer, start_web_server, stop

POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)
SITE = "https://a.example"
SESSION_PATH = "/org/freedesktop/login1/session/_32"  # session "2", as logind encodes it
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "none"}
WATCHING = "watching logind session"


class LogindStandIn:
    """A STAND-IN for systemd-logind, which cannot run here: owns org.freedesktop.login1 on the test's private
    bus, answers ``GetSession`` with one session, refuses every other call, and emits that session's signals
    (and the manager's) when told to."""

    def __init__(self, address: str):
        self.connection = open_dbus_connection(bus=address)
        reply = self.connection.send_and_get_reply(message_bus.RequestName(screenlock.LOGIN1), timeout=5)
        assert reply.body == (1,), reply.body  # primary owner
        self.asked: list[tuple[str, tuple]] = []
        self._emit: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            while not self._emit.empty():
                self.connection.send(self._emit.get())
            try:
                message = self.connection.receive(timeout=0.05)
            except TimeoutError:
                continue
            if message.header.message_type is not MessageType.method_call:
                continue
            member = message.header.fields.get(3)  # HeaderFields.member
            self.asked.append((member, message.body))
            if member == "GetSession":
                self.connection.send(new_method_return(message, "o", (SESSION_PATH,)))
            else:
                self.connection.send(new_error(message, "org.freedesktop.DBus.Error.UnknownMethod"))

    def lock(self) -> None:
        self._emit.put(new_signal(DBusAddress(SESSION_PATH, interface=screenlock.SESSION), "Lock"))

    def locked_hint(self, value: bool) -> None:
        self._emit.put(new_signal(DBusAddress(SESSION_PATH, interface=screenlock.PROPERTIES), "PropertiesChanged",
                                  "sa{sv}as", (screenlock.SESSION, {"LockedHint": ("b", value)}, [])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.connection.close()


@pytest.fixture
def system_bus(tmp_path: Path) -> Iterator[str]:
    """A private dbus-daemon standing in for the system bus; its address."""
    daemon = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1",
                               f"--address=unix:path={tmp_path / 'bus'}"], stdout=subprocess.PIPE, text=True)
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        daemon.terminate()
        daemon.wait(10)


@pytest.fixture
def logind(system_bus: str) -> Iterator[LogindStandIn]:
    stand_in = LogindStandIn(system_bus)
    yield stand_in
    stand_in.close()


@pytest.fixture
def served_on_bus(system_bus: str, tmp_path: Path, monkeypatch) -> Iterator:
    """Factory: a web-dialog server whose system bus is the private one."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus)
    servers: list[WebServer] = []

    def start(*args: str) -> WebServer:
        server = start_web_server(tmp_path / f"s{len(servers)}", *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop(server.server)


def wait_for_log(server: WebServer, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.server.log(wait=0.1)
        if text in log:
            return log
    raise AssertionError(f"the server never logged {text!r}:\n{server.server.log(wait=0)}")


def sign_later(server: WebServer) -> concurrent.futures.Future:
    """An authentication signature (PIN1) for SITE, as its login page asks."""
    content = f"{SITE};{'n' * 64}".encode()
    body = {"content": base64.b64encode(content).decode(), "selector": {"keyusages": ["digitalsignature"]}}
    return POOL.submit(lambda: asyncio.run(server.server.post(body, origin=SITE)))


class DialogPage:
    """The dialog page's requests, made over HTTP as its script makes them (claim, details, answer)."""

    def __init__(self, server: WebServer):
        launched = server.next_dialog_url()
        if launched.startswith("file:"):  # the launcher's bootstrap page (D37) forwards to the dialog
            text = Path(urllib.parse.urlsplit(launched).path).read_text()
            launched = re.search(r'url=(https://[^"]+)"', text).group(1)
        parts = urllib.parse.urlsplit(launched)
        self.url, self.key, self.server = f"{server.base}{parts.path}", parts.fragment, server

    async def __aenter__(self) -> DialogPage:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        ssl = self.server.server.ssl()
        async with self.session.get(self.url, ssl=ssl, headers=NAVIGATE) as response:
            assert response.status == 200
            csrf = re.search(r'name="csrf-token" content="([^"]+)"', await response.text()).group(1)
        self.headers = {"X-CSRF-Token": csrf, "Origin": self.server.base, "Sec-Fetch-Site": "same-origin"}
        async with self.session.post(f"{self.url}/claim", json={"key": self.key}, ssl=ssl,
                                     headers=self.headers) as response:
            assert response.status == 200, await response.text()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def details(self) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/request", ssl=self.server.server.ssl(),
                                    headers=self.headers) as response:
            assert response.status == 200
            return await response.json()

    async def answer(self, pin: str | None) -> dict[str, Any]:
        async with self.session.post(f"{self.url}/answer", json={"choice": 0, "pin": pin},
                                     ssl=self.server.server.ssl(), headers=self.headers) as response:
            assert response.status == 200
            return await response.json()


async def sign_in(server: WebServer) -> None:
    """One signature with PIN1 typed: afterwards the card holds PIN1 for SITE."""
    pending = sign_later(server)
    async with DialogPage(server) as page:
        assert (await page.details())["choices"][0]["needs_pin"] is True
        assert (await page.answer("1234"))["result"] == "signed"
    assert pending.result(timeout=30)["status"] == "ok"


async def test_a_screen_lock_cancels_the_dialog_and_logs_the_card_out(served_on_bus, logind: LogindStandIn) -> None:
    server = served_on_bus()
    wait_for_log(server, WATCHING)
    assert ("GetSession", ("auto",)) in logind.asked  # ours, or our user's display session (F27)
    await sign_in(server)

    pending = sign_later(server)
    async with DialogPage(server) as page:
        assert (await page.details())["choices"][0]["needs_pin"] is False  # PIN1 still verified for SITE
        logind.lock()
        answer = pending.result(timeout=20)
        assert answer["status"] == "failed" and answer["reasonCode"] == 401, answer
        assert "screen was locked" in answer["reasonText"]
        final = (await page.details())["final"]
        assert final["result"] == "cancelled", final  # the page says so too

    # Back at the computer: the card forgot PIN1, so the next signature asks for it again.
    pending = sign_later(server)
    async with DialogPage(server) as page:
        assert (await page.details())["choices"][0]["needs_pin"] is True
        assert (await page.answer("1234"))["result"] == "signed"
    assert pending.result(timeout=30)["status"] == "ok"
    assert "the session was locked: cancelling the open dialog" in server.server.log(wait=0)


async def test_the_desktops_locked_hint_counts_too(served_on_bus, logind: LogindStandIn) -> None:
    """A desktop that locks its screen itself (GNOME Shell) sets LockedHint; logind says so in PropertiesChanged."""
    server = served_on_bus()
    wait_for_log(server, WATCHING)
    await sign_in(server)
    logind.locked_hint(False)  # an unlock is nothing
    wait_for_log(server, WATCHING)
    logind.locked_hint(True)
    wait_for_log(server, "the screen was locked: cancelling")
    pending = sign_later(server)
    async with DialogPage(server) as page:
        assert (await page.details())["choices"][0]["needs_pin"] is True
        await page.answer("1234")
    assert pending.result(timeout=30)["status"] == "ok"


async def test_with_close_gui_server_when_lock_0_nothing_happens(served_on_bus, logind: LogindStandIn,
                                                                 tmp_path: Path) -> None:
    conf = tmp_path / "DigiSign.conf"
    conf.write_text("closeGUIServerWhenLock=0\n")
    server = served_on_bus("--config", str(conf))
    await sign_in(server)
    assert logind.asked == []  # it never even looked for logind

    pending = sign_later(server)
    async with DialogPage(server) as page:
        assert (await page.details())["choices"][0]["needs_pin"] is False
        logind.lock()
        await asyncio.sleep(1.5)
        assert not pending.done()  # the dialog stays open
        assert (await page.answer(None))["result"] == "signed"  # and PIN1 is still verified
    assert pending.result(timeout=30)["status"] == "ok"
    assert WATCHING not in server.server.log(wait=0)


def wait_for_output(server: RunningServer, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log(wait=0.1)
        if text in log:
            return log
    raise AssertionError(f"the server never logged {text!r}:\n{server.log(wait=0)}")


def test_no_logind_is_said_once_and_changes_nothing(served, system_bus: str, monkeypatch) -> None:
    """A system bus without logind (and, below, no bus at all): one INFO line, and the server serves."""
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", system_bus)
    log = wait_for_output(served("--dialog", "auto"), "screen locks are not watched")
    assert log.count("closeGUIServerWhenLock:") == 1 and "ServiceUnknown" in log, log
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/bus")
    log = wait_for_output(served("--dialog", "auto"), "screen locks are not watched")
    assert log.count("closeGUIServerWhenLock:") == 1 and "no system bus" in log, log


class Person(Dialog):
    """A test double for the person at the dialog: types PIN1 when asked for it while ``typing``, otherwise
    leaves the question open (the dialog stays on screen) until it is cancelled."""

    def __init__(self) -> None:
        self.typing = True
        self.asked: list[bool] = []  # needs_pin of each question
        self.open = asyncio.Event()
        self.finished: list[tuple[str, str]] = []

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        self.asked.append(request.choices[0].needs_pin)
        if self.typing:
            return DialogAnswer(0, "1234" if request.choices[0].needs_pin else None)
        self.open.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def finish(self, request: DialogRequest, outcome: str, text: str) -> None:
        self.finished.append((outcome, text))


async def test_screen_locked_in_the_service(state_dir: Path) -> None:
    """SigningService.screen_locked in process: the open question ends as a lock-cancel (not the page's cancel),
    the card forgets PIN1 (VERIFY again next time), and a client that goes away still cancels the request."""
    card = VirtualCard("fineid-v4", state_dir)
    person = Person()
    service = build_service(Settings(), person, VirtualReader(card))
    service.manager.start()
    request = parse_request({"content": base64.b64encode(f"{SITE};{'n' * 64}".encode()).decode(),
                             "selector": {"keyusages": ["digitalsignature"]}})
    try:
        assert (await service.sign(request, SITE))["status"] == "ok"
        person.typing = False
        pending = asyncio.create_task(service.sign(request, SITE))
        await asyncio.wait_for(person.open.wait(), 10)
        await service.screen_locked()
        with pytest.raises(ScsFailure) as failure:
            await asyncio.wait_for(pending, 10)
        assert failure.value.code == 401 and "screen was locked" in failure.value.text
        assert person.finished[-1] == ("cancelled", "cancelled: the screen was locked")
        assert service.guard.blocked_for(SITE) == 0

        person.typing = True
        verifies = card.stats.by_command["VERIFY"]
        assert (await service.sign(request, SITE))["status"] == "ok"
        assert person.asked == [True, False, True]  # PIN1 typed, reused, then asked again after the lock
        assert card.stats.by_command["VERIFY"] == verifies + 1

        person.typing, person.open = False, asyncio.Event()
        gone = asyncio.create_task(service.sign(request, SITE))
        await asyncio.wait_for(person.open.wait(), 10)
        gone.cancel()  # the page went away: that is no screen lock
        with pytest.raises(asyncio.CancelledError):
            await gone
    finally:
        await asyncio.to_thread(service.manager.stop)


@pytest.mark.parametrize(("member", "path", "body", "expected"), [
    ("Lock", SESSION_PATH, (), "the session was locked"),
    ("Lock", "/org/freedesktop/login1/session/_33", (), None),  # another session
    ("Unlock", SESSION_PATH, (), None),
    ("PropertiesChanged", SESSION_PATH, (screenlock.SESSION, {"LockedHint": ("b", True)}, []), "the screen was locked"),
    ("PropertiesChanged", SESSION_PATH, (screenlock.SESSION, {"LockedHint": ("b", False)}, []), None),
    ("PropertiesChanged", SESSION_PATH, (screenlock.SESSION, {"IdleHint": ("b", True)}, []), None),
    ("PrepareForSleep", screenlock.MANAGER_PATH, (True,), "the computer is going to sleep"),
    ("PrepareForSleep", screenlock.MANAGER_PATH, (False,), None),  # waking up
])
def test_lock_reasons(member: str, path: str, body: tuple, expected: str | None) -> None:
    assert screenlock.lock_reason(member, path, body, SESSION_PATH) == expected


@pytest.mark.parametrize("answer", [b"REJECTED EXTERNAL\r\n", b"OK 0123456789abcdef0123456789abcdef\r\n"])
async def test_a_bus_that_refuses_or_hangs_up_is_said_once(tmp_path: Path, answer: bytes, caplog) -> None:
    """A socket that is not a working system bus: it refuses jeepney's authentication (AuthenticationError,
    a ValueError), or accepts it and hangs up before any reply (RouterClosed). The watcher says so in one INFO
    line and returns; nothing escapes into the app's cleanup."""
    path = tmp_path / "bus"

    async def fake_bus(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n")  # the NUL byte and AUTH EXTERNAL
        writer.write(answer)
        await writer.drain()
        if answer.startswith(b"OK"):
            await reader.readuntil(b"\r\n")  # BEGIN (and perhaps NEGOTIATE_UNIX_FD first)
        writer.close()

    server = await asyncio.start_unix_server(fake_bus, path=str(path))
    caplog.set_level("INFO", logger=screenlock.__name__)
    async with server:
        called: list[str] = []

        async def locked(reason: str) -> None:
            called.append(reason)

        await asyncio.wait_for(screenlock.ScreenLockWatcher(locked, address=f"unix:path={path}").run(), 20)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("closeGUIServerWhenLock:")]
    assert len(lines) == 1 and "screen locks are not watched" in lines[0], lines
    assert called == []
