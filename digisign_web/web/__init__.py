"""aiohttp only: the app factory (the one composition root), middleware, routes, pages and serving."""
