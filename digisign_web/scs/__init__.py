"""The SCS v1.1 protocol without aiohttp: request parsing, the selector and its DNs, the authentication-key
rule, the cancel guard, PIN sessions per origin, card state, the queue, errors and the signing service."""
