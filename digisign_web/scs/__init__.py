"""The SCS v1.1 protocol and its policy, without aiohttp: requests, selection, origins, card state, service."""
