"""Governance and pledge commands of `tally` (SPEC.md §18): motion create/close/show/list, vote,
pledge create, pledges.

Writes are declared requests (protocol/requests.py), sent as node/cli/ledger.py's `submit` sends them;
the entry is built by protocol/governance_ops.py, which refuses with the code the member sees and appends
nothing. Reads come from the store.
Registered by node/cli/main.py's parser; the output contract is node/cli/main.py's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from node.cli.context import Parser, home_of, missing_subcommand, open_store, parse_cid
from node.cli.ledger import ledger_state, submit
from node.cli.options import add_request_options
from node.governance_views import motion_json, motion_lines, parse_day, pledge_json, pledge_lines, today
from node.store.store import Store
from protocol import CID, LocalError, governance_ops
from protocol.requests import MotionClose, MotionCreate, PledgeCreate, Vote
from protocol.state import LedgerState


async def _motion_ledger_id(store: Store, motion: CID) -> CID:
    """The ledger the entry `motion` is in (`unknown_entry` when it is not stored here)."""
    entry = await store.get(motion)
    if entry is None or entry.is_genesis:
        raise LocalError("unknown_entry", f"no entry {motion} is stored here")
    return entry.ledger_id


async def _motion_ledger(store: Store, motion: CID) -> LedgerState:
    return await ledger_state(store, await _motion_ledger_id(store, motion))


# ---- writes --------------------------------------------------------------------------------


async def cmd_motion_create(args: argparse.Namespace) -> int:
    return await submit(args, MotionCreate)


async def cmd_vote(args: argparse.Namespace) -> int:
    return await submit(args, Vote)


async def cmd_motion_close(args: argparse.Namespace) -> int:
    return await submit(args, MotionClose)


async def cmd_pledge_create(args: argparse.Namespace) -> int:
    return await submit(args, PledgeCreate)


# ---- reads ---------------------------------------------------------------------------------


async def _read(args: argparse.Namespace, find: Callable[[Store], Any]) -> Any:
    store = await open_store(home_of(args))
    try:
        return await find(store)
    finally:
        await store.close()


async def cmd_motion_show(args: argparse.Namespace) -> int:
    motion = parse_cid(args.motion)
    state: LedgerState = await _read(args, lambda store: _motion_ledger(store, motion))
    row = motion_json(governance_ops.find_motion(state, motion))
    if args.json:
        print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    else:
        print("\n".join(motion_lines(row)))
    return 0


async def cmd_motion_list(args: argparse.Namespace) -> int:
    ledger = parse_cid(args.ledger)
    state: LedgerState = await _read(args, lambda store: ledger_state(store, ledger))
    for m in state.motions:
        row = motion_json(m)
        print(json.dumps(row, ensure_ascii=False, separators=(",", ":")) if args.json else "\n".join(motion_lines(row)))
    return 0


async def cmd_pledges(args: argparse.Namespace) -> int:
    ledger = parse_cid(args.ledger)
    as_of = parse_day(args.as_of.strip(), "--as-of") if args.as_of is not None else today()
    state: LedgerState = await _read(args, lambda store: ledger_state(store, ledger))
    for p in state.pledges:
        row = pledge_json(p, as_of)
        print(json.dumps(row, ensure_ascii=False, separators=(",", ":")) if args.json else "\n".join(pledge_lines(row)))
    return 0



# ---- parser ----------------------------------------------------------------------------------


def add_governance_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the governance commands with node/cli/main.py's `add(name, func, help[, subparsers])`."""
    motion = add("motion", missing_subcommand, "propose, close and show score-voting motions")
    msub = motion.add_subparsers(dest="motion_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", cmd_motion_create, "propose a motion; prints its id", msub)
    add_request_options(p, MotionCreate)
    p = add("close", cmd_motion_close, "close a motion, counting the latest ballot of each voter; prints the "
            "closing entry's id", msub)
    add_request_options(p, MotionClose)
    p = add("show", cmd_motion_show, "a motion: options, totals, winner (once closed), ballots", msub)
    p.add_argument("motion", metavar="MOTION")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = add("list", cmd_motion_list, "a ledger's motions, open and closed, with their totals", msub)
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("vote", cmd_vote, "score a motion's options (vote again to change your ballot); prints its id")
    add_request_options(p, Vote)

    pledge = add("pledge", missing_subcommand, "pledge recurring transfers to a ledger")
    psub = pledge.add_subparsers(dest="pledge_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", cmd_pledge_create, "pledge a transfer every period; prints the pledge's id", psub)
    add_request_options(p, PledgeCreate)

    p = add("pledges", cmd_pledges, "a ledger's pledges: due, paid and running arrears per period")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--as-of", metavar="DATE", help="count up to this day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
