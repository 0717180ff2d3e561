"""The `tally` command.

Contract (other programs rely on it): ids print as the whole last line of
stdout; `--json` prints JSON Lines; errors go to stderr as
`error: <code>: <message>`; exit 1 for refused input or a failed check, 2 for
a usage error, 0 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import NoReturn

from node.cli.parser import build_parser
from node.cli.parsing import CommandRef, UsageError, home_of
from node.runtime import skip_final_collection, tune_gc
from node.store.failures import store_failure
from protocol import TallyError


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `tally` command (argv without the program name; None: this process's own) and return its exit
    code. Nothing process-wide is set here (tests call it in their own process, command after command); the
    `tally` process's own settings are `script`'s."""
    args = build_parser().parse_args(argv)
    command: CommandRef = args.func
    try:
        result: int = asyncio.run(command.load()(args))
        return result
    except UsageError as exc:  # before TallyError, which it is: a usage error exits 2
        print(f"error: usage: {exc.message}", file=sys.stderr)
        return 2
    except TallyError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise  # the reader went away: not the store's failure, and the process's concern (`script`)
    except (sqlite3.Error, OSError) as exc:  # the store's file: damaged, or the disk full
        failure = store_failure(exc, home_of(args).store_path)
        if failure is None:
            raise
        print(f"error: {failure.code}: {failure.message}", file=sys.stderr)
        return 1


def script() -> NoReturn:
    """The `tally` program: the process's settings (memory tuning, the log format of warnings), then `main`."""
    tune_gc()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        code = main()
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: not an error of ours. Silence the
        # interpreter's own flush at exit too.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        code = 0
    skip_final_collection()
    sys.exit(code)


if __name__ == "__main__":
    script()
