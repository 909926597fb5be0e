"""Parsing an SCS ``/sign`` request (JSON body or query string) into a typed :class:`ScsRequest`."""

from __future__ import annotations

import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from card.crypto import HASH_NAMES
from digisign_web.scs.errors import ScsFailure, SelectorError, scs_failure_for
from digisign_web.scs.selector import Selector, parse_selector
from digisign_web.signing import formats
from digisign_web.text import inert

log = logging.getLogger(__name__)

ACCEPTED_VERSIONS = ("1.0", "1.0.1", "1.1", "1.2")
HASH_LIST = ", ".join(HASH_NAMES)  # /version's hashAlgorithms


@dataclass(frozen=True)
class ScsRequest:
    content: bytes
    content_type: str
    hash_algorithm: str
    signature_type: str
    selector: Selector
    info: str | None
    version: str | None

    @property
    def sign_request(self) -> formats.SignRequest:
        return formats.SignRequest(self.content, self.content_type, self.hash_algorithm)


def _string(fields: Mapping[str, Any], name: str, default: str | None) -> str | None:
    value = fields.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ScsFailure(400, f"'{name}' must be a string")
    return value


def decode_base64(text: str, name: str = "content") -> bytes:
    """Standard base64; whitespace and line breaks (MIME style) are tolerated, nothing else is.

    The strict decoder validates as it decodes, in one pass over the text; only text it refuses is
    looked at again, with its whitespace removed (a copy that ordinary requests never pay for)."""
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    compact = "".join(text.split())
    try:
        return binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ScsFailure(400, f"'{name}' is not valid base64 ({exc})") from None


def parse_request(fields: Mapping[str, Any], from_query: bool = False) -> ScsRequest:
    """Validate the request fields (400 with the field named). Unknown fields are ignored."""
    version = fields.get("version")
    if isinstance(version, int | float) and not isinstance(version, bool):
        version = str(version)
    if version is not None and version not in ACCEPTED_VERSIONS:
        raise ScsFailure(400, f"unsupported 'version' {version!r}; accepted: {', '.join(ACCEPTED_VERSIONS)}")
    raw = fields.get("content")
    if raw is None:
        raise ScsFailure(400, "'content' is missing")
    if not isinstance(raw, str):
        raise ScsFailure(400, "'content' must be a base64 string")
    if from_query:
        raw = raw.replace(" ", "+")  # a '+' that arrived form-decoded as a space
    content = decode_base64(raw)
    content_type = _string(fields, "contentType", "data") or "data"
    hash_algorithm = (_string(fields, "hashAlgorithm", "SHA256") or "SHA256").upper().replace("-", "")
    signature_type = _string(fields, "signatureType", "signature") or "signature"
    info = _string(fields, "info", None)
    selector_value = fields.get("selector")
    if from_query and isinstance(selector_value, str):
        try:
            selector_value = json.loads(selector_value)
        except ValueError:
            raise ScsFailure(400, "'selector' must be a JSON object (URL-encoded in a GET request)") from None
    try:
        selector = parse_selector(selector_value, fields.get("strictKeyPolicy"))
    except SelectorError as exc:
        raise scs_failure_for(exc) from None
    # info is the page's free text: kept only as shown, inert and capped at INFO_LIMIT (text.py)
    request = ScsRequest(content, content_type, hash_algorithm, signature_type, selector, inert(info) or None, version)
    try:
        formats.preflight(signature_type, request.sign_request)
    except formats.FormatError as exc:
        raise scs_failure_for(exc) from None
    return request


MAX_JSON_DEPTH = 32  # an SCS request nests 3 deep (object, selector, list)


def parse_json(body: bytes | bytearray) -> dict[str, Any]:
    """A JSON object, or ScsFailure(400), also for JSON nested deeper than MAX_JSON_DEPTH (which could
    otherwise exhaust the parser's recursion and answer 500). A bytearray body is emptied."""
    too_deep = ScsFailure(400, f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels")
    brackets = body.count(b"[") + body.count(b"{")
    try:
        # Decoded first and, for a bytearray, emptied before parsing: json.loads would keep the body, its
        # decoded text and the parsed content string alive at once (three copies of a large document).
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        if isinstance(body, bytearray):
            body.clear()
        value = json.loads(text)
        del text
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScsFailure(400, f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise too_deep from None
    # Depth-first with one iterator per level (no recursion, memory O(depth)); skipped when the body has
    # too few brackets to nest that deep, as every ordinary request (base64 has none).
    stack = [iter((value,))] if brackets > MAX_JSON_DEPTH else []
    while stack:
        for item in stack[-1]:
            if isinstance(item, dict | list):
                if len(stack) > MAX_JSON_DEPTH:
                    raise too_deep
                stack.append(iter(item.values() if isinstance(item, dict) else item))
                break
        else:
            stack.pop()
    if not isinstance(value, dict):
        raise ScsFailure(400, "the request body must be a JSON object")
    return value


