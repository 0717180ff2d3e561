"""The member's commands of `tally`: member admit/leave, contribute, endorse, history, state.

Writes are the declared requests of protocol/requests.py, their options made from the declaration
(node/cli/options.py): posted to the running node's API when one runs (it checks them against its
cached state), else written here through the one local write path (`submit`: the state computed from
the store, the entry built by the request, which refuses with the code the member sees and appends
nothing). Reads come straight from the store.
Declared in node/cli/parser.py; the output contract is node/cli/main.py's.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from node.cli.context import node_client, open_store, print_id, serving_node, write_here
from node.cli.options import request_of
from node.cli.parsing import UsageError, home_of, parse_cid
from node.exports import csv_cell
from node.governance_views import motion_lines, pledge_lines
from node.ledger_views import HISTORY_COLUMNS, HistoryQuery, state_json
from node.store.store import Store
from node.store.writes import LocalWrites, stored_state
from protocol import CID, Entry, LocalError
from protocol.decimals import format_decimal
from protocol.requests import Admit, Contribute, Endorse, Leave, LedgerWrite, Name
from protocol.state import ERASED, LedgerState

#: Writes the entry through the one local write path (node/store/writes.py): the ledger's state, the entry
#: built from it, signed and appended.
Build = Callable[[LocalWrites], Awaitable[Entry]]


async def ledger_state(store: Store, ledger: CID) -> LedgerState:
    """The ledger's state from the snapshot a node kept of it, when current (node/store/writes.py stored_state)."""
    state = await stored_state(store, ledger)
    if state is None:
        raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
    return state


async def write_entry(args: argparse.Namespace, path: str, body: dict[str, Any], build: Build) -> int:
    """POST `body` to the running node's `path`, or build and append the entry here; print its id."""
    home = home_of(args)
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            data = await client.call("POST", path, body)
        print_id(data["id"])
        return 0
    print_id((await write_here(home, key, build)).id)
    return 0


# ---- writes --------------------------------------------------------------------------------


async def submit(args: argparse.Namespace, declared: type[LedgerWrite]) -> int:
    """The declared write the command line asks for, through the running node's API or here; print its id."""
    request = request_of(declared, args)
    return await write_entry(args, request.api_path(), request.to_json(), lambda w: w.submit(request))


async def cmd_member_admit(args: argparse.Namespace) -> int:
    return await submit(args, Admit)


async def cmd_member_leave(args: argparse.Namespace) -> int:
    return await submit(args, Leave)


async def cmd_member_name(args: argparse.Namespace) -> int:
    return await submit(args, Name)


async def cmd_contribute(args: argparse.Namespace) -> int:
    if args.at is not None and args.end is not None:
        raise UsageError("argument --to: not allowed with argument --at")
    return await submit(args, Contribute)


async def cmd_endorse(args: argparse.Namespace) -> int:
    return await submit(args, Endorse)


# ---- reads ---------------------------------------------------------------------------------


async def _read_state(args: argparse.Namespace) -> tuple[LedgerState, Store]:
    ledger = parse_cid(args.ledger)
    store = await open_store(home_of(args))
    try:
        return await ledger_state(store, ledger), store
    except BaseException:
        await store.close()
        raise


async def cmd_history(args: argparse.Namespace) -> int:
    query = HistoryQuery(agent=args.agent, action=args.action, since=args.since, until=args.until,
                         status=args.status)
    state, store = await _read_state(args)
    await store.close()
    rows = query.rows(state)
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row[k]) for k in HISTORY_COLUMNS])
    elif args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    else:
        for row in rows:
            print(_history_line(row))
    return 0


def _history_line(row: dict[str, Any]) -> str:
    """One contribution: when, status, what, who, claim, id, note."""
    if row["at"] is not None:
        when = row["at"]
    elif row["from"] is not None:
        when = f"{row['from']}..{row['to']}"
    else:
        when = datetime.fromtimestamp(row["ts"] / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if row["status"] == ERASED:  # nothing of what it said is left (SPEC.md §20)
        return "\t".join([when, ERASED, "-", row["author"], "claim 0", "+0 -0", row["id"], ""])
    what = f"{row['action']} {row['quantity']} {row['unit']}"
    if row["classification"]:
        what += f" ({row['classification']})"
    votes = f"+{len(row['accepts'])} -{len(row['rejects'])}"
    fields = [when, row["status"], what, f"{row['provider']} -> {row['receiver']}", f"claim {row['claim']}",
              votes, row["id"], row["note"]]
    return "\t".join(fields)


async def cmd_state(args: argparse.Namespace) -> int:
    state, store = await _read_state(args)
    try:
        forks = await store.forks()
    finally:
        await store.close()
    data = state_json(state, forks)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
        return 0
    rules = state.rules
    print(f"ledger\t{data['ledger']}\t{rules.name}")
    print(f"rules\t{rules.visibility}\taccept {rules.validation.accept}\treject {rules.validation.reject}\t"
          f"units {','.join(rules.units)}")
    for who in data["members"]:  # a member's name (member.about) follows their did:key when they gave one
        print(f"member\t{who}" + (f"\t{state.names[who]}" if who in state.names else ""))
    for who in data["left"]:
        print(f"left\t{who}")
    for agent, sponsorships in data["sponsorships"].items():
        print(f"sponsored\t{agent}\t{len(sponsorships)} sponsorship(s)")
    for who, totals in state.totals().items():
        amounts = ", ".join(f"{action} {format_decimal(q)} {unit}" for action, units in totals.quantities.items()
                            for unit, q in units.items())
        print(f"total\t{who}\tclaim {format_decimal(totals.claim)}\t{amounts}")
    for p in data["pending"]:
        print(f"pending\t{p['id']}\t{p['author']}\taccepts {len(p['accepts'])}/{rules.validation.accept}\t"
              f"rejects {len(p['rejects'])}/{rules.validation.reject}")
    for p in data["invalid"]:
        print(f"invalid\t{p['id']}\t{p['author']}\t{p['kind']}\t{p['code']}\t{p['message']}")
    for cid in data["waiting"]:
        print(f"waiting\t{cid}")
    for cid in data["quarantined"]:
        print(f"quarantined\t{cid}")
    for f in data["forks"]:
        print(f"fork\t{f['author']}\tseq {f['seq']}\t{f['a']}\t{f['b']}")
    for d in data["distributions"]:
        print(f"distribution\t{d['id']}\t{d['author']}\t{d['amount']} {d['unit']}\t{d['status']}"
              + ("\tcounts nothing: it paid a claim that an earlier distribution it did not count paid; "
                 "record it again" if d["status"] == "conflicting" else ""))
    for line in [*(x for m in data["motions"] for x in motion_lines(m)),
                 *(x for p in data["pledges"] for x in pledge_lines(p))]:
        print(line)
    print(f"digest\t{data['digest']}")
    return 0


# ---- parser ----------------------------------------------------------------------------------
