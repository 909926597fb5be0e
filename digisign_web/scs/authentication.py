"""The SCS v1.1 authentication-key rule (D22): what the authentication key (PIN1) may sign for an origin.

Pure, with no HTTP and no card I/O: ``data`` that starts with the requesting origin, a separator and a nonce
of at least 64 octets (see :func:`check_authentication_content` for the separator D22 as amended requires).
"""

from __future__ import annotations

AUTH_NONCE_MIN = 64  # octets after the origin and its separator (mPollux; v1.3 says ">= 64 octets")
_AUTH_SEPARATORS = (b";", b"\n")


def check_authentication_content(origin: str | None, content_type: str, content: bytes) -> str | None:
    """The SCS v1.1 authentication-key rule (D22): None if the content may be signed, else why not.

    The content must be ``data`` that starts with the exact ``Origin`` bytes (UTF-8), then ``;`` (v1.3)
    or LF (puumerkki/mPollux), then at least 64 octets of nonce.

    D22 as amended on 2026-11-30: the separator is **required**. Without one the content
    is ambiguous, because a nonce is typically hex, and hex continues a host name: ``https://a.fi``
    followed by ``0123…`` reads equally as the origin ``https://a.fi0123…``. So a page at
    ``https://a.fi.evil.example`` could obtain a signature over ``https://a.fi.evil.example…`` that a
    relying party at ``https://a.fi`` checking "starts with my origin" would accept. With a mandatory
    separator, "starts with my origin + separator" is a sound check. The opaque origin ``null`` is
    refused too: it binds the signature to no site at all.
    """
    if not origin:
        return "an authentication requires an Origin header, which binds the signed content to the site"
    if origin.casefold() == "null":
        return "an authentication cannot be bound to the opaque origin 'null'"
    if content_type != "data":
        return f"the authentication key signs only contentType 'data', not {content_type!r}"
    try:
        prefix = origin.encode("utf-8")
    except UnicodeEncodeError:
        return "the Origin header is not valid text"
    if not content.startswith(prefix):
        return f"the content must start with the requesting origin {origin!r}"
    separator = content[len(prefix):len(prefix) + 1]
    if separator not in _AUTH_SEPARATORS:
        return f"the origin {origin!r} in the content must be followed by ';' or a line feed"
    nonce = len(content) - len(prefix) - 1
    if nonce < AUTH_NONCE_MIN:
        return f"the content needs at least {AUTH_NONCE_MIN} octets after the origin and separator, not {nonce}"
    return None
