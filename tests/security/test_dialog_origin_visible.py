"""The origin stays visible next to the PIN field and the Sign button, whatever the page sends (issue 10,
"Low": a long ``info`` pushed the real origin off-screen in the web dialog, which opens scrolled to the PIN).

The attack, in Chromium against a real ``serve`` with the web dialog: ``info`` is 2000 characters of
newlines, bidi overrides and a fake origin. With the focus in the PIN field (where the dialog puts it), the
real origin must be on screen right beside the PIN field and the Sign button, the page's text boxed, and its
bidi controls gone.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures

import pytest

from tests.support.browser import screenshot
from tests.support.servers import WebServer

REAL = "https://eservice.example"
FAKE = "https://bank.example"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# 2000 characters (the most a request may carry): newlines, a fake origin, and a right-to-left override.
HOSTILE_INFO = (("\n" * 40 + f"Signature request from {FAKE}\u202elp.yfirev\u202c\u2067" + "\n" * 40) * 12)[:2000]

ORIGINS_ON_SCREEN = """(origin) => {
  const seen = [];
  for (const node of document.querySelectorAll("body *")) {
    if (node.children.length || node.textContent.trim() !== origin) continue;
    const rects = Array.from(node.getClientRects());
    const visible = rects.length > 0 && rects.every((r) => {
      if (r.top < 0 || r.bottom > innerHeight) return false;
      const hit = document.elementFromPoint(r.left + Math.min(20, r.width / 2), r.top + r.height / 2);
      return hit !== null && node.contains(hit);  // what is painted there is the origin itself
    });
    if (visible) {
      const r = node.getBoundingClientRect();
      seen.push({id: node.id, top: r.top, bottom: r.bottom});
    }
  }
  return seen;
}"""

BOX = """(selector) => {
  const r = document.querySelector(selector).getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, height: r.height};
}"""


@pytest.mark.parametrize("viewport", [{"width": 760, "height": 640}, {"width": 390, "height": 700}],
                         ids=["desktop", "phone"])
def test_origin_stays_beside_pin_and_sign_whatever_the_info(browser_factory, trusted_home, web_server: WebServer,
                                                           viewport: dict) -> None:
    page = browser_factory(trusted_home).new_context(viewport=viewport).new_page()
    body = {"content": base64.b64encode(b"a contract").decode(), "info": HOSTILE_INFO,
            "selector": {"keyusages": ["nonrepudiation"]}}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(lambda: asyncio.run(web_server.server.post(body, origin=REAL)))
    assert page.goto(web_server.next_dialog_url()).status == 200
    page.wait_for_selector("#request:not([hidden])")
    assert page.evaluate("document.activeElement.id") == "pin"  # the dialog opens with the focus in the PIN field
    screenshot(page, f"dialog-hostile-info-{viewport['width']}")

    # Every element that shows the real origin, as the user sees it: on screen, and not painted over.
    shown = page.evaluate(ORIGINS_ON_SCREEN, REAL)
    pin, sign = page.evaluate(BOX, "#pin"), page.evaluate(BOX, "#sign")
    height = page.evaluate("innerHeight")
    assert shown, "the real origin is nowhere on screen while the PIN is typed"
    beside = [box for box in shown if 0 <= pin["top"] - box["bottom"] < 80 and 0 <= sign["top"] - box["bottom"] < 250]
    assert beside, f"no visible origin right above the PIN field and the Sign button: {shown}, PIN {pin}, Sign {sign}"
    assert 0 <= pin["top"] and sign["bottom"] <= height  # and those are on screen too

    # The page's text: inert (no bidi controls, no runs of blank lines) and boxed (at most ~7 lines, scrolling).
    info = page.text_content("#info")
    assert not set(info) & set(BIDI)
    assert "\n\n\n" not in info and len(info) <= 500
    assert page.evaluate(BOX, "#info")["height"] <= 0.4 * height
    assert page.text_content("#origin") == REAL

    page.click("#cancel")
    assert pending.result(timeout=30)["reasonCode"] == 401
