"""DigiSign's wildcard lists (``excludeReader``, ``validTokenInfoLabel``, ``allowedOrigins``): one matcher.

A list is space-separated patterns; ``*`` matches any run (newlines included), a pattern without ``*`` must
match the whole text, and case is ignored. A space always separates patterns, so a name with spaces is
matched with ``*`` (``"*PCD*01"``). The card layer knows nothing of these lists: it receives the predicate
that :func:`matcher` builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@lru_cache(maxsize=128)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.IGNORECASE | re.DOTALL)


def matches_wildcards(patterns: str, text: str) -> bool:
    """Whether ``text`` matches any pattern of the space-separated list ``patterns``."""
    return any(_regex(p).fullmatch(text) for p in patterns.split())


@dataclass(frozen=True)
class WildcardList:
    """A wildcard list as the predicate the card layer takes; ``str()`` names the setting for messages."""

    patterns: str
    setting: str = "wildcards"

    def __call__(self, text: str) -> bool:
        return matches_wildcards(self.patterns, text)

    def __str__(self) -> str:
        return f"{self.setting} {self.patterns!r}"


def matcher(patterns: str, setting: str = "wildcards") -> WildcardList | None:
    """A predicate for ``patterns``, or None for an empty list (which means "no filter", not "nothing")."""
    if not patterns.split():
        return None
    return WildcardList(patterns, setting)


def origin_allowed(origin: str | None, patterns: str) -> bool:
    """Whether ``origin`` is on an ``allowedOrigins`` list.

    ``null`` is the origin of sandboxed frames, ``file:`` pages and some redirects: it identifies nobody,
    so only the explicit pattern ``null`` admits it, never a wildcard. A missing origin is not allowed.
    """
    if not origin:
        return False
    if origin.casefold() == "null":
        return any(word.casefold() == "null" for word in patterns.split())
    return matches_wildcards(patterns, origin)
