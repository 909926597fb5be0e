"""`serve` answers first and loads the rest after (D69): what it imports before the port listens, the TLS
stamp that lets it skip loading ``cryptography``, and the app whose signing service is still loading."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from card.virtual import VirtualCard, VirtualReader
from digisign_web.scs.service import build_service
from digisign_web.settings import Settings
from digisign_web.tls import ca, files
from digisign_web.web.app import build_app
from digisign_web.web.keys import CORE
from tests.support.cli import cli_env
from tests.support.inprocess import HOST, ScriptedDialog
from tests.support.paths import ROOT
from tests.support.servers import ORIGIN

HEAVY = ("asn1crypto", "cryptography", "card.token", "card.manager", "card.virtual.card", "pyhanko", "lxml",
         "signxml", "digisign_web.scs.service", "digisign_web.signing.formats")


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules a fresh interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.split()


def test_what_serve_loads_before_its_port_listens(tmp_path: Path) -> None:
    """Everything `serve` runs up to listening: the CLI, settings, the quick TLS check, the app with every
    route and the web dialog. The card layer, the signers and the cryptography libraries load afterwards."""
    files.ensure_tls(tmp_path)  # the first start's full check, which leaves the stamp
    code = f"""
import asyncio
from pathlib import Path
from digisign_web.cli.main import build_parser
from digisign_web.settings import Settings
from digisign_web.tls.files import ensure_tls, server_context
from digisign_web.web.serve import ServeOptions, build_dialog, load_service
from digisign_web.web.app import build_app
settings = Settings()
tls = ensure_tls(Path({str(tmp_path)!r}))
server_context(tls)
options = ServeOptions(state_dir=Path({str(tmp_path)!r}), dialog="web", virtual_card="fineid-v4")
dialog = build_dialog(options, settings, "https://localhost:53952")
build_app(settings, dialog, load=lambda: load_service(options, settings, dialog))
"""
    assert loaded_after(code) == []


def test_tls_stamp_holds_only_for_the_files_it_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = []
    real = ca.ensure_tls
    monkeypatch.setattr(ca, "ensure_tls", lambda state: (state == tmp_path and full.append(state)) or real(state))
    first = files.ensure_tls(tmp_path)
    tls = tmp_path / "tls"
    assert len(full) == 1 and (tls / files.STAMP).stat().st_mode & 0o777 == 0o600
    assert files.ensure_tls(tmp_path) == first and len(full) == 1  # unchanged: the stamp holds
    # A replaced leaf (here: another installation's) is checked in full, found foreign and issued again.
    other = files.ensure_tls(tmp_path / "other")
    (tls / "localhost.pem").write_bytes(other.cert.read_bytes())
    files.ensure_tls(tmp_path)
    assert len(full) == 2
    assert ca._leaf_ok(first.cert, first.key, ca._load_ca(first.ca_cert, tls / "ca.key")[1])  # type: ignore[index]
    assert files.ensure_tls(tmp_path) and len(full) == 2  # stamped again
    # The renewal date reached, or a stamp of another version: checked in full.
    stamp = json.loads((tls / files.STAMP).read_text())
    (tls / files.STAMP).write_text(json.dumps({**stamp, "renew_by": "2000-01-01T00:00:00+00:00"}))
    files.ensure_tls(tmp_path)
    assert len(full) == 3
    (tls / files.STAMP).write_text(json.dumps({**stamp, "version": files.STAMP_VERSION + 1}))
    files.ensure_tls(tmp_path)
    assert len(full) == 4
    (tls / files.STAMP).write_text("not json")
    files.ensure_tls(tmp_path)
    assert len(full) == 5


async def test_the_app_answers_while_the_service_loads(aiohttp_client, state_dir: Path) -> None:
    """While the signing service is loading, /version answers from memory with no card (D7), the playground
    status says no reader, and a /sign waits for the service and then signs."""
    release = threading.Event()
    settings = Settings()
    dialog = ScriptedDialog()

    def load():
        release.wait(30)  # the card layer's imports and the virtual card's keys, made slow
        return build_service(settings, dialog, VirtualReader(VirtualCard("fineid-v4", state_dir)))

    app = build_app(settings, dialog, load=load)
    client = await aiohttp_client(app)
    HOST["Host"] = f"localhost:{client.port}"
    version = await (await client.get("/version", headers=HOST)).json()
    assert version["signatureAlgorithms"] == "" and version["hashAlgorithms"] == ""
    status = await (await client.get("/playground/status", headers=HOST)).json()
    assert status["readers"] == []
    refused = await client.post("/sign", data="{}", headers={**HOST, "Origin": "http://evil.example"})
    assert (await refused.json())["reasonCode"] == 403 and app[CORE].loaded is None  # refused without waiting
    body = json.dumps({"content": base64.b64encode(b"signed once loaded").decode()})
    signing = asyncio.create_task(client.post("/sign", data=body, headers={**HOST, "Origin": ORIGIN}))
    await asyncio.sleep(0.2)
    assert not signing.done()  # waiting for the service, not failing for want of a card
    release.set()
    answer = await (await asyncio.wait_for(signing, 30)).json()
    assert answer["status"] == "ok", answer
    service = app[CORE].loaded
    assert service is not None
    await asyncio.wait_for(_until(lambda: service.state.summaries()), 10)
    version = await (await client.get("/version", headers=HOST)).json()
    assert version["signatureAlgorithms"] == "ECDSA"


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.02)


def test_eager_app_has_its_service_at_once(state_dir: Path) -> None:
    settings = dataclasses.replace(Settings())
    app = build_app(settings, ScriptedDialog(), VirtualReader(VirtualCard("fineid-v4", state_dir)))
    assert app[CORE].loaded is not None
