"""Recorded real FINEID cards replayed through the real pcscd as T=0 cards (vpcd), driven by the CLI
and by `serve`, exactly as a user would: `digisign-web list`, `digisign-web sign` with both keys, and an
SCS /sign. The recordings (tests/data/recordings, MIT) are Web eID's traces of real test cards; what
they cannot prove is listed in tests/unit/test_real_cards.py."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils

from card import CardCertificate
from card.readers import reader_atr
from tests.support.cli import cli_env, run_cli
from tests.support.net import free_port
from tests.support.paths import RECORDINGS, ROOT
from tests.support.pcsc import VPCD_PORTS
from tests.support.recordings import MESSAGE, recorded_certificates
from tests.support.servers import start_server, stop
from tests.support.wait import async_wait_until, wait_until

READER = VPCD_PORTS[35963]


@pytest.fixture
def replayed(pcscd: None) -> Iterator[Callable[[str], bytes]]:
    """Factory: plug a recording into vpcd slot 0 with `digisign-web virtual-card --replay`."""
    processes: list[subprocess.Popen[str]] = []

    def start(name: str) -> bytes:
        wait_until(lambda: reader_atr(READER) is None, 10, f"{READER} to be empty")
        log = tempfile.TemporaryFile("w+")
        process = subprocess.Popen([sys.executable, "-m", "digisign_web", "virtual-card", "--replay",
                                    str(RECORDINGS / f"{name}.json"), "--port", "35963"], cwd=ROOT, env=cli_env(),
                                   stdout=log, stderr=subprocess.STDOUT, text=True)
        processes.append(process)
        wait_until(lambda: reader_atr(READER) is not None or process.poll() is not None, 15, "the replayed card")
        if process.poll() is not None:
            log.seek(0)
            raise AssertionError(f"replay process died: {log.read()}")
        return reader_atr(READER) or b""

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    wait_until(lambda: reader_atr(READER) is None, 10, "card removal")


@pytest.mark.parametrize("name", ["fineid-v3-2020", "fineid-v4-2023"])
def test_list_over_pcscd(replayed, name: str) -> None:
    atr = replayed(name)
    assert atr[1] & 0x80 == 0  # no TD1: T=0 only, as every contact FINEID card
    result = run_cli("list", "--json", "--stats")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    [token] = data["tokens"]
    assert token["profile"] == name.rsplit("-", 1)[0]
    assert [c["role"] for c in token["certificates"]] == ["authentication", "signature"]
    assert all(c["pin"]["tries_left"] == 5 for c in token["certificates"])
    [stats] = data["apdu_stats"]
    assert stats["by_command"]["GET RESPONSE"] >= 2  # the FCPs came back as T=0 answers (61xx)


# (recording, --key) -> (sign options, hash, PSS?) as the real card was used in the recording.
# The 2020 recording's certificates expired in 2022: signing with them takes --allow-expired (D67), and the
# replay still checks every APDU we send against what the real card answered.
SIGNATURES = {
    ("fineid-v3-2020", "auth"): (["--hash", "SHA256", "--rsa-pss", "--allow-expired"], "SHA256", True, "1234"),
    ("fineid-v3-2020", "sign"): (["--hash", "SHA256", "--allow-expired"], "SHA256", False, "123456"),
    ("fineid-v4-2023", "auth"): (["--hash", "SHA384"], "SHA384", False, "1234"),
    ("fineid-v4-2023", "sign"): (["--hash", "SHA384"], "SHA384", False, "123456"),
}


def test_expired_recording_is_refused_without_allow_expired(replayed, tmp_path: Path) -> None:
    """D50/D67: the real 2020 card's expired signature certificate is refused in one line, before any PIN."""
    replayed("fineid-v3-2020")
    (tmp_path / "message.txt").write_bytes(MESSAGE)
    result = subprocess.run([sys.executable, "-m", "digisign_web", "sign", "--type", "signature-plain", "--key", "sign",
                             "--in", str(tmp_path / "message.txt"), "--out", str(tmp_path / "sig"), "--pin-stdin"],
                            cwd=ROOT, env=cli_env(), input="123456\n", capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "expired on 2022-" in result.stderr and "--allow-expired" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sig").exists()


@pytest.mark.parametrize(("name", "key"), sorted(SIGNATURES))
def test_sign_cli_over_pcscd(replayed, tmp_path: Path, name: str, key: str) -> None:
    replayed(name)
    options, hash_name, pss, pin = SIGNATURES[(name, key)]
    (tmp_path / "message.txt").write_bytes(MESSAGE)
    result = subprocess.run([sys.executable, "-m", "digisign_web", "sign", "--type", "signature-plain", "--key", key,
                             "--in", str(tmp_path / "message.txt"), "--out", str(tmp_path / "sig"), "--pin-stdin",
                             *options], cwd=ROOT, env=cli_env(), input=pin + "\n", capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    signature = (tmp_path / "sig").read_bytes()
    cert = CardCertificate.load(recorded_certificates(name)["authentication" if key == "auth" else "signature"])
    algorithm = getattr(hashes, hash_name)()
    digest = hashlib.new(hash_name.lower(), MESSAGE).digest()
    public = cert.public_key
    if isinstance(public, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = utils.encode_dss_signature(int.from_bytes(signature[:half], "big"),
                                         int.from_bytes(signature[half:], "big"))
        public.verify(der, digest, ec.ECDSA(utils.Prehashed(algorithm)))
    else:
        pad = padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO) if pss else padding.PKCS1v15()
        public.verify(signature, digest, pad, utils.Prehashed(algorithm))


async def test_serve_refuses_the_expired_recorded_card(replayed, tmp_path: Path) -> None:
    """D50/D51: the 2020 card's certificates expired in 2022, so the server reads the card, warns, lists no
    usable key in /version and answers a signature request 404 saying why; nothing reaches the card's PIN."""
    replayed("fineid-v3-2020")
    server = start_server(tmp_path, "--dialog", "auto", "--auto-approve-real-cards", port=free_port())
    try:
        await async_wait_until(lambda: "expired on 2022-" in server.log(), 15, "the insertion warning")
        assert (await server.version())["hashAlgorithms"] == ""
        answer = await server.post({"content": base64.b64encode(MESSAGE).decode(), "signatureType": "signature",
                                    "selector": {"keyusages": ["nonrepudiation"]}})
    finally:
        stop(server)
    assert answer["status"] == "failed" and answer["reasonCode"] == 404, answer
    assert "expired on 2022-" in answer["reasonText"]


@pytest.mark.parametrize("name", ["fineid-v4-2023"])
async def test_serve_signs_with_the_recorded_card(replayed, tmp_path: Path, name: str) -> None:
    replayed(name)
    hash_name = "SHA256" if name.startswith("fineid-v3") else "SHA384"
    server = start_server(tmp_path, "--dialog", "auto", "--auto-approve-real-cards", port=free_port())
    try:
        async def card_seen() -> bool:
            return bool((await server.version())["hashAlgorithms"])

        await async_wait_until(card_seen, 15, "the server to see the replayed card")
        answer = await server.post({"content": base64.b64encode(MESSAGE).decode(), "contentType": "data",
                                    "hashAlgorithm": hash_name, "signatureType": "signature",
                                    "selector": {"keyusages": ["nonrepudiation"]}})
    finally:
        stop(server)
    assert answer["status"] == "ok", answer
    chain = [base64.b64decode(c) for c in answer["chain"]]
    # The card's exact bytes, and the leaf alone: the recording holds no CA certificate.
    assert chain == [recorded_certificates(name)["signature"]]
    leaf = CardCertificate.load(chain[0])
    assert answer["signatureAlgorithm"] == f"{hash_name}withECDSA"
    leaf.public_key.verify(base64.b64decode(answer["signature"]), MESSAGE,
                           ec.ECDSA(getattr(hashes, hash_name)()))
