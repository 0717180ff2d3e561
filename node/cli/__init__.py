"""The `tally` command: its entry point (node.cli.main), context (home, store, client) and command groups."""
