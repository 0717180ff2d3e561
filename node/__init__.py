"""Tally's node: storage, the CLI and (later) networking. All I/O lives here."""
