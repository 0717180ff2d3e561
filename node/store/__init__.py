"""The SQLite store of entries and the cache of ledger states computed from it (in a worker for big ledgers)."""
