"""The SCS app in-process (pytest-aiohttp's test server, no subprocess): the virtual card behind a
VirtualReader and a scripted user in place of the dialog. Used by the unit lane and by security tests that
need no real process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from card import CardManager
from card.virtual import VirtualCard, VirtualReader
from digisign_web.dialog.protocol import Dialog, DialogAnswer, DialogRequest
from digisign_web.scs.service import SigningService
from digisign_web.settings import Settings
from digisign_web.web.app import build_app
from digisign_web.web.keys import CORE
from digisign_web.wildcards import origin_allowed
from tests.support.servers import ORIGIN

HOST: dict[str, str] = {}  # set per test server: Host must name the port we were reached on


class ScriptedDialog(Dialog):
    """A test double for the user: answers from a function, and records what it was shown."""

    def __init__(self, answer: Any = None):
        self.answer = answer
        self.requests: list[DialogRequest] = []
        self.active = 0
        self.max_active = 0

    async def ask(self, request: DialogRequest) -> DialogAnswer:
        self.requests.append(request)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            # Not a wait for anything: it yields to the loop so that concurrent requests would pile up here
            # if the service let them (max_active records it).
            await asyncio.sleep(0.01)
            if callable(self.answer):
                result = self.answer(request)
                if asyncio.iscoroutine(result):
                    result = await result
                return result
            pins = {"authentication": "1234", "signature": "123456"}
            choice = request.choices[0]
            return DialogAnswer(0, pins[choice.role] if choice.needs_pin else None)
        finally:
            self.active -= 1


@dataclasses.dataclass
class Server:
    client: Any
    card: VirtualCard
    reader: VirtualReader
    manager: CardManager
    dialog: Any
    service: SigningService

    async def sign(self, body: dict[str, Any] | bytes | str, origin: str | None = ORIGIN,
                   headers: dict[str, str] | None = None) -> dict[str, Any]:
        h = dict(HOST)
        if origin:
            h["Origin"] = origin
        h.update(headers or {})
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        response = await self.client.post("/sign", data=data, headers=h)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        if origin and origin_allowed(origin, self.service.settings.allowed_origins):
            assert response.headers["Access-Control-Allow-Origin"] == origin
        else:  # CORS only for the origins allowedOrigins admits
            assert "Access-Control-Allow-Origin" not in response.headers
        return await response.json()


@pytest.fixture
def make_server(aiohttp_client, state_dir: Path):
    """Factory: ``await make_server(profile, dialog, port, **settings)`` -> an in-process Server."""
    async def start(profile: str = "fineid-v4", dialog: Any = None, port: int | None = None,
                    **overrides: Any) -> Server:
        card = VirtualCard(profile, state_dir)
        reader = VirtualReader(card)
        dialog = dialog or ScriptedDialog()
        app = build_app(dataclasses.replace(Settings(), **overrides), dialog, reader)
        client = await aiohttp_client(app, server_kwargs={"port": port} if port else {})
        HOST["Host"] = f"localhost:{client.port}"
        service = app[CORE].build()
        return Server(client, card, reader, service.manager, dialog, service)

    return start
