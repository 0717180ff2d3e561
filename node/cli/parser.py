"""`tally`'s argument parser: every command, its options and help, and the module and function that run it.

It imports no command module: node/cli/main.py loads the one command it runs (`CommandRef`), so `tally --help`
and light commands do not pay for the store, the HTTP client or the node (the aiohttp app, the dashboard,
mDNS). A write's options come from its declaration (`protocol/requests.py`, node/cli/options.py)."""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.options import add_request_options
from node.cli.parsing import AddCommand, CommandRef, Parser
from node.config import check_peer_url
from node.exports import FORMATS
from node.ledger_views import HISTORY_STATUSES
from node.listen import DEFAULT_HOST, DEFAULT_PORT, parse_listen
from protocol.requests import (
    Admit,
    AppendEntry,
    Contribute,
    Endorse,
    Erase,
    Follow,
    Invite,
    InviteRevoke,
    Join,
    Leave,
    LedgerCreate,
    MotionClose,
    MotionCreate,
    Name,
    PledgeCreate,
    RecordDistribution,
    RecoverApprove,
    Vote,
)


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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home", default=argparse.SUPPRESS, metavar="DIR",
        help="the node's home folder (default: $TALLY_HOME, else the user data folder)",
    )
    parser = Parser(prog="tally", description="Tally: a peer-to-peer open-value ledger node.", parents=[common])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    def add(name: str, command: str, help_text: str, target: Any = sub) -> argparse.ArgumentParser:
        """A command `name` run by `command` (\"module.function\" under node/cli/), loaded only when it runs."""
        p: argparse.ArgumentParser = target.add_parser(name, help=help_text, description=help_text, parents=[common])
        p.set_defaults(func=CommandRef(*command.split(".")))
        return p

    p = add("init", "commands.cmd_init", "create this node's identity and print its did:key")
    p.add_argument("--import-key", metavar="FILE", help="restore a key: 64 hex characters (seed) or PKCS#8 PEM")
    p = add("id", "identity.cmd_id", "print your identity's did:key (what ledgers name you by)")
    p.add_argument("--key", action="store_true",
                   help="print this device's signing key instead (differs after a rotation, or on a device)")

    ledger = add("ledger", "parsing.missing_subcommand", "create and list ledgers")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", "commands.cmd_ledger_create", "found a ledger and print its id", lsub)
    add_request_options(p, LedgerCreate)
    p = add("list", "commands.cmd_ledger_list", "list the ledgers stored here", lsub)
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("append", "commands.cmd_append", "append a raw entry to your chain in a ledger and print its id")
    add_request_options(p, AppendEntry)

    p = add("log", "commands.cmd_log", "list a ledger's entries, by author then seq")
    p.add_argument("--ledger", required=True, metavar="ID")
    p.add_argument("--author", metavar="DID", help="only this author's chain")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("verify", "commands.cmd_verify", "re-verify every stored entry from its raw bytes")
    p.add_argument("--repair", action="store_true",
                   help="fetch a good copy of each damaged entry from a peer (--peer, and tally.toml's peers)")
    p.add_argument("--peer", action="append", default=[], metavar="URL", help="a peer to fetch good copies from")

    p = add("run", "serve.cmd_run", "run the node: the HTTP API and peer sync, until SIGINT or SIGTERM")
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

    p = add("follow", "commands.cmd_follow", "replicate a ledger this node did not found; prints its id")
    add_request_options(p, Follow)
    p = add("forks", "commands.cmd_forks", "list known forks: author, ledger, seq, both entry ids, the proof (base64)")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p = add("sync", "serve.cmd_sync", "sync once with a peer (every ledger both replicate, both ways), then exit")
    p.add_argument("url", metavar="URL", help="the peer's address, e.g. http://192.168.1.20:7410")
    p = add("peers", "commands.cmd_peers", "list the running node's peers")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p = add("open", "commands.cmd_open", "print a one-time login link to the running node's dashboard (its last line)")
    p.add_argument("--browser", action="store_true", help="also open it in a browser, when there is a display")
    p.add_argument("--address", metavar="URL", type=_peer_url,
                   help="the node's address as your browser reaches it, e.g. http://raspberrypi.local:7410"
                   " (default: where the CLI reaches it)")

    p = add("demo", "demo.cmd_demo",
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


def add_ledger_commands(add: AddCommand) -> None:
    """Register the member's commands with `build_parser`'s `add(name, func, help[, subparsers])`."""
    member = add("member", "parsing.missing_subcommand",
            "sponsor an agent into a ledger, name yourself in it, or leave it")
    msub = member.add_subparsers(dest="member_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("admit", "ledger.cmd_member_admit", "sponsor AGENT's admission (it completes once enough members "
                "sponsored it); prints the entry id", msub)
    add_request_options(p, Admit)
    p = add("leave", "ledger.cmd_member_leave", "leave a ledger; prints the entry id", msub)
    add_request_options(p, Leave)
    p = add("name", "ledger.cmd_member_name",
            "set the name the other members see for you in a ledger; prints the entry id",
            msub)
    add_request_options(p, Name)

    p = add("contribute", "ledger.cmd_contribute", "log a contribution (a ValueFlows event); prints its id")
    add_request_options(p, Contribute)

    p = add("endorse", "ledger.cmd_endorse", "accept (or --reject) another member's contribution; prints the entry id")
    add_request_options(p, Endorse)

    p = add("history", "ledger.cmd_history", "a ledger's contributions with their claim values and statuses")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--agent", metavar="DID", help="only where DID is provider, receiver or author")
    p.add_argument("--action", metavar="ACTION")
    p.add_argument("--since", metavar="DATE", help="events at or after DATE (a date or a date-time)")
    p.add_argument("--until", metavar="DATE", help="events up to DATE (a date takes in its whole day)")
    p.add_argument("--status", choices=HISTORY_STATUSES)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON Lines output")
    out.add_argument("--csv", action="store_true", help="CSV output with a header row")

    p = add("state", "ledger.cmd_state", "a ledger's state: rules, members, totals, pending, invalid entries, digest")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--json", action="store_true", help="one JSON object")


def add_governance_commands(add: AddCommand) -> None:
    """Register the governance commands with `build_parser`'s `add(name, func, help[, subparsers])`."""
    motion = add("motion", "parsing.missing_subcommand", "propose, close and show score-voting motions")
    msub = motion.add_subparsers(dest="motion_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", "governance.cmd_motion_create", "propose a motion; prints its id", msub)
    add_request_options(p, MotionCreate)
    p = add("close", "governance.cmd_motion_close",
            "close a motion, counting the latest ballot of each voter; prints the "
            "closing entry's id", msub)
    add_request_options(p, MotionClose)
    p = add("show", "governance.cmd_motion_show", "a motion: options, totals, winner (once closed), ballots", msub)
    p.add_argument("motion", metavar="MOTION")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = add("list", "governance.cmd_motion_list", "a ledger's motions, open and closed, with their totals", msub)
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("vote", "governance.cmd_vote", "score a motion's options (vote again to change your ballot); prints its id")
    add_request_options(p, Vote)

    pledge = add("pledge", "parsing.missing_subcommand", "pledge recurring transfers to a ledger")
    psub = pledge.add_subparsers(dest="pledge_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", "governance.cmd_pledge_create", "pledge a transfer every period; prints the pledge's id", psub)
    add_request_options(p, PledgeCreate)

    p = add("pledges", "governance.cmd_pledges", "a ledger's pledges: due, paid and running arrears per period")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--as-of", metavar="DATE", help="count up to this day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--json", action="store_true", help="JSON Lines output")


def add_distribution_commands(add: AddCommand) -> None:
    """Register `distribute` and `export` with `build_parser`'s `add(name, func, help)`."""
    p = add("distribute", "distribution.cmd_distribute",
            "split an amount of income by the ledger's value equation over its "
            "final contributions; --record writes it as a ledger.distribution entry")
    add_request_options(p, RecordDistribution)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--record", action="store_true", help="append it to your chain; prints the entry id last")

    p = add("export", "distribution.cmd_export",
            "a ledger's events and distributions as ValueFlows JSON-LD, or its events as CSV")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--format", choices=FORMATS, default="jsonld", help="jsonld (default) or csv")


def add_key_commands(add: AddCommand) -> None:
    """Register `key` and `device` with `build_parser`'s `add(name, func, help[, subparsers])`."""
    key = add("key", "parsing.missing_subcommand", "rotate your signing key, keeping who you are")
    ksub = key.add_subparsers(dest="key_command", required=True, metavar="COMMAND", parser_class=Parser)
    add("rotate", "keys.cmd_key_rotate", "sign with next.key from now on, in every ledger you belong to; prints the "
        "rotation entries' ids (stop `tally run` first)", ksub)
    add("incept", "keys.cmd_key_incept", "commit to next.key in every ledger that has no commitment of yours yet, so "
        "that only next.key can rotate you (stop `tally run` first)", ksub)

    device = add("device", "parsing.missing_subcommand", "let another device write as you, list or revoke your devices")
    dsub = device.add_subparsers(dest="device_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("add", "keys.cmd_device_add", "authorize DEVICE_KEY (`tally id --key` on that device) in every ledger you "
            "belong to; prints the entries' ids (stop `tally run` first)", dsub)
    p.add_argument("key", metavar="DEVICE_KEY")
    p.add_argument("--name", default="", metavar="NAME", help="e.g. phone (at most 64 characters)")
    p = add("list", "keys.cmd_device_list", "your devices: key, name, added, revoked", dsub)
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    p = add("join", "keys.cmd_device_join", "on a new device: write as DID (the member who ran `tally device add` "
            "with this device's key); stop `tally run` first", dsub)
    p.add_argument("identity", metavar="DID")
    p = add("revoke", "keys.cmd_device_revoke", "stop DEVICE_KEY writing as you (what it wrote so far still counts); "
            "prints the entries' ids (stop `tally run` first)", dsub)
    p.add_argument("key", metavar="DEVICE_KEY")

    recover = add("recover", "parsing.missing_subcommand",
            "give a member who lost their keys a new one, by a quorum of members")
    rsub = recover.add_subparsers(dest="recover_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("request", "keys.cmd_recover_request", "on a new home (`tally init`): follow LEDGER and write as OLD_DID "
            "once recovered; prints what to ask the other members and this home's key", rsub)
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("identity", metavar="OLD_DID")
    p = add("approve", "keys.cmd_recover_approve", "approve NEW_DID as the key of OLD_DID (another member); prints the "
            "entry id (stop `tally run` first)", rsub)
    add_request_options(p, RecoverApprove)

    p = add("erase", "keys.cmd_erase", "erase the payload of ENTRY_ID, one of your entries (a contribution, an "
            "endorsement, your name): every node drops its bytes, the chain still verifies; prints the erasure's id")
    add_request_options(p, Erase)


def add_invite_commands(add: AddCommand) -> None:
    """Register `invite`, `invites` and `join` with `build_parser`'s `add(name, func, help[, subparsers])`."""
    p = add("invite", "invite.cmd_invite",
            "invite someone into LEDGER: prints a link (its last line) that gives them your "
            "sponsorship when they run `tally join LINK`; shown only once")
    add_request_options(p, Invite)
    p.add_argument("--qr", action="store_true", help="also draw the link as a QR code in the terminal")
    p = add("invites", "invite.cmd_invites", "list the invitations you issued (never their secret), or revoke one")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
    add_request_options(p, InviteRevoke)
    p = add("join", "invite.cmd_join",
            "join a ledger with an invitation LINK (makes this home's identity first if it has "
            "none); prints the ledger's id")
    add_request_options(p, Join)
