"""The SCS endpoints: ``GET /version`` (D6–D8) and ``GET|POST /sign`` (D4, D9, D16); failures are JSON
with HTTP 200 (D5)."""

from __future__ import annotations

import binascii
import json
import logging
from typing import Any

from aiohttp import web

from digisign_web.scs.errors import ScsFailure, failure
from digisign_web.scs.version import version_payload
from digisign_web.settings import Settings
from digisign_web.text import inert_line
from digisign_web.web.keys import CORE, SETTINGS
from digisign_web.web.limits import BodyTooLarge, read_limited
from digisign_web.web.middleware import SCS_PATHS
from digisign_web.wildcards import origin_allowed

log = logging.getLogger(__name__)


NO_STORE = {"Cache-Control": "no-store"}


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data, headers=NO_STORE)


_SIGNATURE_MARK = "\x00signature\x00"
_SIGNATURE_MARK_JSON = b'\\u0000signature\\u0000'
ANSWER_CHUNK = 3 << 20  # raw bytes per base64 piece: a multiple of 3, so that the pieces concatenate


async def _signed(request: web.Request, result: dict[str, Any]) -> web.StreamResponse:
    """The success answer, written as bytes in the mPollux field order. The signature (raw bytes from the
    service, as large as the document for attached types) is base64-encoded piece by piece straight into
    the response, each piece written once the connection has taken the last: neither the whole base64 text
    nor its whole TLS ciphertext is ever held."""
    signature = memoryview(result["signature"])
    # One json.dumps of every other member, in order, split where the signature goes (the mark is a string
    # that no other member, all written by this server, contains).
    head, tail = json.dumps({**result, "signature": _SIGNATURE_MARK}).encode().split(_SIGNATURE_MARK_JSON)
    del result["signature"]
    if len(signature) <= ANSWER_CHUNK:  # the usual answer: one body, one write
        body = b"".join((head, binascii.b2a_base64(signature, newline=False), tail))
        return web.Response(body=body, headers={**NO_STORE, "Content-Type": "application/json; charset=utf-8"})
    response = web.StreamResponse(headers={**NO_STORE, "Content-Type": "application/json; charset=utf-8"})
    response.content_length = len(head) + 4 * ((len(signature) + 2) // 3) + len(tail)
    await response.prepare(request)
    await response.write(head)
    for start in range(0, len(signature), ANSWER_CHUNK):
        await response.write(binascii.b2a_base64(signature[start:start + ANSWER_CHUNK], newline=False))
    await response.write(tail)
    await response.write_eof()
    return response


async def version(request: web.Request) -> web.Response:
    service = request.app[CORE].loaded  # None for a moment after start: no card read yet (D7, D69)
    return _json(version_payload(service.state.summaries() if service else (), request.app[SETTINGS].scs_version))


def _origin(request: web.Request, settings: Settings) -> str | None:
    """The requesting origin, or ScsFailure(403). No Origin is accepted only from non-browser clients."""
    origin = request.headers.get("Origin")
    if origin is None:
        fetch_site = request.headers.get("Sec-Fetch-Site")
        if fetch_site not in (None, "none", "same-origin"):
            # A browser navigation from another site (e.g. a GET /sign link) carries no Origin: refuse it.
            raise ScsFailure(403, "a cross-site browser request without an Origin header is refused")
        return None
    if not origin_allowed(origin, settings.allowed_origins):
        raise ScsFailure(403, f"origin {origin} is not allowed (allowedOrigins)")
    return origin


async def _read_body(request: web.Request, limit: int) -> bytearray:
    """The body, or 413 without reading it all when it is larger than the limit."""
    try:
        return await read_limited(request, limit)
    except BodyTooLarge as exc:
        raise ScsFailure(413, str(exc)) from None


async def sign(request: web.Request) -> web.Response:
    # Loaded with the signing service (D69): the first request after start waits for both.
    from digisign_web.scs.request import parse_json, parse_request

    settings = request.app[SETTINGS]
    origin = request.headers.get("Origin")
    try:
        origin = _origin(request, settings)
        if request.method == "GET":
            scs_request = parse_request(dict(request.query), from_query=True)
        elif request.method == "POST":
            if request.content_type == "application/jwt":
                raise ScsFailure(501, "the SCS 1.3 JWS/JWE transaction flow is not implemented")
            body = await _read_body(request, settings.max_request_bytes)
            fields = parse_json(body)
            del body  # keep peak memory near the payload size: the JSON text is no longer needed
            scs_request = parse_request(fields)
            del fields
        else:
            raise ScsFailure(400, f"method {request.method} is not used by SCS")
        what = (f"{scs_request.signature_type}/{scs_request.content_type}/{scs_request.hash_algorithm}, "
                f"{len(scs_request.content)} bytes")
        log.debug("sign request from %s: %s", inert_line(origin) or "(no origin)", what)
        service = await request.app[CORE].service()  # a refused or malformed request never waits for it
        result = await service.sign(scs_request, origin)
        del scs_request  # the answer carries what it needs: the document is released before it is written
        log.info("sign request from %s: %s: signed", inert_line(origin) or "(no origin)", what)
    except ScsFailure as exc:
        log.info("sign request from %s: failed %d: %s", inert_line(origin) or "(no origin)", exc.code,
                 inert_line(exc.text, 1000))  # header text (the origin) inert in the log, see text.py
        return _json(failure(settings.scs_version, exc.code, exc.text))
    except Exception:
        log.exception("internal error while signing")
        return _json(failure(settings.scs_version, 500, "internal error; see the server log"))
    # Outside the try: once the answer has started, a client that goes away is not a signing error, and no
    # second answer can follow the first.
    return await _signed(request, result)


async def preflight(request: web.Request) -> web.Response:
    return web.Response(status=204)  # the middleware adds the CORS headers


def add_routes(app: web.Application) -> None:
    app.router.add_get("/version", version)
    app.router.add_route("GET", "/sign", sign)
    app.router.add_route("POST", "/sign", sign)
    for path in SCS_PATHS:
        app.router.add_route("OPTIONS", path, preflight)
