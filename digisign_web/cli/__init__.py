"""The ``digisign-web`` command: argparse to typed options to library calls."""

from digisign_web.cli.main import main

__all__ = ["main"]
