"""`tally id`: who this home is. It needs the home's files only, so it loads no store, client nor node."""

from __future__ import annotations

import argparse

from node.cli.parsing import home_of


async def cmd_id(args: argparse.Namespace) -> int:
    home = home_of(args)
    print(home.load_key().did if args.key else home.identity(), flush=True)
    return 0
