"""The web dialog: the PIN dialog as a page of this local server, opened in the user's browser.

Why a page: the user is already in a browser, and a page can show the origin, the info text, the
certificates and the PIN rules clearly, in the user's language. How it stays safe:

* the URL holds an unguessable token, works once (the first load binds it to a cookie) and expires;
* the page's API needs that cookie, a CSRF token from the page, and a same-origin request;
* the page may not be framed (CSP ``frame-ancestors 'none'``) and runs only our own scripts;
* the PIN goes from the page straight to the card: it is neither logged nor stored.

After a wrong PIN the page shows the tries left and the user may try again; the SCS request waits
until the dialog completes, is cancelled, or times out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import secrets
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web

from .dialog import DialogAnswer, DialogRefused, DialogRequest

log = logging.getLogger(__name__)

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                    "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


@dataclass
class _Session:
    token: str
    csrf: str
    request: DialogRequest
    expires: float
    cookie: str = ""  # set by the first (and only) load of the page
    answers: asyncio.Queue[DialogAnswer] = field(default_factory=asyncio.Queue)
    outcome: asyncio.Future[dict[str, Any]] | None = None  # what the page's pending POST will receive
    done: bool = False
    final: dict[str, Any] | None = None


class WebDialog:
    """A :class:`~digisign_web.dialog.Dialog` that asks through a page of this server."""

    def __init__(self, timeout: float = 120.0, language: str = "",
                 open_url: Callable[[str], object] = webbrowser.open):
        self.timeout = timeout
        self.language = language
        self.open_url = open_url
        self.base_url = ""  # set once the server knows its port
        self._sessions: dict[str, _Session] = {}
        self._by_request: dict[int, _Session] = {}

    # -- the Dialog interface, used by the signing service ------------------------------------
    async def ask(self, request: DialogRequest) -> DialogAnswer:
        if not self.base_url:
            raise DialogRefused("the web dialog has no server address yet")
        self._expire()
        session = _Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), request,
                           time.monotonic() + self.timeout)
        self._sessions[session.token] = session
        self._by_request[id(request)] = session
        url = f"{self.base_url}/dialog/{session.token}"
        if request.present is not None:
            request.present(url)  # WebSigner: the requesting tab itself goes to the dialog
        else:
            log.info("opening the signing dialog for %s", request.origin_text)
            await asyncio.to_thread(self._open, url)
        return await session.answers.get()

    def _open(self, url: str) -> None:
        try:
            if not self.open_url(url):
                log.warning("could not open a browser; open the dialog yourself: %s", url)
        except Exception as exc:  # a broken browser setup must not break the request
            log.warning("could not open a browser (%s); open the dialog yourself: %s", exc, url)

    async def ask_again(self, request: DialogRequest, problem: str, tries_left: int | None) -> DialogAnswer:
        session = self._by_request[id(request)]
        self._resolve(session, {"result": "wrong-pin", "triesLeft": tries_left, "text": problem})
        return await session.answers.get()

    async def finish(self, request: DialogRequest, outcome: str, text: str) -> None:
        """``outcome`` is "signed", "cancelled" or "failed"; the page shows it and, for WebSigner, moves on."""
        session = self._by_request.pop(id(request), None)
        if session is None:
            return
        final = {"result": outcome, "text": text}
        session.done, session.final = True, final
        self._resolve(session, final)
        # The page may still fetch the final state for a moment; then the token is gone for good.
        asyncio.get_running_loop().call_later(30, self._sessions.pop, session.token, None)

    def _resolve(self, session: _Session, outcome: dict[str, Any]) -> None:
        if session.outcome is not None and not session.outcome.done():
            session.outcome.set_result(outcome)
        session.outcome = None

    def _own_origins(self) -> set[str]:
        port = self.base_url.rsplit(":", 1)[-1]
        return {f"https://{host}:{port}" for host in ("localhost", "127.0.0.1", "[::1]")}

    def _expire(self) -> None:
        now = time.monotonic()
        for token, session in list(self._sessions.items()):
            if session.expires < now:
                self._sessions.pop(token, None)

    # -- HTTP ------------------------------------------------------------------------------------
    def _session_for(self, request: web.Request, api: bool) -> _Session:
        session = self._sessions.get(request.match_info["token"])
        if session is None or session.expires < time.monotonic():
            raise web.HTTPGone(text="This signing dialog has expired or was already used.",
                               headers=SECURITY_HEADERS)
        if api:
            cookie = request.cookies.get("dlg", "")
            csrf = request.headers.get("X-CSRF-Token", "")
            same_origin = request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self._own_origins():
                same_origin = False
            if not (session.cookie and hmac.compare_digest(cookie, session.cookie)
                    and hmac.compare_digest(csrf, session.csrf) and same_origin):
                raise web.HTTPForbidden(text="not this dialog's page", headers=SECURITY_HEADERS)
        return session

    async def page(self, request: web.Request) -> web.Response:
        """The dialog page. The first load binds the URL to a cookie; any later load is refused."""
        session = self._session_for(request, api=False)
        if session.cookie:
            raise web.HTTPGone(text="This signing dialog is already open in another tab.", headers=SECURITY_HEADERS)
        session.cookie = secrets.token_urlsafe(32)
        template = resources.files("static").joinpath("dialog.html").read_text(encoding="utf-8")
        html = template.replace("{{csrf}}", session.csrf).replace("{{lang}}", self.language or "")
        response = web.Response(text=html, content_type="text/html", headers=SECURITY_HEADERS)
        response.set_cookie("dlg", session.cookie, path=f"/dialog/{session.token}", secure=True, httponly=True,
                            samesite="Strict", max_age=int(self.timeout) + 60)
        return response

    async def details(self, request: web.Request) -> web.Response:
        session = self._session_for(request, api=True)
        r = session.request
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
        session = self._session_for(request, api=True)
        if session.done:
            return web.json_response(session.final, headers=SECURITY_HEADERS)
        if session.outcome is not None:
            raise web.HTTPConflict(text="an answer is already being processed", headers=SECURITY_HEADERS)
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="JSON expected", headers=SECURITY_HEADERS) from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="JSON object expected", headers=SECURITY_HEADERS)
        if data.get("cancel"):
            answer = DialogAnswer.cancel()
        else:
            choice, pin = data.get("choice"), data.get("pin")
            if not isinstance(choice, int) or not 0 <= choice < len(session.request.choices) or \
                    not (pin is None or isinstance(pin, str)):
                raise web.HTTPBadRequest(text="choice and pin expected", headers=SECURITY_HEADERS)
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


def add_routes(app: web.Application, dialog: WebDialog) -> None:
    app.router.add_get("/dialog/{token}", dialog.page)
    app.router.add_get("/dialog/{token}/request", dialog.details)
    app.router.add_post("/dialog/{token}/answer", dialog.answer)
