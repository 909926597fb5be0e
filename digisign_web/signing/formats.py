"""The SCS signature types, in two phases around the one card operation.

What each type contains is the contract of decisions D17–D21 (docs/decisions.md):

* ``signature``: raw; RSA PKCS#1 v1.5 over DigestInfo, ECDSA as DER (Java's ``SHA256withECDSA``);
* ``signature-plain``: as ``signature`` but ECDSA as raw r||s (``SHA256withPLAIN-ECDSA``);
* ``cms`` / ``pkcs7``: CAdES-B-B SignedData (content-type, message-digest, signing-time,
  signing-certificate-v2, the whole chain); attached for ``data``, detached for ``digest``;
* ``cms-pades``: detached PAdES-B-B CMS over a given digest: no signing-time (the PDF's /M has it);
* ``xml`` (``xmldsig``): enveloping XMLDSig with one Reference to ``ds:Object``.

:func:`prepare` does all the formatting that can happen before the card (validation, the CMS signed
attributes, the XMLDSig SignedInfo) and returns a :class:`Pending` whose ``digest`` is what the key signs;
the caller makes the one card operation (``Token.sign_digest``: VERIFY, MSE, PSO:HASH, PSO:CDS) and hands
its answer to :meth:`Pending.finish`. So the formatting runs wherever the caller likes (the service's event
loop) and only the card work needs a worker thread. :func:`sign` is both phases around a
:class:`~digisign_web.signing.signers.DigestSigner`, for the CLI and software keys.

Adding a type means adding one prepare function and one entry in :data:`SIGNATURE_TYPES`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from card import CardCertificate
from card.crypto import HASH_NAMES, ecdsa_raw_to_der, hash_by_name
from digisign_web.signing import cms
from digisign_web.signing.names import ADVERTISED_TYPES, FormatError
from digisign_web.signing.signers import DigestSigner, key_algorithm

CONTENT_TYPES = ("data", "digest")


@dataclass(frozen=True)
class SignRequest:
    content: bytes
    content_type: str = "data"
    hash_algorithm: str = "SHA256"
    # The hash of ``content`` (``data`` only) when the caller has it already: a large document is hashed
    # once per request, not again here (see :meth:`hashed`).
    digest: bytes | None = field(default=None, repr=False)

    def hashed(self) -> SignRequest:
        """This request with :attr:`digest` filled in (the content is shared, not copied)."""
        if self.digest is not None or self.content_type != "data":
            return self
        return dataclasses.replace(self, digest=message_digest(self))


@dataclass(frozen=True)
class SignOutput:
    signature: bytes  # the bytes an SCS response base64-encodes
    signature_algorithm: str  # Java-style name: SHA256withRSA, SHA384withECDSA, SHA256withPLAIN-ECDSA


@dataclass(frozen=True)
class Pending:
    """A signature prepared up to the card operation.

    The card signs ``digest`` (a ``hash_algorithm`` digest) with ``Token.sign_digest(cert, hash_algorithm,
    digest, pin=..., pss=pss)``: for RSA the card side builds the DigestInfo. :meth:`finish` takes exactly
    what that returns (RSA signature bytes, ECDSA raw r||s) and makes the output of the type.
    """

    signature_type: str
    hash_algorithm: str
    digest: bytes
    key_algorithm: str  # RSA or EC
    pss: bool
    _finish: Callable[[bytes], SignOutput] = field(repr=False)

    def finish(self, raw_signature: bytes) -> SignOutput:
        """The finished signature of the type; no card work, no hashing of the content."""
        return self._finish(raw_signature)


def java_algorithm_name(algorithm: str, hash_algorithm: str, plain: bool = False, pss: bool = False) -> str:
    """``SHA256withRSA``, ``SHA384withECDSA``, ``SHA256withPLAIN-ECDSA``, ``SHA256withRSAandMGF1`` (PSS), for a
    key algorithm (``RSA``/``EC``)."""
    if algorithm == "RSA":
        return f"{hash_algorithm}withRSA{'andMGF1' if pss else ''}"
    return f"{hash_algorithm}with{'PLAIN-' if plain else ''}ECDSA"


def message_digest(request: SignRequest) -> bytes:
    """The digest to sign: the hash of the content for ``data`` (:attr:`SignRequest.digest` when the caller
    gave it), the content itself for ``digest``."""
    algorithm = hash_by_name(request.hash_algorithm)
    if request.content_type == "digest":
        if len(request.content) != algorithm.size:
            raise FormatError(400, f"a {request.hash_algorithm} digest has {algorithm.size} bytes; "
                                   f"the content has {len(request.content)}")
        return request.content
    if request.digest is not None:
        if len(request.digest) != algorithm.size:
            raise ValueError(f"a {request.hash_algorithm} digest has {algorithm.size} bytes, "
                             f"not {len(request.digest)}")
        return request.digest
    return algorithm.digest(request.content)


def _no_sha1(request: SignRequest, what: str) -> None:
    if request.hash_algorithm == "SHA1":
        raise FormatError(501, f"SHA1 is not offered for {what}: it has expired for signature containers "
                               "(use SHA256 or stronger)")


def _to_der(key: str) -> Callable[[bytes], bytes]:
    """The card's answer in CMS/Java convention: RSA bytes as they are, ECDSA r||s as DER Ecdsa-Sig-Value."""
    return ecdsa_raw_to_der if key == "EC" else bytes


