"""Governance and pledge commands of `tally` (SPEC.md §18): motion create/close/show/list, vote,
pledge create, pledges.

Writes go through the running node's API when one runs, else straight to the store
(node/cli/ledger.py's `write_entry`); the entry is built by protocol/governance_ops.py, which
refuses with the code the member sees and appends nothing. Reads come from the store.
Registered by node/cli/main.py's parser; the output contract is node/cli/main.py's.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from node.cli.context import Parser, home_of, missing_subcommand, open_store, parse_cid, read_toml
from node.cli.ledger import ledger_state, write_entry
from node.governance_views import motion_json, motion_lines, parse_day, pledge_json, pledge_lines, today
from node.store.store import Store
from node.store.writes import LocalWrites
from protocol import CID, Entry, LocalError, governance_ops
from protocol.pledges import PERIODS
from protocol.state import LedgerState


def _scores(given: list[str]) -> dict[str, int]:
    scores: dict[str, int] = {}
    for item in given:
        option, sep, value = item.rpartition("=")
        if not sep or not option.strip():
            raise LocalError("unknown_option", f"--score {item!r}: write OPTION=SCORE, e.g. solar=5")
        try:
            scores[option.strip()] = int(value.strip())
        except ValueError:
            raise LocalError("vote_out_of_range", f"--score {item!r}: {value!r} is not a whole score") from None
    return scores


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
    ledger = parse_cid(args.ledger)
    amend = read_toml(args.amend, "bad_amendment") if args.amend else None
    body: dict[str, Any] = {"title": args.title, "options": args.option}
    for name, value in (("closes", args.closes), ("amend", amend), ("note", args.note)):
        if value is not None:
            body[name] = value

    def build(w: LocalWrites) -> Awaitable[Entry]:
        return w.write(ledger, lambda state, me, ts: governance_ops.create_motion(
            state, me, title=args.title, options=args.option, ts=ts, closes=args.closes, amend=amend, note=args.note))

    return await write_entry(args, f"/ledgers/{ledger}/motions", body, build)


async def cmd_vote(args: argparse.Namespace) -> int:
    motion = parse_cid(args.motion)
    scores = _scores(args.score)

    async def build(w: LocalWrites) -> Entry:
        ledger = await _motion_ledger_id(w.store, motion)
        return await w.write(ledger, lambda state, me, ts: governance_ops.vote(state, me, motion, scores, ts))

    return await write_entry(args, f"/motions/{motion}/votes", {"scores": scores}, build)


async def cmd_motion_close(args: argparse.Namespace) -> int:
    motion = parse_cid(args.motion)

    async def build(w: LocalWrites) -> Entry:
        ledger = await _motion_ledger_id(w.store, motion)
        return await w.write(ledger, lambda state, me, ts: governance_ops.close_motion(state, me, motion, ts,
                                                                                      early=args.early))

    return await write_entry(args, f"/motions/{motion}/close", {"early": True} if args.early else {}, build)


async def cmd_pledge_create(args: argparse.Namespace) -> int:
    ledger = parse_cid(args.ledger)
    options = {"per": args.per, "basis": args.basis, "until": args.until, "escalate": args.escalate,
               "note": args.note}
    body: dict[str, Any] = {"amount": args.amount, "unit": args.unit, "every": args.every, "start": args.start}
    body.update({k: v for k, v in options.items() if v is not None})

    def build(w: LocalWrites) -> Awaitable[Entry]:
        return w.write(ledger, lambda state, me, ts: governance_ops.pledge(
            state, me, amount=args.amount, unit=args.unit, every=args.every, start=args.start, ts=ts, **options))

    return await write_entry(args, f"/ledgers/{ledger}/pledges", body, build)


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
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--title", required=True, metavar="TEXT")
    p.add_argument("--option", action="append", default=[], metavar="OPTION",
                   help="an option to score (repeatable, 2 or more; with --amend the default is yes and no)")
    p.add_argument("--closes", metavar="TIME", help="ISO 8601 date or date-time with offset; from then on any "
                   "member may close it (before, only you)")
    p.add_argument("--amend", metavar="RULES_FILE", help="a partial rules file (TOML): if the first option wins, "
                   "its tables replace the rules' own from the closing on")
    p.add_argument("--note", metavar="TEXT")
    p = add("close", cmd_motion_close, "close a motion, counting the latest ballot of each voter; prints the "
            "closing entry's id", msub)
    p.add_argument("motion", metavar="MOTION")
    p.add_argument("--early", action="store_true", help="close it before the closing time the members were told "
                   "(version 1 rules let its proposer; every member's node shows it was closed early)")
    p = add("show", cmd_motion_show, "a motion: options, totals, winner (once closed), ballots", msub)
    p.add_argument("motion", metavar="MOTION")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p = add("list", cmd_motion_list, "a ledger's motions, open and closed, with their totals", msub)
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--json", action="store_true", help="JSON Lines output")

    p = add("vote", cmd_vote, "score a motion's options (vote again to change your ballot); prints its id")
    p.add_argument("motion", metavar="MOTION")
    p.add_argument("--score", action="append", default=[], metavar="OPTION=N",
                   help="a whole score for an option (repeatable); an option left out is blank")

    pledge = add("pledge", missing_subcommand, "pledge recurring transfers to a ledger")
    psub = pledge.add_subparsers(dest="pledge_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = add("create", cmd_pledge_create, "pledge a transfer every period; prints the pledge's id", psub)
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--amount", required=True, metavar="N", help="due each period (per --per unit), e.g. 0.10")
    p.add_argument("--unit", required=True, metavar="UNIT", help="one of the ledger's units, e.g. euro")
    p.add_argument("--per", metavar="UNIT", help="the amount is per unit of a basis, e.g. m2 (with --basis)")
    p.add_argument("--basis", metavar="N", help="how many --per units, e.g. 300")
    p.add_argument("--every", required=True, choices=tuple(PERIODS))
    p.add_argument("--start", required=True, metavar="YYYY-MM", help="the first period's month")
    p.add_argument("--until", metavar="YYYY-MM", help="no period starts after this month")
    p.add_argument("--escalate", metavar="RISE",
                   help="how the amount rises after each full year: +5%%/year (5 %% a year, compounded) or "
                        "+0.05 euro/year (a fixed step in the pledge's unit)")
    p.add_argument("--note", metavar="TEXT")

    p = add("pledges", cmd_pledges, "a ledger's pledges: due, paid and running arrears per period")
    p.add_argument("ledger", metavar="LEDGER")
    p.add_argument("--as-of", metavar="DATE", help="count up to this day, YYYY-MM-DD (default: today, UTC)")
    p.add_argument("--json", action="store_true", help="JSON Lines output")
