"""WebSigner: HTML-form signing that needs no JavaScript or CORS on the relying party's side.

This is the project's own design (decision D26: no WebSigner specification or capture is available;
experimental, no compatibility claim). A plain form on the relying party's page posts to
``/websigner``; this server's own page runs the dialog in that same tab; the result goes back as a plain
form POST to ``returnUrl`` (``responseMode=form_post``, the default) or by ``window.opener.postMessage``
(``post_message``). Cancel and errors travel the same way, so the relying party always gets an answer
once its origin and ``returnUrl`` are known to be sound.

Fields mean what they mean in SCS (``content`` base64, or a ``file`` upload with no base64,
``contentType``, ``hashAlgorithm``, ``signatureType``, ``info``), with the selector as repeatable fields
(``keyusages``, ``keyalgorithms``, ``issuers``, ``akis``) plus ``strictKeyPolicy``, and ``returnUrl``,
``state`` and ``responseMode``.
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from multidict import MultiDictProxy

from digisign_web.scs.errors import ScsFailure, failure, scs_failure_for
from digisign_web.settings import Settings
from digisign_web.text import inert_line
from digisign_web.web.keys import CORE, SETTINGS, Core
from digisign_web.web.middleware import top_level_navigation
from digisign_web.web.pages import page, shell
from digisign_web.wildcards import origin_allowed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from digisign_web.scs.request import ScsRequest

log = logging.getLogger(__name__)

RESULT_TTL = 120.0
STATE_LIMIT = 4096  # characters of ``state``: it is echoed back, so it is held until then
_INERT_IN_HTML = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                "\u2028": "\\u2028", "\u2029": "\\u2029"})
RESULT_FIELDS = ("version", "status", "reasonCode", "reasonText", "signature", "signatureAlgorithm", "signatureType")


def inline_json(value: Any) -> str:
    """JSON to place inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and U+2028/U+2029 as ``\\uXXXX``
    escapes, so that no ``</script>``, ``<!--`` or ``<script`` in the data can change how the page is parsed."""
    return json.dumps(value).translate(_INERT_IN_HTML)


class WebSignerRefusal(Exception):
    """A request we cannot answer through returnUrl (no trustworthy origin or return address)."""


def origin_of(request: web.Request) -> str:
    """The relying party's origin: the Origin header of the form post, or failing that the Referer's."""
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        if parts.scheme and parts.netloc:
            return f"{parts.scheme}://{parts.netloc}"
    raise WebSignerRefusal("the request has neither an Origin nor a Referer header, so its sender is unknown")


def check_return_url(return_url: str | None, origin: str) -> str:
    """returnUrl must be same-origin with the sender and https (http only for localhost development)."""
    if not return_url:
        raise WebSignerRefusal("returnUrl is missing")
    parts = urlsplit(return_url)
    if f"{parts.scheme}://{parts.netloc}" != origin:
        raise WebSignerRefusal("returnUrl must have the same origin as the page that sent the form")
    if parts.scheme == "https":
        return return_url
    if parts.scheme == "http" and (parts.hostname or "") in ("localhost", "127.0.0.1"):
        return return_url
    raise WebSignerRefusal("returnUrl must be https (http is accepted for localhost and 127.0.0.1 only)")


@dataclass
class _Pending:
    """A result on its way back to the relying party. The task ends with the answer as a dict (never an
    exception, whose traceback would keep the request's frames, and so its content, alive)."""

    origin: str
    return_url: str
    state: str | None
    mode: str
    task: asyncio.Task[dict[str, Any]]
    created: float


class WebSigner:
    def __init__(self, settings: Settings, core: Core):
        self.settings = settings
        self.core = core  # the signing service, loaded once (D69)
        self._pending: dict[str, _Pending] = {}

    # -- request --------------------------------------------------------------------------------
    async def _form(self, request: web.Request) -> MultiDictProxy[Any]:
        limit = self.settings.max_request_bytes
        if request.content_length is not None and request.content_length > limit:
            raise WebSignerRefusal(f"the request is larger than {limit} bytes")
        if request.method == "GET":
            return request.query
        try:
            return await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise WebSignerRefusal(f"the request is larger than {limit} bytes") from None
        except ValueError as exc:
            raise WebSignerRefusal(f"the form could not be read: {exc}") from None

    @staticmethod
    def _fields(form: MultiDictProxy[Any]) -> dict[str, Any]:
        """The form as SCS request fields (a file upload becomes the content, without base64 on the wire)."""
        fields: dict[str, Any] = {}
        for name in ("contentType", "hashAlgorithm", "signatureType", "info", "version"):
            value = form.get(name)
            if isinstance(value, str) and value != "":
                fields[name] = value
        upload = form.get("file")
        if isinstance(upload, web.FileField):
            fields["content"] = base64.b64encode(upload.file.read()).decode()
        elif isinstance(form.get("content"), str):
            fields["content"] = form.get("content")
        selector: dict[str, list[str]] = {}
        for name in ("keyusages", "keyalgorithms", "issuers", "akis"):
            values = [v for v in form.getall(name, []) if isinstance(v, str) and v.strip()]
            if values:
                selector[name] = values
        fields["selector"] = selector
        strict = form.get("strictKeyPolicy")
        if isinstance(strict, str) and strict.strip():
            fields["strictKeyPolicy"] = strict.strip().lower() in ("1", "true", "yes", "on")
        return fields

    async def start(self, request: web.Request) -> web.StreamResponse:
        from digisign_web.scs.request import parse_request  # loaded with the signing service (D69)

        settings = self.settings
        if not top_level_navigation(request):
            # An <img>, a no-cors fetch, a script or a frame: nobody would see the dialog, so nothing starts.
            log.info("WebSigner request refused: not a top-level navigation (Sec-Fetch-Mode %s, Sec-Fetch-Dest %s)",
                     inert_line(request.headers.get("Sec-Fetch-Mode", "")),
                     inert_line(request.headers.get("Sec-Fetch-Dest", "")))
            return _page(403, "Request refused", "WebSigner starts only from a form or link that opens a page "
                                                 "in a browser tab, not from an image, a script, a frame or fetch().")
        try:
            origin = origin_of(request)
            form = await self._form(request)
            return_url = check_return_url(form.get("returnUrl"), origin)
        except WebSignerRefusal as exc:
            log.info("WebSigner request refused: %s", inert_line(str(exc), limit=1000))
            return _page(403, "Request refused", str(exc))
        state = form.get("state") if isinstance(form.get("state"), str) else None
        mode = form.get("responseMode") or "form_post"
        if mode not in ("form_post", "post_message"):
            return _page(400, "Request refused", "responseMode must be form_post or post_message")
        if state is not None and len(state) > STATE_LIMIT:
            return _page(400, "Request refused", f"state is longer than {STATE_LIMIT} characters")

        def deliver_failure(code: int, text: str) -> web.Response:
            return self._deliver(origin, return_url, state, mode, failure(settings.scs_version, code, text))

        if settings.http_signer_disabled:
            return deliver_failure(403, "the signing service is disabled on this computer (HTTPSignerDisabled=1)")
        if not origin_allowed(origin, settings.allowed_origins):
            return deliver_failure(403, f"origin {origin} is not allowed (allowedOrigins)")
        try:
            scs_request = parse_request(self._fields(form))
        except ScsFailure as exc:
            return deliver_failure(exc.code, exc.text)
        del form  # the task holds what it needs: an upload must not outlive its operation through this frame
        self._expire()
        key = secrets.token_urlsafe(24)
        shown: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def present(url: str) -> None:
            if not shown.done():
                shown.set_result(url)

        log.info("WebSigner request from %s: %s, %d bytes", inert_line(origin), scs_request.signature_type,
                 len(scs_request.content))
        task = asyncio.create_task(self._operation(scs_request, origin, present, f"/websigner/result/{key}"))
        del scs_request
        try:
            await asyncio.wait({task, shown}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the client went away before its dialog: the operation goes with it
            task.cancel()
            raise
        if task.done():
            return self._deliver(origin, return_url, state, mode, task.result())
        self._pending[key] = _Pending(origin, return_url, state, mode, task, time.monotonic())
        # The dialog opens in this very tab; the key in the fragment follows the redirect.
        return web.Response(status=303, headers={"Location": shown.result(), "Cache-Control": "no-store",
                                                 "Referrer-Policy": "no-referrer"})

    async def _operation(self, scs_request: ScsRequest, origin: str, present: Callable[[str], None],
                         after: str) -> dict[str, Any]:
        """The signing operation, ending in an answer dict whatever happens (see _Pending)."""
        version = self.settings.scs_version
        try:
            service = await self.core.service()
            return await service.sign(scs_request, origin, present=present, after=after)
        except ScsFailure as exc:
            return failure(version, exc.code, exc.text)
        except Exception:
            log.exception("WebSigner: internal error")
            return failure(version, 500, "internal error; see the server log")

    async def _outcome(self, task: asyncio.Task[dict[str, Any]]) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.dialog_timeout + 5)
        except TimeoutError as exc:
            return scs_failure_for(exc).answer(self.settings.scs_version)

    async def result(self, request: web.Request) -> web.Response:
        """Where the dialog tab goes when the dialog is done: the result, delivered to the relying party."""
        if not top_level_navigation(request):
            return _page(403, "Request refused", "The result is delivered only to the dialog's own tab.")
        pending = self._pending.pop(request.match_info["key"], None)
        if pending is None:
            return _page(410, "Nothing to deliver", "This result was already delivered or has expired.")
        return self._deliver(pending.origin, pending.return_url, pending.state, pending.mode,
                             await self._outcome(pending.task))

    def _expire(self) -> None:
        now = time.monotonic()
        for key, pending in list(self._pending.items()):
            if pending.task.done() and now - pending.created > RESULT_TTL + self.settings.dialog_timeout:
                self._pending.pop(key, None)

    # -- delivery --------------------------------------------------------------------------------
    def _deliver(self, origin: str, return_url: str, state: str | None, mode: str,
                 result: dict[str, Any]) -> web.Response:
        if isinstance(result.get("signature"), bytes | bytearray):  # the service answers raw bytes
            result = {**result, "signature": base64.b64encode(result["signature"]).decode("ascii")}
        fields: list[tuple[str, str]] = [(name, str(result[name])) for name in RESULT_FIELDS if name in result]
        fields += [("chain", c) for c in result.get("chain", [])]
        if state is not None:
            fields.append(("state", state))
        if mode == "post_message":
            payload = {**result, **({"state": state} if state is not None else {})}
            data = inline_json({"origin": origin, "result": payload})
            body = (f'<script type="application/json" id="websigner-result">{data}</script>'
                    '<p class="hint" id="websigner-status">Returning the result to the page…</p>')
            return _page(200, "Signature result", body, raw=True, form_action="'none'")
        inputs = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields)
        ok = result.get("status") == "ok"
        body = (f'<form id="websigner-form" method="post" action="{html.escape(return_url)}">{inputs}'
                f'<p class="result {"ok" if ok else "bad"}">{"Signed." if ok else "Not signed: " + html.escape(str(result.get("reasonText", "")))}</p>'  # noqa: E501
                '<p class="hint">Returning to the page that asked…</p>'
                '<noscript><button type="submit" class="primary">Continue</button></noscript></form>')
        return _page(200, "Signature result", body, raw=True, form_action=origin)


def _page(status: int, title: str, body: str, raw: bool = False, form_action: str = "'none'") -> web.Response:
    content = body if raw else f'<p class="error">{html.escape(body)}</p>'
    text = shell(title, f"<h1>{html.escape(title)}</h1>{content}", body_class="dialog", script="websigner.js")
    return page("websigner", text, status=status, form_action=form_action)


def add_routes(app: web.Application) -> None:
    websigner = WebSigner(app[SETTINGS], app[CORE])
    app.router.add_route("POST", "/websigner", websigner.start)
    app.router.add_route("GET", "/websigner", websigner.start)
    app.router.add_get("/websigner/result/{key}", websigner.result)
