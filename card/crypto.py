"""Algorithms every layer shares: ECDSA signature encodings (and, below, the one hash table)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import utils


def ecdsa_raw_to_der(raw: bytes) -> bytes:
    """r||s (what FINEID returns, and XMLDSig wants) to DER Ecdsa-Sig-Value (what CMS and Java want)."""
    if not raw or len(raw) % 2:
        raise ValueError("raw ECDSA signature must have an even, non-zero length")
    half = len(raw) // 2
    return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


def ecdsa_der_to_raw(der: bytes, field_bytes: int) -> bytes:
    r, s = utils.decode_dss_signature(der)
    return r.to_bytes(field_bytes, "big") + s.to_bytes(field_bytes, "big")
