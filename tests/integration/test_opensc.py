"""Independent interop check: OpenSC's pkcs15-tool (a PKCS#15 parser we did not write) reads the
virtual card through pcscd and finds the same PINs, keys and certificates that our encoder wrote.

OpenSC runs with OPENSC_CONF enabling its generic PKCS#15 driver (the ``opensc_env`` fixture,
tests/support/opensc.py, says why), which is exactly the standard-conformance check we want.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from card import CardCertificate, Token
from card.pcsc import PcscTransport

pytestmark = pytest.mark.pcscd


def pkcs15_tool(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(["pkcs15-tool", "--reader", "0", *args], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, f"pkcs15-tool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def blocks(dump: str, kind: str) -> dict[str, str]:
    """Split ``pkcs15-tool -D`` output into {label: block} for one object kind."""
    out = {}
    for match in re.finditer(rf"^{kind} \[(.+?)\]\n((?:\t.*\n?)+)", dump, re.M):
        out[match.group(1)] = match.group(2)
    return out


def field(block: str, name: str) -> str:
    match = re.search(rf"^\t{re.escape(name)}\s*: (.*)$", block, re.M)
    assert match, f"no {name!r} in:\n{block}"
    return match.group(1).strip()


@pytest.mark.parametrize("profile", ["fineid-v4", "fineid-v3"])
def test_pkcs15_tool_reads_our_card(vpcd_card, opensc_env: dict[str, str], profile: str,
                                    tmp_path: Path) -> None:
    card = vpcd_card(profile)
    transport = PcscTransport(card.reader)
    try:
        token = Token.open(transport)
        ours = token.certificates()
        pins = token.pins
        keys = token.keys
        label, serial = token.label, token.serial
    finally:
        transport.close()

    dump = pkcs15_tool(opensc_env, "-D")
    assert f"PKCS#15 Card [{label}]" in dump
    assert field(dump.split("\n\n")[0] + "\n", "Serial number") == serial.encode().hex()

    pin_blocks = blocks(dump, "PIN")
    assert set(pin_blocks) == {p.label for p in pins}
    for pin in pins:
        block = pin_blocks[pin.label]
        assert field(block, "ID") == pin.auth_id.hex()
        assert field(block, "Reference").endswith(f"(0x{pin.reference:02x})")
        assert field(block, "Pad char") == "0x00"
        assert f"min_len:{pin.min_length}, max_len:{pin.max_length}, stored_len:{pin.stored_length}" in block

    key_blocks = {**blocks(dump, "Private EC Key"), **blocks(dump, "Private RSA Key")}
    assert set(key_blocks) == {k.label for k in keys}
    for key in keys:
        block = key_blocks[key.label]
        assert field(block, "ID") == key.id.hex()
        assert field(block, "Auth ID") == key.auth_id.hex()
        assert field(block, "Key ref").endswith(f"(0x{key.key_reference:02x})")
        size_field = "FieldLength" if key.algorithm == "EC" else "ModLength"
        assert field(block, size_field) == str(key.size)
    assert "nonRepudiation" in field(key_blocks["Signature key"], "Usage")

    cert_blocks = blocks(dump, "X.509 Certificate")
    assert set(cert_blocks) == {c.label for c in ours}
    for cert in ours:
        block = cert_blocks[cert.label]
        assert field(block, "ID") == cert.id.hex()
        assert field(block, "Authority") == ("yes" if cert.role == "ca" else "no")
        # The bytes OpenSC reads are the certificate we hold (CardCertificate compares exact bytes).
        pem = pkcs15_tool(opensc_env, "--read-certificate", cert.id.hex())
        assert CardCertificate.from_pem(pem) == cert.certificate
