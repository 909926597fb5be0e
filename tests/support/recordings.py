"""The recorded real FINEID cards in tests/data/recordings (Web eID's libelectronic-id traces, MIT)."""

from __future__ import annotations

import json

from tests.support.paths import RECORDINGS

MESSAGE = b"Hello world!"  # what the recorded signatures are over (libelectronic-id's dataToSign)


def recorded_certificates(name: str) -> dict[str, bytes]:
    """The certificate bytes as the real card sent them, joined from the recorded READ BINARY answers."""
    doc = json.loads((RECORDINGS / f"{name}.json").read_text())
    out = {}
    for script, steps in doc["scripts"].items():
        role = "authentication" if "AUTH" in script else "signature"
        out[role] = b"".join(bytes.fromhex(s["response"])[:-2] for s in steps
                             if bytes.fromhex(s["command"])[1] == 0xB0)
    return out
