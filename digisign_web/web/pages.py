"""Pages and static files: one HTML shell, one template filler, and one CSP per page kind.

Every page this server shows gets its headers from :func:`page_headers`, so a page kind's policy is
written once. Static files are scripts and style sheets only; the HTML files under ``static/`` are
templates that the routes fill in and serve with their headers, never raw.
"""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from aiohttp import web

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}

# Headers every answer carries unless its handler set its own: no framing, no MIME sniffing.
FRAME_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
                 "Content-Security-Policy": "frame-ancestors 'none'"}

_BASE = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_CSP = {
    # The playground talks to this server and to the SCS ports of localhost (it is an SCS client too).
    "playground": "script-src 'self'; style-src 'self'; img-src 'self' data:; "
                  "connect-src 'self' https://localhost:* https://127.0.0.1:*; form-action 'self'",
    # The signing dialog: own scripts, own API, no forms.
    "dialog": "script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'",
    # The "My card" page (D48): own scripts, own API, forms only through its script.
    "card": "script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'",
    # WebSigner pages: the only form goes back to the relying party (form_action).
    "websigner": "script-src 'self'; style-src 'self'; form-action {form_action}",
    # Reports with no script at all.
    "report": "style-src 'self'; form-action 'none'",
}


def csp(kind: str, form_action: str = "'none'") -> str:
    """The Content-Security-Policy of a page kind."""
    return f"{_BASE}; " + _CSP[kind].format(form_action=form_action)


def page_headers(kind: str, *, referrer: str = "no-referrer", form_action: str = "'none'") -> dict[str, str]:
    """The security headers of a page kind (also sent with that page's API answers)."""
    return {"Content-Security-Policy": csp(kind, form_action), "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": referrer, "Cache-Control": "no-store"}


def static_dir() -> Path:
    """The installed ``static`` package: the public scripts, the pages' scripts and the templates."""
    return Path(str(resources.files("static")))


def template(name: str, **values: str) -> str:
    """A page template from ``static/`` with ``{{key}}`` filled in, each value HTML-escaped."""
    text = (static_dir() / name).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", html.escape(value))
    return text


def shell(title: str, body: str, *, body_class: str, main_class: str = "card", script: str | None = None) -> str:
    """The one HTML shell of generated pages. ``body`` is HTML the caller has made inert; ``title`` is text."""
    brand = ('<header class="brand"><span class="logo" aria-hidden="true">✍</span><span>digisign-web</span></header>'
             if main_class == "card" else "")
    scripts = f'<script src="/static/{script}"></script>' if script else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} – digisign-web</title>"
            f'<link rel="stylesheet" href="/static/ui.css"></head><body class="{body_class}">'
            f'<main class="{main_class}">{brand}{body}</main>{scripts}</body></html>')


def page(kind: str, text: str, *, status: int = 200, referrer: str = "no-referrer",
         form_action: str = "'none'") -> web.Response:
    """An HTML answer with its page kind's headers."""
    return web.Response(status=status, text=text, content_type="text/html",
                        headers=page_headers(kind, referrer=referrer, form_action=form_action))


def add_static_routes(app: web.Application) -> None:
    """``/static/<name>`` for scripts and style sheets only, readable from any origin (``import`` of
    scs.mjs by an e-service page)."""
    files = {path.name: path for path in static_dir().iterdir() if path.suffix in STATIC_TYPES}

    async def static_file(request: web.Request) -> web.FileResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": STATIC_TYPES[path.suffix],
                                               "Access-Control-Allow-Origin": "*",
                                               "Cross-Origin-Resource-Policy": "cross-origin",
                                               "Cache-Control": "no-cache"})

    app.router.add_get("/static/{name}", static_file)
