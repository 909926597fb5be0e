"""The server on the user's desktop: started at login (:mod:`.autostart`), and told when the screen locks
(:mod:`.screenlock`).

This package sits beside ``web``: ``web/app.py`` hooks the screen-lock watcher into the app and the CLI's
``service`` command drives :mod:`.autostart`. It imports only ``digisign_web.settings`` and ``.text`` from the
project, and no aiohttp: the server's parts it acts on are handed to it as callables.
"""
