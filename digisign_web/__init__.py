"""digisign-web: a local HTTPS web-signing server (SCS v1.1 and WebSigner) for FINEID cards."""

__version__ = "0.1.0"
