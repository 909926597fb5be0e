"""Card cost benchmark: APDUs and bytes of a cold listing and of a warm signature, per profile, and the
time of a warm signature as a ratio of the floor measured in the same run (the same ECDSA/RSA signature
made directly with cryptography, i.e. what remains when the card protocol costs nothing).

    python bench/card_apdus.py                # in-process virtual card
    python bench/card_apdus.py --pcsc         # through pcscd + vpcd (starts virtual cards itself)

The card is the slow part of a real signature; APDU counts are what carries over to hardware.
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils  # noqa: E402

from card import Token  # noqa: E402
from card.pcsc import PcscTransport  # noqa: E402
from card.virtual import VIRTUAL_PROFILES, VirtualCard  # noqa: E402
from card.virtual.source import InProcessTransport  # noqa: E402


def _floor(card: VirtualCard, cert_der: bytes, digest: bytes, rounds: int) -> float:
    leaves = (card.identity.auth, *card.identity.signs)
    key = next(leaf.key for leaf in leaves if leaf.cert.der == cert_der)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        if isinstance(key, ec.EllipticCurvePrivateKey):
            key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        else:
            key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(profile: str, state: Path, pcsc: bool, rounds: int) -> None:
    card = VirtualCard(profile, state)
    process = None
    if pcsc:
        process = subprocess.Popen([sys.executable, "-m", "digisign_web", "virtual-card", "--profile", profile,
                                    "--state-dir", str(state)], cwd=ROOT, stdout=subprocess.DEVNULL)
        time.sleep(1.0)
        transport = PcscTransport("Virtual PCD 00 00")
    else:
        transport = InProcessTransport(card)
    try:
        start = time.perf_counter()
        token = Token.open(transport)
        for cert in token.certificates():
            if cert.pin:
                token.pin_status(cert.pin)
        cold_time = time.perf_counter() - start
        cold = transport.stats.snapshot()
        digest = hashlib.sha256(b"benchmark").digest()
        results = {}
        for cert in (c for c in token.certificates() if c.key is not None):
            pin = "1234" if cert.role == "authentication" else "123456"
            label = f"{cert.role} {cert.key_description}"
            times = []
            for _ in range(rounds):
                transport.stats.reset()
                t0 = time.perf_counter()
                token.sign_digest(cert, "SHA256", digest, pin=pin)
                times.append(time.perf_counter() - t0)
            warm = transport.stats.snapshot()
            floor = _floor(card, cert.der, digest, rounds)
            results[label] = (warm, statistics.median(times), floor)
    finally:
        transport.close()
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(10)
    where = "pcscd+vpcd" if pcsc else "in-process"
    print(f"{profile} ({where}): cold listing {cold['apdus']} APDUs, {cold['bytes_sent']} B sent, "
          f"{cold['bytes_received']} B received, {cold_time * 1000:.1f} ms")
    for label, (warm, median, floor) in results.items():
        print(f"  warm {label} signature with PIN: {warm['apdus']} APDUs {sorted(warm['by_command'].items())}; "
              f"median {median * 1000:.2f} ms = {median / floor:.1f}x the software-signature floor "
              f"({floor * 1000:.3f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pcsc", action="store_true", help="go through pcscd and vpcd (slot 0)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("profiles", nargs="*", choices=[*VIRTUAL_PROFILES, []], metavar="PROFILE",
                        help=f"virtual card profiles to measure (default: all of {', '.join(VIRTUAL_PROFILES)})")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        for profile in args.profiles or VIRTUAL_PROFILES:
            measure(profile, Path(state), args.pcsc, args.rounds)


if __name__ == "__main__":
    main()
