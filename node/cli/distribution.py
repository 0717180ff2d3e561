"""`tally distribute` and `tally export`: value equations and exports (SPEC.md §17).

A preview and an export read the store (no node needed). `distribute --record`
goes through the running node's API when one runs, else computes the state from
the store and appends the `ledger.distribution` entry itself; either way a
refusal appends nothing. Declared in node/cli/parser.py; the output
contract is node/cli/main.py's (an id recorded prints as the last line).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from node.cli.context import node_client, open_store, serving_node
from node.cli.options import request_of
from node.cli.parsing import home_of, parse_cid
from node.exports import distribution_json, export_text
from node.store.store import wall_clock_ms
from node.store.writes import FoldedStates, LocalWrites, stored_state
from protocol import CID, LocalError, ledger_ops
from protocol.payouts import Payout
from protocol.requests import RecordDistribution
from protocol.state import LedgerState


async def _stored_state(args: argparse.Namespace, ledger: CID) -> LedgerState:
    store = await open_store(home_of(args))
    try:
        state = await stored_state(store, ledger)
    finally:
        await store.close()
    if state is None:
        raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
    return state


async def cmd_distribute(args: argparse.Namespace) -> int:
    asked = request_of(RecordDistribution, args)
    if not args.record:
        _print(asked.ledger, asked.preview(await _stored_state(args, asked.ledger)), None, as_json=args.json)
        return 0
    home = home_of(args)
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            data = await client.call("POST", asked.api_path(), asked.to_json())
        _print_answer(data, as_json=args.json)
        return 0
    store = await open_store(home, key)
    try:
        writes = LocalWrites(store, FoldedStates(store), home.identity(), wall_clock_ms)
        state = await writes.state(asked.ledger)
        payout = asked.preview(state)
        entry = await writes.append(lambda ts: ledger_ops.record_distribution(state, writes.me, payout, ts))
    finally:
        await store.close()
    _print(asked.ledger, payout, str(entry.id), as_json=args.json)
    return 0


def _print(ledger: CID, payout: Payout, entry_id: str | None, *, as_json: bool) -> None:
    data = distribution_json(ledger, payout)
    if entry_id is not None:
        data["id"] = entry_id
    _print_answer(data, as_json=as_json)


def _print_answer(data: dict[str, Any], *, as_json: bool) -> None:
    """One JSON object, or a line per (bucket, recipient, amount, unit) then the entry id if one was recorded."""
    if as_json:
        print(json.dumps(data, ensure_ascii=False, separators=(",", ":")), flush=True)
        return
    for line in data["lines"]:
        print(f"{line['bucket']}\t{line['recipient']}\t{line['amount']}\t{data['unit']}")
    if "id" in data:
        print(data["id"], flush=True)


async def cmd_export(args: argparse.Namespace) -> int:
    state = await _stored_state(args, parse_cid(args.ledger))
    sys.stdout.write(export_text(state, args.format))
    sys.stdout.flush()
    return 0
