"""Page-supplied text made inert: the one place that decides what a web page (or a header) may show the user.

A page's ``info`` and the ``Origin`` header reach the terminal, the logs and the web dialog. Raw, an ANSI
escape can erase the real origin on a terminal and print another, a bidi override can turn
``https://evil.example`` into something that reads like another address, and two thousand newlines can push
the origin off the screen. Everything shown is therefore passed through :func:`inert` first:

* C0 and C1 control characters (ESC, CR, BEL, DEL, ...) become visible: C0 as their Unicode control
  pictures (ESC shows as ``␛``), C1 as ``�``; a tab becomes a space, CR and other line breaks become ``\\n``;
* invisible format characters are dropped: the bidi embeddings, overrides and isolates U+202A–U+202E and
  U+2066–U+2069, the marks U+200E, U+200F and U+061C, zero-width spaces, BOMs and tag characters, ... (all
  of Unicode category Cf except the zero-width joiners U+200C and U+200D, which emoji and Indic scripts need);
* lone surrogates (undecodable header bytes) become ``�``, so the text can always be encoded;
* trailing blanks go, runs of empty lines collapse into one, and past ``lines`` lines the rest is joined
  with spaces;
* the result is cut to ``limit`` characters, with ``…`` marking the cut.

The same cleaned text goes to every face (terminal, log, web page), so the user sees the same words
everywhere. The web page still inserts it as text, never as HTML.
"""

from __future__ import annotations

import unicodedata

INFO_LIMIT = 500  # characters of a page's ``info`` that are ever shown; the rest is cut, never interpreted
INFO_LINES = 12  # lines of ``info`` shown as lines; further line breaks become spaces
LINE_LIMIT = 300  # characters of a one-line value from outside (the Origin header, a certificate subject)

_KEEP_FORMAT = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: needed by scripts and emoji, and harmless to layout
_LINE_BREAKS = frozenset("\r\x0b\x0c\x85\u2028\u2029")


def _char(ch: str) -> str:
    code = ord(ch)
    if ch == "\n":
        return ch
    if ch in _LINE_BREAKS:
        return "\n"
    if ch == "\t":
        return " "
    if code < 0x20:
        return chr(0x2400 + code)  # the control picture: ESC shows as ␛, never acts
    if code == 0x7F:
        return "\u2421"  # ␡
    if 0x80 <= code <= 0x9F:
        return "\ufffd"  # C1 controls have no pictures (0x9B is a one-byte CSI on some terminals)
    category = unicodedata.category(ch)
    if category == "Cf":
        return ch if ch in _KEEP_FORMAT else ""
    if category == "Cs":
        return "\ufffd"
    return ch


def inert(text: str | None, limit: int = INFO_LIMIT, lines: int = INFO_LINES) -> str:
    """``text`` safe to print on a terminal, write to a log or show on a page (see the module docstring).

    ``lines=1`` gives a single line (for an origin or a name). None and blank text give "".
    """
    if not text:
        return ""
    head = text[: limit * 4 + 16].replace("\r\n", "\n")  # more is never shown: don't scan it
    # Printable ASCII (an origin, most names) is already inert: only other text is looked at by character.
    cleaned = head if head.isascii() and head.isprintable() else "".join(_char(ch) for ch in head)
    kept: list[str] = []
    for line in cleaned.split("\n"):
        line = line.rstrip()
        if line or (kept and kept[-1]):  # one empty line at most between paragraphs
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    if len(kept) > lines:
        kept[lines - 1:] = [" ".join(line.strip() for line in kept[lines - 1:] if line)]
    result = "\n".join(kept)
    return result if len(result) <= limit else result[: limit - 1].rstrip() + "…"


def inert_line(text: str | None, limit: int = LINE_LIMIT) -> str:
    """One line of outside text (an origin, a certificate name) made inert, for prompts and log lines."""
    return inert(text, limit, lines=1)
