"""Signing: signers (card-backed and software), signature formats, PDF, and validation. Knows no HTTP."""
