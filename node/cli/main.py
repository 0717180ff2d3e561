"""The `tally` command.

Contract (other programs rely on it): ids print as the whole last line of
stdout; `--json` prints JSON Lines; errors go to stderr as
`error: <code>: <message>`; exit 1 for refused input or a failed check, 2 for
a usage error, 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from node.cli.commands import (
    cmd_append,
    cmd_follow,
    cmd_forks,
    cmd_id,
    cmd_init,
    cmd_ledger_create,
    cmd_ledger_list,
    cmd_log,
    cmd_open,
    cmd_peers,
    cmd_run,
    cmd_sync,
    cmd_verify,
)
from node.cli.context import (
    Command,
    Parser,
    UsageError,
    home_of,
    missing_subcommand,
)
from node.cli.demo import cmd_demo
from node.cli.distribution import add_distribution_commands
from node.cli.governance import add_governance_commands
from node.cli.invite import add_invite_commands
from node.cli.keys import add_key_commands
from node.cli.ledger import add_ledger_commands
from node.cli.options import add_request_options
from node.config import check_peer_url
from node.listen import DEFAULT_HOST, DEFAULT_PORT, parse_listen
from node.runtime import tune_gc
from node.store.failures import store_failure
from protocol import (
    TallyError,
)
from protocol.requests import AppendEntry, Follow, LedgerCreate


def _peer_url(text: str) -> str:
    try:
        return check_peer_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- parser ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", default=argparse.SUPPRESS, metavar="DIR",
        help="the node's home folder (default: $TALLY_HOME, else the user data folder)",
    )
    parser = Parser(prog="tally", description="Tally: a peer-to-peer open-value ledger node.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add(name: str, func: Command, help_text: str, target: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = target.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("init", cmd_init, "create this node's identity and print its did:key")
    p.add_argument("--import-key", metavar="FILE", help="restore a key: 64 hex characters (seed) or PKCS#8 PEM")
    p = add("id", cmd_id, "print your identity's did:key (what ledgers name you by)")
    p.add_argument("--key", action="store_true",
                   help="print this device's signing key instead (differs after a rotation, or on a device)")

    ledger = add("ledger", missing_subcommand, "create and list ledgers")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", cmd_ledger_create, "found a ledger and print its id", lsub)
    add_request_options(p, LedgerCreate)
    p = add("list", cmd_ledger_list, "list the ledgers stored here", lsub)
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("append", cmd_append, "append a raw entry to your chain in a ledger and print its id")
    add_request_options(p, AppendEntry)

    p = add("log", cmd_log, "list a ledger's entries, by author then seq")
    p.add_argument("--ledger", required=True, metavar="ID")
    p.add_argument("--author", metavar="DID", help="only this author's chain")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("verify", cmd_verify, "re-verify every stored entry from its raw bytes")
    p.add_argument("--repair", action="store_true",
                   help="fetch a good copy of each damaged entry from a peer (--peer, and tally.toml's peers)")
    p.add_argument("--peer", action="append", default=[], metavar="URL", help="a peer to fetch good copies from")

    p = add("run", cmd_run, "run the node: the HTTP API and peer sync, until SIGINT or SIGTERM")
    p.add_argument(
        "--listen", type=_listen, default=None, metavar="HOST:PORT",
        help=f"where to serve the API and sync (default: `listen` in tally.toml, else {DEFAULT_HOST}:{DEFAULT_PORT};"
        " port 0 picks a free one)",
    )
    p.add_argument("--peer", action="append", default=[], type=_peer_url, metavar="URL",
                   help="a peer to sync with (repeatable; adds to `peers` in tally.toml)")
    p.add_argument("--mdns", action=argparse.BooleanOptionalAction, default=None,
                   help="find peers on the LAN and be found (default: `mdns` in tally.toml, else on)")
    p.add_argument("--offline", action="store_true", help="do not wait to catch up with peers before writing")

    p = add("follow", cmd_follow, "replicate a ledger this node did not found; prints its id")
    add_request_options(p, Follow)
    p = add("forks", cmd_forks, "list known forks: author, ledger, seq, both entry ids, the proof (base64)")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p = add("sync", cmd_sync, "sync once with a peer (every ledger both replicate, both ways), then exit")
    p.add_argument("url", metavar="URL", help="the peer's address, e.g. http://192.168.1.20:7410")
    p = add("peers", cmd_peers, "list the running node's peers")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p = add("open", cmd_open, "print a one-time login link to the running node's dashboard (its last line)")
    p.add_argument("--browser", action="store_true", help="also open it in a browser, when there is a display")
    p.add_argument("--address", metavar="URL", type=_peer_url,
                   help="the node's address as your browser reaches it, e.g. http://raspberrypi.local:7410"
                   " (default: where the CLI reaches it)")

    p = add("demo", cmd_demo,
            "start three local nodes with a demo coop and print their dashboard login links; Ctrl-C stops them")
    p.add_argument("--dir", metavar="DIR",
                   help="keep the three homes here (default: a new temporary folder, removed on exit)")
    p.add_argument("--lan", action="store_true",
                   help="listen on every interface and find each other by mDNS too (default: 127.0.0.1 only)")
    p.add_argument("--base-port", type=int, default=0, metavar="PORT",
                   help="ports PORT, PORT+1, PORT+2 (default: free ones)")

    add_ledger_commands(add)
    add_distribution_commands(add)
    add_governance_commands(add)
    add_key_commands(add)
    add_invite_commands(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `tally` command (argv without the program name; None: this process's own) and return its exit
    code. Nothing process-wide is set here (tests call it in their own process, command after command); the
    `tally` process's own settings are `script`'s."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = asyncio.run(args.func(args))
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
    sys.exit(code)


if __name__ == "__main__":
    script()
