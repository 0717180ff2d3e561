"""The SQLite store of entries, and each ledger's state kept current from it (a fold per ledger, protocol/fold.py)."""