# --- the types -------------------------------------------------------------------------------

PrepareFunction = Callable[[str, SignRequest, Sequence[CardCertificate], str, bool], Pending]


def _pending(signature_type: str, request: SignRequest, key: str, digest: bytes, finish: Callable[[bytes], bytes],
             name: str, pss: bool = False) -> Pending:
    return Pending(signature_type, request.hash_algorithm, digest, key, pss,
                   lambda raw: SignOutput(finish(raw), name))


def prepare_raw(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                pss: bool) -> Pending:
    """``signature``: the message digest; ECDSA as DER. RSA-PSS (only the CLI asks) is the card's PSS."""
    name = java_algorithm_name(key, request.hash_algorithm, pss=pss)
    return _pending(signature_type, request, key, message_digest(request), _to_der(key), name, pss)


def prepare_raw_plain(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                      pss: bool) -> Pending:
    """``signature-plain``: the card's answer as it is (ECDSA r||s)."""
    name = java_algorithm_name(key, request.hash_algorithm, plain=True, pss=pss)
    return _pending(signature_type, request, key, message_digest(request), bytes, name, pss)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _prepare_cms(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                 signing_time: dt.datetime | None) -> Pending:
    template = cms.template(chain, request.hash_algorithm, key, signing_time=signing_time is not None)
    attributes = template.signed_attributes(message_digest(request), signing_time)
    content = request.content if request.content_type == "data" else None  # attached only for data
    to_der = _to_der(key)

    def finish(raw: bytes) -> bytes:
        return template.signed_data(attributes, to_der(raw), content)

    return _pending(signature_type, request, key, hash_by_name(request.hash_algorithm).digest(attributes), finish,
                    java_algorithm_name(key, request.hash_algorithm))


def prepare_cms(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                pss: bool) -> Pending:
    """CAdES-B-B: attached for data, detached over the given digest."""
    _no_sha1(request, "CMS")
    return _prepare_cms(signature_type, request, chain, key, _now())


def prepare_cms_pades(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                      pss: bool) -> Pending:
    """PAdES-B-B CMS over a PDF byte-range digest, for /SubFilter ETSI.CAdES.detached."""
    _no_sha1(request, "cms-pades")
    if request.content_type != "digest":
        raise FormatError(501, "cms-pades signs the digest of a PDF byte range: send contentType 'digest'")
    return _prepare_cms(signature_type, request, chain, key, None)


def prepare_xml(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate], key: str,
                pss: bool) -> Pending:
    """Enveloping XMLDSig; well-formed XML goes in as XML, anything else as base64 text. signxml builds the
    whole signature here over a placeholder value; finish puts the card's signature in its place (XMLDSig
    wants ECDSA as r||s, which is what the card returns)."""
    _no_sha1(request, "XMLDSig")
    if request.content_type == "digest":
        raise FormatError(501, "xml signs content, not a digest: send contentType 'data'")
    from digisign_web.signing import xml  # lxml and signxml: loaded by the first XML request, not at start

    digest, finish = xml.enveloping(request.content, request.hash_algorithm, key, chain)
    return _pending(signature_type, request, key, digest, finish,
                    java_algorithm_name(key, request.hash_algorithm))


