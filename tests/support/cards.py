"""Checking what a card or an SCS answer produced with independent verifiers (cryptography, openssl), and
the virtual cards' PINs."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from card import CardCertificate, Token
from card.crypto import ecdsa_raw_to_der

PIN1, PIN2, PUK = "1234", "123456", "12345678"  # the virtual cards' authentication PIN, signature PIN, PUK
HASHES = {"SHA1": hashes.SHA1, "SHA224": hashes.SHA224, "SHA256": hashes.SHA256, "SHA384": hashes.SHA384,
          "SHA512": hashes.SHA512}


def by_role(token: Token, role: str) -> CardCertificate:
    """The token's certificate for ``role`` ("authentication", "signature")."""
    return next(c for c in token.certificates() if c.role == role)


def verify(cert, hash_name: str, digest: bytes, signature: bytes, pss: bool = False) -> None:
    """Independent check with cryptography: the card's signature over ``digest`` under the cert's key."""
    public = cert.certificate.public_key
    algo = HASHES[hash_name]()
    if isinstance(public, ec.EllipticCurvePublicKey):
        field = (public.curve.key_size + 7) // 8
        assert len(signature) == 2 * field  # raw r||s, exactly twice the field size
        public.verify(ecdsa_raw_to_der(signature), digest, ec.ECDSA(utils.Prehashed(algo)))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        assert len(signature) == public.key_size // 8
        pad = padding.PSS(padding.MGF1(algo), algo.digest_size) if pss else padding.PKCS1v15()
        public.verify(signature, digest, pad, utils.Prehashed(algo))


def answer_chain(answer: dict) -> list[CardCertificate]:
    """The certificates of an SCS answer's ``chain`` (base64 DER, leaf first), read as the card stores
    them: real-card encodings (and so the virtual card's) are not strict DER, which cryptography refuses."""
    return [CardCertificate.load(base64.b64decode(c), f"answer chain[{i}]")
            for i, c in enumerate(answer["chain"])]


def check_ecdsa(answer: dict, content: bytes) -> None:
    """An SCS answer's raw ECDSA signature verifies over ``content`` under the answer's leaf."""
    public = answer_chain(answer)[0].public_key
    assert isinstance(public, ec.EllipticCurvePublicKey)
    algorithm = getattr(hashes, answer["signatureAlgorithm"].split("with")[0])()
    public.verify(base64.b64decode(answer["signature"]), content, ec.ECDSA(algorithm))


def openssl_recovers(answer: dict, tmp_path: Path) -> bytes:
    """Verify an SCS answer's attached CMS with `openssl cms -verify` against the answer's own root, and
    return the content OpenSSL recovered (an independent verifier, not our code)."""
    (tmp_path / "answer.p7s").write_bytes(base64.b64decode(answer["signature"]))
    root = answer_chain(answer)[-1]
    (tmp_path / "answer-root.pem").write_text(root.pem)
    result = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in",
                             str(tmp_path / "answer.p7s"), "-CAfile", str(tmp_path / "answer-root.pem"),
                             "-purpose", "any", "-out", str(tmp_path / "answer.out")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return (tmp_path / "answer.out").read_bytes()
