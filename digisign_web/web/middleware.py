"""The request guard every route passes: Host check, CORS for SCS only, refusal of cross-site requests.

D3 (CORS for the SCS endpoints, never credentials), D1 (the Host check against DNS rebinding) and D29
(Origin checks against other sites; pages answer only their own pages; a link may still open one in a tab).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from digisign_web.scs.errors import failure
from digisign_web.text import inert_line
from digisign_web.web.keys import SETTINGS
from digisign_web.web.limits import connection_of
from digisign_web.web.pages import FRAME_HEADERS
from digisign_web.wildcards import origin_allowed

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SCS_PATHS = ("/version", "/sign")  # CORS for the origins allowedOrigins admits
CROSS_ORIGIN_PATHS = ("/websigner",)  # forms from relying parties: its handler checks the sender
NAVIGABLE = ("/", "/dialog/{token}")  # pages a link on another site may open in a tab (never in a frame)


def _host_ok(request: web.Request) -> bool:
    """DNS-rebinding defence: the Host header must name loopback and the port we were reached on."""
    host = request.headers.get("Host", "")
    if host.startswith("["):
        name, _, port = host.partition("]")
        name, port = name + "]", port.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    if name.lower() not in LOOPBACK_NAMES:
        return False
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not sockname:
        return True  # in-memory test transport: no socket to compare with
    return (port or ("443" if request.secure else "80")) == str(sockname[1])


def own_origins(request: web.Request) -> set[str]:
    """This server's origins as a browser names them: the scheme and port the request came in on."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = str(sockname[1]) if sockname else request.host.rpartition(":")[2]
    names = {f"{request.scheme}://{name}:{port}" for name in LOOPBACK_NAMES}
    if port == ("443" if request.secure else "80"):
        names |= {f"{request.scheme}://{name}" for name in LOOPBACK_NAMES}
    return names


def cross_site(request: web.Request) -> bool:
    """Whether a browser sent this request on behalf of another site, or of another port of localhost.

    ``Sec-Fetch-Site`` decides where the browser sends it; ``Origin`` where it does not (and an Origin
    naming someone else is refused either way). ``Origin: null`` passes only with ``same-origin``: that is
    our own result page's form post under ``Referrer-Policy: no-referrer``.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site not in (None, "same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None or origin in own_origins(request):
        return False
    return not (origin == "null" and site == "same-origin")


def top_level_navigation(request: web.BaseRequest) -> bool:
    """Whether the request is a browser tab navigating to a document (or a client that sends no fetch metadata).

    An ``<img>``, a ``no-cors`` fetch, a script or a frame says so in ``Sec-Fetch-Mode``/``Sec-Fetch-Dest``;
    old browsers and non-browser clients send no ``Sec-Fetch-*`` header at all and are judged by other means.
    """
    headers = request.headers
    if not any(name.lower().startswith("sec-fetch-") for name in headers):
        return True
    return headers.get("Sec-Fetch-Mode") == "navigate" and headers.get("Sec-Fetch-Dest") == "document"


def _top_level_get(request: web.Request) -> bool:
    return request.method == "GET" and top_level_navigation(request)


def _harden(response: web.StreamResponse) -> None:
    """Headers every answer carries unless its handler chose its own: no framing, no MIME sniffing."""
    for name, value in FRAME_HEADERS.items():
        response.headers.setdefault(name, value)


def _scs_cors(response: web.StreamResponse, request: web.Request, origin: str | None, allowed: bool) -> None:
    """CORS (D3) for the SCS endpoints, for origins that allowedOrigins admits; never credentials."""
    response.headers["Vary"] = "Origin"
    if not (origin and allowed):
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = request.headers.get(
            "Access-Control-Request-Headers", "Content-Type, Accept")
        response.headers["Access-Control-Max-Age"] = "600"
        if request.headers.get("Access-Control-Request-Private-Network"):
            response.headers["Access-Control-Allow-Private-Network"] = "true"


_CORS = web.RequestKey("cors", tuple)  # (origin, allowed) of an SCS request


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Last headers, set just before they are sent, so that answers a handler streams (prepared inside the
    handler, e.g. a large signature) carry them too: CORS on the SCS paths, and the hardening defaults."""
    cors = request.get(_CORS)
    if cors is not None:
        _scs_cors(response, request, *cors)
    _harden(response)


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Host check for every path; CORS on the SCS endpoints only; every other route except the static
    files and the WebSigner entry refuses cross-site requests (a link may still open a page in a tab)."""
    settings = request.app[SETTINGS]
    connection = connection_of(request)
    if connection is not None:
        connection.request_started(request)  # the head is in: from here the body timeouts apply
    try:
        if not _host_ok(request):
            log.warning("refused a request with Host %r (DNS rebinding?)", request.headers.get("Host"))
            # SCS clients read failures from a 200 JSON body; other paths get a plain 403.
            response: web.StreamResponse = web.json_response(
                failure(settings.scs_version, 403, "the Host header does not name this local server (localhost, "
                                                   "127.0.0.1 or [::1])"),
                status=200 if request.path in SCS_PATHS else 403)
        elif request.path in SCS_PATHS:
            origin = request.headers.get("Origin")
            allowed = origin is not None and origin_allowed(origin, settings.allowed_origins)
            request[_CORS] = (origin, allowed)  # applied as the answer is prepared (on_prepare)
            if request.method == "OPTIONS" and not allowed:
                response = web.Response(status=403, text="origin not allowed (allowedOrigins)")
            else:
                response = await handler(request)
        elif request.path.startswith("/static/") or request.path in CROSS_ORIGIN_PATHS:
            response = await handler(request)
        elif cross_site(request) and not (_route(request) in NAVIGABLE and _top_level_get(request)):
            log.warning("refused a cross-site request for %s (Origin %s, Sec-Fetch-Site %s)", inert_line(request.path),
                        inert_line(request.headers.get("Origin")), inert_line(request.headers.get("Sec-Fetch-Site")))
            response = web.Response(status=403, text="This server's pages answer only its own pages.",
                                    headers={"Cache-Control": "no-store"})
        else:
            response = await handler(request)
    finally:
        if connection is not None:
            connection.request_done()
    return response  # hardened, and given CORS on the SCS paths, by on_prepare as it is sent


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None
