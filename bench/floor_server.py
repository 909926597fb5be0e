"""The floors the benchmark divides by: the least an aiohttp server over the same TLS can do for the same job.

    python bench/floor_server.py --port N --cert localhost.pem --key localhost.key [--sign] [--chain chain.json]
                                 [--max-body BYTES]

It is run as its own process, like ``digisign-web serve``, so that its time and its peak RSS are its own.

* ``GET /hello``: an aiohttp hello-world (the floor for ``GET /version`` and for start-up).
* ``POST /sign`` (with ``--sign``): a minimal signing server. It parses the JSON body, base64-decodes the
  content, hashes it once with SHA-384 (or takes it as the digest for ``contentType: digest``), makes an
  ECDSA P-384 signature in software with ``cryptography`` and answers JSON with the signature and the chain
  (the subject's chain, read from ``--chain``, so both answers carry the same certificates). For the types
  whose result carries the document (``cms``, ``pkcs7``, ``xml`` with ``contentType: data``) the answer
  carries the content again, base64, as an attached container would. The answer is written as bytes, the
  document encoded once: a floor that built a JSON string of 100 MiB would flatter the subject.

Without ``--sign`` nothing but aiohttp and ssl is imported, so start-up compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
from pathlib import Path

from aiohttp import web

ATTACHED = {"cms", "pkcs7", "xml"}


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """What ``digisign-web serve`` uses: a TLS server context, TLS 1.2 or newer, the same leaf and key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


def signing_route(app: web.Application, chain: list[str]) -> None:
    """Add ``POST /sign``: the same software work the subject's card does for it, and nothing else."""
    import base64
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    key = ec.generate_private_key(ec.SECP384R1())
    algorithm = ec.ECDSA(utils.Prehashed(hashes.SHA384()))

    async def sign(request: web.Request) -> web.StreamResponse:
        fields = json.loads(await request.read())
        content = base64.b64decode(fields["content"])
        digest = content if fields.get("contentType") == "digest" else hashlib.sha384(content).digest()
        signature = key.sign(digest, algorithm)
        kind = fields.get("signatureType", "signature")
        attached = kind in ATTACHED and fields.get("contentType", "data") == "data"
        del fields
        # The answer is written as bytes, the document base64-encoded once and never held as a JSON string:
        # the least an attached answer can cost. base64(content + signature) is base64 of the whole-3-byte
        # head of the content followed by base64 of the rest plus the signature.
        head = len(content) // 3 * 3 if attached else 0
        view = memoryview(content)
        rest = bytes(view[head:]) + signature if attached else signature
        others = json.dumps({"version": "1.1", "signatureAlgorithm": "SHA384withECDSA", "signatureType": kind,
                             "chain": chain, "status": "ok", "reasonCode": 200,
                             "reasonText": "Signature generated"}).encode()
        parts = [b'{"signature": "', base64.b64encode(view[:head]), base64.b64encode(rest), b'", ', others[1:]]
        del view, content
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = sum(len(part) for part in parts)
        await response.prepare(request)
        for part in parts:
            await response.write(part)
        await response.write_eof()
        return response

    app.router.add_post("/sign", sign)


async def serve(args: argparse.Namespace) -> None:
    app = web.Application(client_max_size=args.max_body + 1)
    app.router.add_get("/hello", hello)
    if args.sign:
        chain = json.loads(Path(args.chain).read_text()) if args.chain else []
        signing_route(app, chain)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=tls_context(args.cert, args.key)).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--sign", action="store_true", help="also serve POST /sign")
    parser.add_argument("--chain", help="JSON list of base64 certificates to answer with")
    parser.add_argument("--max-body", type=int, default=100 * 1024 * 1024)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
