"""The "My card" page, ``https://localhost:<port>/card``: certificates, PIN counters, change and unblock (D48).

Who may use it. The page is served only to a top-level document navigation (a frame, an ``<img>`` or a
``no-cors`` fetch is refused), and the guard refuses every other site before this module sees the request.
Loading the page sets an HttpOnly, Secure, SameSite=Strict cookie (path ``/card``) and puts into the page a
CSRF token that is an HMAC of that cookie under a key made when the app is built. The JSON API is ``POST``
only, so a browser always sends ``Origin``: it must be one of this server's own origins, ``Sec-Fetch-Site``
must be ``same-origin`` (other ports of localhost are same-site, so SameSite cookies alone would not keep
them out), the body must be ``application/json`` (a cross-site form cannot send it without a preflight,
which gets no CORS answer), and the token must match the cookie. No answer carries a CORS header.

What it does is :mod:`digisign_web.scs.pin_management`'s (D46), under the signing service's card lock, with
the rules of :mod:`digisign_web.scs.pin_rules` (D47), which the page's script also runs before sending. PINs
come only in the POST bodies and go straight to the card: never in a URL, a log or an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from typing import Any

from aiohttp import web

from digisign_web.scs.expiry import expiry
from digisign_web.web.keys import CORE, SETTINGS
from digisign_web.web.limits import BodyTooLarge, connection_of, read_limited
from digisign_web.web.middleware import own_origins, top_level_navigation
from digisign_web.web.pages import page, page_headers, template

TYPE_CHECKING = False  # the card layer and PIN management load with the signing service (D69)
if TYPE_CHECKING:
    from card import Token
    from digisign_web.scs.pin_management import PinManagement

log = logging.getLogger(__name__)

COOKIE = "card_session"
BODY_LIMIT = 4096  # three PINs and a reader name
HEADERS = page_headers("card")


class CardPage:
    """The page, its session check and its API."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)  # CSRF tokens are HMACs of the session cookie under this key

    def _csrf(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode(), hashlib.sha256).hexdigest()

    # -- the page ----------------------------------------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        _refuse_unchecked(request)
        if not top_level_navigation(request):
            raise web.HTTPForbidden(text="The My card page opens only as a page in a browser tab.", headers=HEADERS)
        cookie = request.cookies.get(COOKIE, "")
        if len(cookie) != 43 or not cookie.replace("-", "").replace("_", "").isalnum():
            cookie = secrets.token_urlsafe(32)  # 43 characters
        response = page("card", template("card.html", csrf=self._csrf(cookie),
                                         lang=request.app[SETTINGS].language or ""))
        response.set_cookie(COOKIE, cookie, path="/card", secure=True, httponly=True, samesite="Strict")
        return response

    # -- the API -----------------------------------------------------------------------------------
    def _from_page(self, request: web.Request) -> None:
        """Our own page's script, and nobody else: same origin, its cookie and the token bound to it."""
        _refuse_unchecked(request)
        origin = request.headers.get("Origin")
        cookie = request.cookies.get(COOKIE, "")
        token = request.headers.get("X-CSRF-Token", "")
        checks = {
            "origin": origin is not None and origin in own_origins(request),
            "fetch-site": request.headers.get("Sec-Fetch-Site") == "same-origin",
            "content-type": request.content_type == "application/json",
            "session": bool(cookie) and hmac.compare_digest(token.encode(), self._csrf(cookie).encode()),
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            log.warning("refused a My card API request (%s)", ", ".join(failed))
            raise web.HTTPForbidden(text="not the My card page of this server", headers=HEADERS)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await read_limited(request, BODY_LIMIT) or b"{}")
        except BodyTooLarge:
            raise web.HTTPRequestEntityTooLarge(max_size=BODY_LIMIT, actual_size=BODY_LIMIT + 1,
                                                headers=HEADERS) from None
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(text="JSON expected", headers=HEADERS) from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="JSON object expected", headers=HEADERS)
        return data

    @staticmethod
    async def _pins(request: web.Request) -> PinManagement:
        """PIN operations over the signing service's card state and PIN sessions, waiting for the service
        while ``serve`` is still loading it (D69)."""
        from digisign_web.scs.pin_management import PinManagement

        service = await request.app[CORE].service()
        return PinManagement(request.app[SETTINGS], state=service.state, sessions=service.pins)

    async def status(self, request: web.Request) -> web.Response:
        self._from_page(request)
        await self._body(request)
        pins = await self._pins(request)
        cards = await asyncio.to_thread(self._cards, request, pins)
        return web.json_response({"ok": True, "cards": cards, "language": request.app[SETTINGS].language,
                                  "unblockingDisabled": pins.settings.disable_pin_unblocking}, headers=HEADERS)

    async def change(self, request: web.Request) -> web.Response:
        return await self._operate(request, "change")

    async def unblock(self, request: web.Request) -> web.Response:
        return await self._operate(request, "unblock")

    async def _operate(self, request: web.Request, action: str) -> web.Response:
        from digisign_web.scs.pin_management import PIN_IDS, PinOperationError

        self._from_page(request)
        data = await self._body(request)
        which, reader = data.get("pin"), data.get("reader")
        current = data.get("puk" if action == "unblock" else "old")
        new, again = data.get("new"), data.get("again")
        del data  # the PINs live in the three names above until the card has them
        if which not in PIN_IDS or not isinstance(reader, str) or \
                not all(isinstance(v, str) for v in (current, new, again)):
            raise web.HTTPBadRequest(text="pin (pin1 or pin2), reader, the PINs as strings expected", headers=HEADERS)
        pins = await self._pins(request)

        def run(first: str, new_pin: str, new_again: str) -> dict[str, Any]:
            with pins.lock:  # finding the token may read the card: under the card lock, like the operation
                token = self._token(pins, reader)
                operation = pins.unblock if action == "unblock" else pins.change
                counters = operation(token, which, first, new_pin, new_again)
            return {"ok": True, "pins": [c.as_json() for c in counters]}

        try:
            result = await asyncio.to_thread(run, current, new, again)
        except PinOperationError as exc:
            result = exc.as_json()
        return web.json_response(result, headers=HEADERS)

    # -- card work (worker thread) -----------------------------------------------------------------
    @staticmethod
    def _token(pins: PinManagement, reader: str) -> Token:
        from card import CardError
        from digisign_web.scs.pin_management import PinOperationError

        try:
            for token in pins.state.manager.tokens():
                if token.reader == reader:
                    return token
        except CardError as exc:
            raise PinOperationError("no-card", f"no card: {exc}") from None
        raise PinOperationError("no-card", "that card is no longer in its reader; read the card again")

    @staticmethod
    def _cards(request: web.Request, pins: PinManagement) -> list[dict[str, Any]]:
        from card import CardError
        from digisign_web.scs.pin_management import PinOperationError

        settings = request.app[SETTINGS]
        out = []
        with pins.lock:
            for token in pins.state.manager.tokens():
                entry: dict[str, Any] = {"reader": token.reader}
                try:
                    entry["serial"], entry["label"] = token.serial, token.label
                    entry["certificates"] = [_certificate(c, settings.cert_expiration_warning_days)
                                             for c in token.certificates()]
                    entry["pins"] = [c.as_json() for c in pins.status(token)]
                    entry["policies"] = {which: {kind: policy.as_json() for kind, policy in kinds.items()}
                                         for which, kinds in pins.policies(token).items()}
                except (CardError, PinOperationError) as exc:
                    entry["problem"] = str(exc)
                out.append(entry)
        return out


def _refuse_unchecked(request: web.Request) -> None:
    """The page spends PIN and PUK tries: only this computer's user, never a peer ``--listen`` admitted
    without knowing who it is (another host or container, D40) and whose headers prove nothing."""
    connection = connection_of(request)
    if connection is not None and connection.unchecked:
        log.warning("refused the My card page to %s: not a connection of this computer's user", connection.peer)
        raise web.HTTPForbidden(text="The My card page is only for this computer's user.", headers=HEADERS)


def _certificate(cert: Any, warning_days: int) -> dict[str, Any]:
    x509 = cert.certificate
    state = expiry(x509.not_before, x509.not_after, warning_days)
    return {"subject": cert.subject, "issuer": cert.issuer, "role": cert.role, "key": cert.key_description,
            "notAfter": x509.not_after.date().isoformat(), "validity": str(state.validity),
            "daysLeft": state.days_left}


def add_routes(app: web.Application) -> None:
    """``GET /card`` and its same-origin API (``POST /card/api/{status,change,unblock}``)."""
    card = CardPage()
    app.router.add_get("/card", card.page)
    app.router.add_post("/card/api/status", card.status)
    app.router.add_post("/card/api/change", card.change)
    app.router.add_post("/card/api/unblock", card.unblock)
