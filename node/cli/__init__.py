"""The `tally` command: its entry point (node.cli.main), parser (node.cli.parser), context (store, client) and
command groups."""
