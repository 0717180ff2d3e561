"""Governance and pledge commands of `tally` (SPEC.md §18): motion create/close/show/list, vote,
pledge create, pledges.

Writes are declared requests (protocol/requests.py), sent as node/cli/ledger.py's `submit` sends them;
the entry is built by protocol/governance_ops.py, which refuses with the code the member sees and appends
nothing. Reads come from the store.
Declared in node/cli/parser.py; the output contract is node/cli/main.py's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from node.cli.context import open_store
from node.cli.ledger import ledger_state, submit
from node.cli.parsing import home_of, parse_cid
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
