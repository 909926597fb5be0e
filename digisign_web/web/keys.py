"""The application's state, as typed ``web.AppKey``s (aiohttp's way; no module globals)."""

from __future__ import annotations

from aiohttp import web

from card import CardManager
from digisign_web.scs.card_state import CardState
from digisign_web.scs.service import SigningService
from digisign_web.settings import Settings

SERVICE = web.AppKey("signing_service", SigningService)
STATE = web.AppKey("card_state", CardState)
SETTINGS = web.AppKey("settings", Settings)
MANAGER = web.AppKey("card_manager", CardManager)