@dataclass(frozen=True)
class SignatureType:
    """A registry entry: the function, and the request shapes it accepts (checked before any card work)."""

    function: PrepareFunction
    content_types: tuple[str, ...] = CONTENT_TYPES
    sha1: bool = False  # SHA-1 only for raw signatures (legacy relying parties); expired for containers
    pss: bool = False  # RSA-PSS on request (the CLI's --rsa-pss); the SCS API never asks for it


SIGNATURE_TYPES: dict[str, SignatureType] = {
    "signature": SignatureType(prepare_raw, sha1=True, pss=True),
    "signature-plain": SignatureType(prepare_raw_plain, sha1=True, pss=True),
    "cms": SignatureType(prepare_cms),
    "pkcs7": SignatureType(prepare_cms),  # DigiSign: "compliant with 'cms' definition"
    "cms-pades": SignatureType(prepare_cms_pades, content_types=("digest",)),
    "xml": SignatureType(prepare_xml, content_types=("data",)),
    "xmldsig": SignatureType(prepare_xml, content_types=("data",)),  # synonym from another SCS server (D21)
}


def preflight(signature_type: str, request: SignRequest) -> None:
    """Every check that needs no card, so that a request that cannot succeed never reaches the PIN dialog:
    400 for unknown values or a digest of the wrong length, 501 for combinations not offered. The content
    of a ``data`` request is not hashed here."""
    if signature_type not in SIGNATURE_TYPES:
        raise FormatError(400, f"unknown signatureType {signature_type!r}; "
                               f"supported: {', '.join(ADVERTISED_TYPES)}")
    if request.content_type not in CONTENT_TYPES:
        raise FormatError(400, f"unknown contentType {request.content_type!r}; use 'data' or 'digest'")
    if request.hash_algorithm not in HASH_NAMES:
        raise FormatError(400, f"unknown hashAlgorithm {request.hash_algorithm!r}; "
                               f"supported: {', '.join(HASH_NAMES)}")
    entry = SIGNATURE_TYPES[signature_type]
    if request.hash_algorithm == "SHA1" and not entry.sha1:
        _no_sha1(request, signature_type)
    if request.content_type not in entry.content_types:
        wanted = " or ".join(repr(t) for t in entry.content_types)
        raise FormatError(501, f"{signature_type} takes contentType {wanted}, not {request.content_type!r}")
    if request.content_type == "digest" or request.digest is not None:
        message_digest(request)  # the digest length


def prepare(signature_type: str, request: SignRequest, chain: Sequence[CardCertificate],
            key_algorithm: str | None = None, *, pss: bool = False) -> Pending:
    """Everything before the card for ``signature_type``: :class:`FormatError` for what cannot be served
    (before any card work), else the :class:`Pending` whose ``digest`` the key must sign.

    ``chain`` is the signer's, leaf first, as the card stores it; ``key_algorithm`` (``RSA``/``EC``) defaults
    to the leaf's. ``pss`` asks for RSA-PSS, for the raw types only."""
    preflight(signature_type, request)
    if not chain:
        raise ValueError("a signature needs the signer's certificate")
    key = key_algorithm or chain[0].key_algorithm
    if pss and (not SIGNATURE_TYPES[signature_type].pss or key != "RSA"):
        raise FormatError(501, "RSA-PSS is offered only for a raw signature with an RSA key")
    return SIGNATURE_TYPES[signature_type].function(signature_type, request, chain, key, pss)


def sign(signature_type: str, signer: DigestSigner, request: SignRequest, *, pss: bool = False) -> SignOutput:
    """Produce ``signature_type`` for ``request`` with ``signer`` (both phases, synchronously: the CLI and
    software keys); :class:`FormatError` for what cannot be served."""
    pending = prepare(signature_type, request, signer.chain, key_algorithm(signer), pss=pss)
    if pss:
        raw = signer.sign_digest(pending.hash_algorithm, pending.digest, pss=True)
    else:
        raw = signer.sign_digest(pending.hash_algorithm, pending.digest)
    return pending.finish(raw)
