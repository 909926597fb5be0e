"""The SCS v1.1 protocol without aiohttp: requests, selector, DNs, the authentication-key rule, the cancel guard,
card state, queue, errors and the signing service."""
