"""Inline JSON is inert (issue 10, item 5): a WebSigner ``state`` of ``<!--<script>`` is delivered exactly.

The attack: the ``post_message`` result page carries its result as JSON inside a ``<script>`` element. Only
``</`` was escaped, so ``<!--<script>`` in the page-supplied ``state`` put the HTML parser into its
"script data double escaped" state: the element swallowed the rest of the page, the page's own script never
ran, and the relying party got nothing (and a page could shape what the result page parses).

Replayed in Chromium: the relying party's pop-up flow with that state, and others that try to end, comment out
or restart the element, must receive exactly the state it sent, through ``postMessage``.
"""

from __future__ import annotations

import json

from tests.support.relying_party import RelyingParty, answer_dialog, form_fields

# The state first; then one that ends the element, and one that comments out and restarts it.
STATES = ["<!--<script>", "</script><script>alert(1)</script>", "<!--<script></script>-->&amp;\u2028\u2029 ok"]


def test_post_message_delivers_the_exact_state(rp_page, relying_party: RelyingParty) -> None:
    for state in STATES:
        form_fields(relying_party, b"post message", "signature", responseMode="post_message", state=state)
        rp_page.goto(relying_party.origin + "/popup")
        with rp_page.expect_popup() as popup_info:
            rp_page.click("#go")
        popup = popup_info.value
        answer_dialog(popup)
        rp_page.wait_for_function("document.getElementById('out').textContent.length > 0", timeout=20000)
        if not popup.is_closed():
            popup.wait_for_event("close")  # the result page closes itself; the next round opens a new one
        message = json.loads(rp_page.text_content("#out"))
        assert message["origin"].startswith("https://localhost:")
        assert message["data"]["status"] == "ok"
        assert message["data"]["state"] == state
