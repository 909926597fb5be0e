"""The local CA and the localhost identity, and the trust stores that must know the CA."""
