"""The web dialog: the PIN dialog as a page of this local server, opened in the user's browser.

Why a page: the user is already in a browser, and a page can show the origin, the info text, the
certificates and the PIN rules clearly, in the user's language.

Who may answer it. The dialog's address has two parts, ``/dialog/<id>#<key>``: the id names the dialog, and
the key (256 random bits) is what lets a browser take it. The key travels only in the URL fragment, so it is
never in a request line, a log, a ``Referer`` or a ``Location`` seen by anyone but the tab that follows it.

* The SCS dialog is opened by a launcher (``webbrowser``: ``xdg-open``, the browser's own command). Any
  local account can read a launcher's command line in ``/proc/<pid>/cmdline``, so the launcher is never
  given the dialog's address: it gets ``file://…/<random>.html``, a bootstrap page written 0600 into a
  private 0700 directory (``$XDG_RUNTIME_DIR``, else a ``mkdtemp`` directory). Its name holds neither id nor
  key; its content, which only our own account can read, sends the browser on to ``/dialog/<id>#<key>``.
  Another account that reads the command line learns a path it cannot open. (The server also refuses TCP
  peers of other uids; this defence holds without that.) A confined default browser (snap, flatpak) cannot
  open files in our private directory, so it is handed ``/dialog/<id>#<key>`` itself: there the peer-uid
  refusal is what keeps other accounts out (:func:`default_browser_is_confined`).
* The WebSigner dialog reaches the requesting tab as the ``303`` answer to that tab's own form post: no
  launcher is involved, and the fragment rides along the redirect.

How a browser takes it (binding). ``GET /dialog/<id>`` serves the page only to a top-level document
navigation (``Sec-Fetch-Mode: navigate`` and ``Sec-Fetch-Dest: document`` where the browser sends fetch
metadata; a client that sends none, such as an old browser, is served as before), and binds nothing. The
page's script reads the key from the fragment, removes it from the address bar, and claims the dialog
(``POST /dialog/<id>/claim`` with the key and the page's CSRF token) only once the page is visible and at
least ``MIN_VIEW`` CSS pixels large, so an ``<img>``, a ``no-cors`` fetch, a frame or a tiny pop-up never
claims it. The first good claim gets an HttpOnly, SameSite=Strict cookie; after that the page and every
claim answer 410. The page's API needs that cookie, the CSRF token and a same-origin request.

Lifetime. A dialog not claimed within ``SHOW_TIMEOUT`` seconds of being handed to the browser ends
(:class:`DialogNotShown`), and so does a WebSigner dialog whose tab does not load it within ``LOAD_TIMEOUT``
of its redirect (a browser follows at once; a client that left never does): the signing service fails the
request and counts it like a cancel. WebSigner
shows its page *before* the operation queues for the card (:meth:`WebDialog.reserve`), so a page that is
never shown never holds the card. Closing the page (or leaving it) before answering cancels at once.

The page may not be framed (CSP ``frame-ancestors 'none'``) and runs only our own scripts; the PIN goes from
the page straight to the card: it is neither logged nor stored. After a wrong PIN the page shows the tries
left and the user may try again; the SCS request waits until the dialog completes, is cancelled, or times out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import html
import logging
import math
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
import weakref
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from digisign_web.dialog.protocol import DialogAnswer, DialogRefused, DialogRequest, TabDialog
from digisign_web.web.middleware import own_origins, top_level_navigation
from digisign_web.web.pages import page, page_headers, template

log = logging.getLogger(__name__)

SHOW_TIMEOUT = 10.0  # seconds from handing the dialog to the browser until its page must have claimed it
LOAD_TIMEOUT = 3.0  # seconds for a tab redirected to its dialog (WebSigner) to load it: it does at once, or is gone
MIN_VIEW = (300, 300)  # CSS pixels (width, height) the page needs before it claims; static/dialog.js has the same
WAIT_POLL = 15.0  # seconds a waiting page's request for the details is held open before it asks again
FINAL_GRACE = 30.0  # seconds a finished dialog still answers its page with the outcome

SECURITY_HEADERS = page_headers("dialog")


class DialogNotShown(TimeoutError):
    """No browser took the dialog within SHOW_TIMEOUT: nobody is looking at it."""


@functools.cache
def default_browser_is_confined() -> bool:
    """Whether the desktop's default browser runs confined (snap, flatpak), so that it cannot open a file
    in our private directory. Asked once: ``xdg-settings`` names snap launchers ``<snap>_<app>.desktop``
    and flatpak ones by their reverse-DNS application id; ``$BROWSER`` may point into /snap or flatpak."""
    if "/snap/" in os.environ.get("BROWSER", "") or "flatpak" in os.environ.get("BROWSER", ""):
        return True
    try:
        answer = subprocess.run(["xdg-settings", "get", "default-web-browser"], capture_output=True, text=True,
                                timeout=5, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    if not answer.endswith(".desktop"):
        return False
    name = answer.removesuffix(".desktop")
    snap = re.fullmatch(r"[a-z0-9-]+_[a-z0-9-]+", name) is not None and Path("/snap/bin").is_dir()
    flatpak = name.count(".") >= 2 and any(
        Path(root, name).is_dir() for root in ("/var/lib/flatpak/app", Path.home() / ".local/share/flatpak/app"))
    return snap or flatpak


@dataclass(eq=False)
class _Session:
    token: str  # the public id in /dialog/<token>
    key: str  # the capability: only in the URL fragment, claimed once
    csrf: str
    expires: float
    request: DialogRequest | None = None  # None while a WebSigner page waits for the card (reserve)
    after: str | None = None  # WebSigner: where the page goes when the dialog is over
    cookie: str = ""  # set by the one good claim
    launch_file: Path | None = None
    loaded: asyncio.Event = field(default_factory=asyncio.Event)  # a tab has requested the page
    claimed: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # the request's details are known
    answers: asyncio.Queue[DialogAnswer] = field(default_factory=asyncio.Queue)
    outcome: asyncio.Future[dict[str, Any]] | None = None  # what the page's pending POST will receive
    done: bool = False
    final: dict[str, Any] | None = None


class WebDialog(TabDialog):
    """A :class:`~digisign_web.dialog.protocol.TabDialog` that asks through a page of this server."""

    def __init__(self, base_url: str, timeout: float = 120.0, language: str = "",
                 open_url: Callable[[str], object] = webbrowser.open, launch_dir: Path | None = None,
                 confined_browser: Callable[[], bool] | None = None):
        self.timeout = timeout
        self._confined_browser = confined_browser or default_browser_is_confined
        self.language = language
        self.open_url = open_url
        self.base_url = base_url.rstrip("/")  # https://localhost:<the port the server claimed>
        self._launch_dir = launch_dir
        self._sessions: dict[str, _Session] = {}
        self._by_request: dict[str, _Session] = {}  # DialogRequest.key -> its session
        self._reserved: dict[Callable[[str], None], _Session] = {}

    # -- the Dialog interface, used by the signing service ------------------------------------
    async def ask(self, request: DialogRequest) -> DialogAnswer:
        if not self.base_url:
            raise DialogRefused("the web dialog has no server address yet")
        session = self._reserved.pop(request.present, None) if request.present is not None else None
        if session is not None:  # WebSigner: its page is already shown and waits for these details
            self._by_request[request.key] = session
            self._attach(session, request)
            return await session.answers.get()
        session = self._new_session(request)
        self._by_request[request.key] = session
        if request.present is not None:
            request.present(self._url(session))
        else:
            log.info("opening the signing dialog for %s", request.origin_text)
            if await asyncio.to_thread(self._confined_browser):
                # A snap or flatpak browser cannot read our private directory: it gets the address itself.
                # Other accounts that read it from /proc are refused at the socket (peer-uid check).
                await asyncio.to_thread(self._open, self._url(session))
            else:
                launch = self._write_launch_file(session)
                await asyncio.to_thread(self._open, launch.as_uri())
        await self._until_shown(session, redirected=request.present is not None)
        return await session.answers.get()

    async def reserve(self, present: Callable[[str], None], after: str | None) -> None:
        """WebSigner: show the dialog page in the requesting tab *before* the operation queues for the card.

        Returns once the page has claimed the dialog; raises :class:`DialogNotShown` if it does not within
        SHOW_TIMEOUT. :meth:`ask` then fills in the details; :meth:`release` ends a page whose operation ended
        before it got that far.
        """
        if not self.base_url:
            raise DialogRefused("the web dialog has no server address yet")
        session = self._new_session(None)
        session.after = after
        self._reserved[present] = session
        try:
            present(self._url(session))
            await self._until_shown(session, redirected=True)
        except BaseException:
            self.release(present)
            raise
        session.expires = math.inf  # the page waits while the operation queues; ask() sets the real deadline

    def release(self, present: Callable[[str], None], text: str = "the request ended before the dialog") -> None:
        """End a reserved page that never got its details (the operation failed or was cancelled first)."""
        session = self._reserved.pop(present, None)
        if session is not None:
            self._end(session, {"result": "failed", "text": text})

    async def ask_again(self, request: DialogRequest, problem: str, tries_left: int | None) -> DialogAnswer:
        session = self._by_request[request.key]
        self._resolve(session, {"result": "wrong-pin", "triesLeft": tries_left, "text": problem})
        return await session.answers.get()

    async def finish(self, request: DialogRequest, outcome: str, text: str) -> None:
        """``outcome`` is "signed", "cancelled" or "failed"; the page shows it and, for WebSigner, moves on."""
        session = self._by_request.pop(request.key, None)
        if session is not None:
            self._end(session, {"result": outcome, "text": text})

    # -- sessions --------------------------------------------------------------------------------
    def _new_session(self, request: DialogRequest | None) -> _Session:
        self._expire()
        session = _Session(secrets.token_urlsafe(16), secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                           time.monotonic() + self.timeout)
        if request is not None:
            self._attach(session, request)
        self._sessions[session.token] = session
        return session

    def _attach(self, session: _Session, request: DialogRequest) -> None:
        session.request, session.after = request, request.after
        session.expires = time.monotonic() + self.timeout
        session.ready.set()

    def _url(self, session: _Session) -> str:
        return f"{self.base_url}/dialog/{session.token}#{session.key}"

    async def _until_shown(self, session: _Session, redirected: bool) -> None:
        """Until a tab claims the dialog. A redirected tab must also load it within LOAD_TIMEOUT: a client that
        left before following its redirect frees its place in the queue within seconds."""
        deadline = time.monotonic() + SHOW_TIMEOUT
        try:
            if redirected:
                await asyncio.wait_for(session.loaded.wait(), LOAD_TIMEOUT)
            await asyncio.wait_for(session.claimed.wait(), deadline - time.monotonic())
        except TimeoutError:
            log.info("the signing dialog was not shown within %.0f s; the request ends", SHOW_TIMEOUT)
            raise DialogNotShown(f"the dialog was not shown in a browser tab within {SHOW_TIMEOUT:.0f} s") from None

    def _end(self, session: _Session, final: dict[str, Any]) -> None:
        session.done, session.final = True, final
        session.ready.set()  # a waiting page learns the outcome at once
        self._resolve(session, final)
        self._remove_launch_file(session)
        # The page may still fetch the final state for a moment; then the id is gone for good.
        session.expires = min(session.expires, time.monotonic() + FINAL_GRACE)
        asyncio.get_running_loop().call_later(FINAL_GRACE, self._sessions.pop, session.token, None)

    def _resolve(self, session: _Session, outcome: dict[str, Any]) -> None:
        if session.outcome is not None and not session.outcome.done():
            session.outcome.set_result(outcome)
        session.outcome = None

    def _expire(self) -> None:
        now = time.monotonic()
        for token, session in list(self._sessions.items()):
            if session.expires < now:
                self._sessions.pop(token, None)
                self._remove_launch_file(session)

    # -- the launcher's bootstrap page -----------------------------------------------------------
    def _private_dir(self) -> Path:
        """A directory only this account can enter: ``$XDG_RUNTIME_DIR`` (checked), else a fresh mkdtemp."""
        if self._launch_dir is None:
            runtime = os.environ.get("XDG_RUNTIME_DIR", "")
            parent = runtime if runtime and _private(Path(runtime)) else None
            self._launch_dir = Path(tempfile.mkdtemp(prefix="digisign-web-dialog-", dir=parent))  # mode 0700
            weakref.finalize(self, shutil.rmtree, self._launch_dir, True)
        return self._launch_dir

    def _write_launch_file(self, session: _Session) -> Path:
        """The page the launcher opens: its path is public (command lines are), its content is not."""
        url = html.escape(self._url(session))
        text = ("<!doctype html><html><head><meta charset=utf-8><meta name=referrer content=no-referrer>"
                f'<meta http-equiv="refresh" content="0; url={url}"><title>Signature request – digisign-web</title>'
                f'</head><body><p><a href="{url}">Open the signing dialog</a></p></body></html>')
        path = self._private_dir() / f"{secrets.token_urlsafe(12)}.html"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        session.launch_file = path
        return path

    @staticmethod
    def _remove_launch_file(session: _Session) -> None:
        if session.launch_file is not None:
            session.launch_file.unlink(missing_ok=True)
            session.launch_file = None

    def _open(self, url: str) -> None:
        try:
            if not self.open_url(url):
                log.warning("could not open a browser; open the dialog yourself: %s", url)
        except Exception as exc:  # a broken browser setup must not break the request
            log.warning("could not open a browser (%s); open the dialog yourself: %s", exc, url)

    # -- HTTP ------------------------------------------------------------------------------------
    def _session(self, request: web.Request) -> _Session:
        session = self._sessions.get(request.match_info["token"])
        if session is None or session.expires < time.monotonic():
            raise web.HTTPGone(text="This signing dialog has expired or was already used.",
                               headers=SECURITY_HEADERS)
        return session

    def _from_page(self, request: web.Request, session: _Session, csrf: str, cookie: bool = True) -> None:
        """The dialog page's own script: same origin, its CSRF token and (after the claim) its cookie."""
        same_origin = request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in own_origins(request):
            same_origin = False
        cookie_ok = not cookie or (session.cookie and hmac.compare_digest(request.cookies.get("dlg", ""),
                                                                          session.cookie))
        if not (same_origin and cookie_ok and hmac.compare_digest(csrf, session.csrf)):
            raise web.HTTPForbidden(text="not this dialog's page", headers=SECURITY_HEADERS)

    async def page(self, request: web.Request) -> web.Response:
        """The dialog page, for a top-level navigation only. It binds nothing: its script claims the dialog."""
        if not top_level_navigation(request):
            raise web.HTTPForbidden(text="The signing dialog opens only as a page in a browser tab.",
                                    headers=SECURITY_HEADERS)
        session = self._session(request)
        if session.cookie or session.done:
            raise web.HTTPGone(text="This signing dialog is already open in another tab, or is over.",
                               headers=SECURITY_HEADERS)
        session.loaded.set()
        return page("dialog", template("dialog.html", csrf=session.csrf, lang=self.language or ""))

    async def claim(self, request: web.Request) -> web.Response:
        """The page proves it holds the key (from its URL fragment); the first good claim binds the dialog."""
        session = self._session(request)
        self._from_page(request, session, request.headers.get("X-CSRF-Token", ""), cookie=False)
        data = await _json_object(request)
        key = data.get("key")
        if session.cookie:
            raise web.HTTPGone(text="This signing dialog is already open in another tab.", headers=SECURITY_HEADERS)
        if not isinstance(key, str) or not hmac.compare_digest(key.encode(), session.key.encode()):
            log.warning("a claim of a signing dialog without its key was refused")
            raise web.HTTPForbidden(text="not this dialog's key", headers=SECURITY_HEADERS)
        if session.done:  # it ended before any tab took it (e.g. not shown in time): the page passes the outcome on
            return web.json_response({"final": session.final, "next": session.after}, headers=SECURITY_HEADERS)
        session.cookie = secrets.token_urlsafe(32)
        session.claimed.set()
        self._remove_launch_file(session)
        response = web.json_response({"claimed": True}, headers=SECURITY_HEADERS)
        response.set_cookie("dlg", session.cookie, path=f"/dialog/{session.token}", secure=True, httponly=True,
                            samesite="Strict")
        return response

    async def details(self, request: web.Request) -> web.Response:
        """What the page shows. While a WebSigner page waits for the card this is held open, then says so."""
        session = self._session(request)
        self._from_page(request, session, request.headers.get("X-CSRF-Token", ""))
        if not session.ready.is_set():
            try:
                await asyncio.wait_for(session.ready.wait(), WAIT_POLL)
            except TimeoutError:
                return web.json_response({"waiting": True}, headers=SECURITY_HEADERS)
        r = session.request
        if r is None:  # ended before it had details
            return web.json_response({"final": session.final, "next": session.after}, headers=SECURITY_HEADERS)
        body = {
            "origin": r.origin, "originText": r.origin_text, "info": r.info, "signatureType": r.signature_type,
            "contentType": r.content_type, "hashAlgorithm": r.hash_algorithm, "size": r.content_size,
            "digest": r.digest_hex, "relaxedAlgorithm": r.relaxed_algorithm, "language": self.language,
            "expiresIn": max(0, int(session.expires - time.monotonic())),
            "choices": [dataclasses.asdict(c) for c in r.choices], "final": session.final, "next": r.after,
        }
        return web.json_response(body, headers=SECURITY_HEADERS)

    async def answer(self, request: web.Request) -> web.Response:
        """The user's answer; the reply waits for what the card said (signed, wrong PIN, ...)."""
        session = self._session(request)
        self._from_page(request, session, request.headers.get("X-CSRF-Token", ""))
        if session.done:
            return web.json_response(session.final, headers=SECURITY_HEADERS)
        if session.outcome is not None:
            raise web.HTTPConflict(text="an answer is already being processed", headers=SECURITY_HEADERS)
        if session.request is None:
            raise web.HTTPConflict(text="the request is still waiting for the card", headers=SECURITY_HEADERS)
        data = await _json_object(request)
        if data.get("cancel"):
            answer = DialogAnswer.cancel()
        else:
            choice, pin = data.get("choice"), data.get("pin")
            if not isinstance(choice, int) or not 0 <= choice < len(session.request.choices) or \
                    not (pin is None or isinstance(pin, str)):
                raise web.HTTPBadRequest(text="choice and pin expected", headers=SECURITY_HEADERS)
            if session.request.choices[choice].pin_on_reader:
                pin = None  # the reader takes this PIN (D62): one sent by the page is not used
            answer = DialogAnswer(choice, pin or None)
        outcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        session.outcome = outcome
        await session.answers.put(answer)
        del data, answer  # the PIN is the card's business from here on
        try:
            result = await asyncio.wait_for(asyncio.shield(outcome), self.timeout)
        except TimeoutError:
            result = {"result": "failed", "text": "timed out"}
        return web.json_response(result, headers=SECURITY_HEADERS)

    async def gone(self, request: web.Request) -> web.Response:
        """The page was closed or left before an answer (a beacon): that is a cancel, and it ends at once."""
        session = self._session(request)
        form = await request.post()
        csrf = form.get("csrf")
        self._from_page(request, session, csrf if isinstance(csrf, str) else "")
        if not session.done and session.outcome is None and session.answers.empty():
            # Taken as soon as the dialog asks; a page still waiting for the card cancels when its turn comes.
            await session.answers.put(DialogAnswer.cancel())
        return web.Response(status=204, headers=SECURITY_HEADERS)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="JSON expected", headers=SECURITY_HEADERS) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="JSON object expected", headers=SECURITY_HEADERS)
    return data


def _private(path: Path) -> bool:
    """A directory of ours that no other account can enter (what XDG promises for $XDG_RUNTIME_DIR)."""
    try:
        info = path.stat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def add_routes(app: web.Application, dialog: WebDialog) -> None:
    app.router.add_get("/dialog/{token}", dialog.page)
    app.router.add_post("/dialog/{token}/claim", dialog.claim)
    app.router.add_get("/dialog/{token}/request", dialog.details)
    app.router.add_post("/dialog/{token}/answer", dialog.answer)
    app.router.add_post("/dialog/{token}/gone", dialog.gone)
