"""The node's own `tally` commands: identity, ledgers and raw entries, verify, run, follow, forks, peers,
open and a one-shot sync (the ledger's, governance's, distribution's and keys' commands have modules of their own)."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from node import config as settings
from node.cli.context import init_home, node_client, open_store, print_id, required_node, serving_node, write_here
from node.cli.options import request_of
from node.cli.parsing import home_of, parse_cid
from node.store.store import Store
from node.views import entry_row, fork_row, ledger_row
from protocol import (
    CID,
    LocalError,
    SigningKey,
    TallyError,
    decode_entry,
    public_key_from_did,
    to_json_value,
)
from protocol.kel import founding_proof
from protocol.requests import AppendEntry, Follow, LedgerCreate
from protocol.writes import genesis_body


async def cmd_init(args: argparse.Namespace) -> int:
    home = home_of(args)
    if home.has_identity():
        raise LocalError("identity_exists", f"{home.key_path} exists; it is never overwritten")
    if args.import_key:
        try:
            data = Path(args.import_key).read_bytes()
        except OSError as exc:
            raise LocalError("bad_key_file", f"cannot read {args.import_key}: {exc.strerror}") from None
        key = SigningKey.from_key_file(data)
    else:
        import secrets

        key = SigningKey(secrets.token_bytes(32))
    await init_home(home, key)
    print_id(key.did)
    return 0


async def cmd_ledger_create(args: argparse.Namespace) -> int:
    genesis_body(args.name)  # the name is refused before the rules file is read
    founding = request_of(LedgerCreate, args)
    if founding.rules is not None and founding.visibility is not None:  # --public beats the file
        founding = replace(founding, rules={**founding.rules, "visibility": founding.visibility})
    home = home_of(args)
    key = home.load_key()
    # The ledger names the identity (SPEC.md §19.9): a later key of it proves itself with the home's key log.
    proof = founding_proof(home.identity(), key.public_key, home.load_key_log())
    founding.genesis(home.identity(), proof)  # refuse before writing
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            data = await client.call("POST", founding.api_path(), founding.to_json())
        print_id(data["id"])
        return 0
    entry = await write_here(home, key, lambda w: w.append(partial(founding.build, home.identity(), proof=proof)))
    print_id(entry.id)
    return 0


async def cmd_ledger_list(args: argparse.Namespace) -> int:
    store = await open_store(home_of(args))
    try:
        ledgers = await store.ledgers()
    finally:
        await store.close()
    for info in ledgers:
        if args.json:
            print(json.dumps(ledger_row(info), ensure_ascii=False))
        else:
            print(f"{info.id}\t{info.visibility}\t{info.entries} entries\t{info.name}")
    return 0


async def cmd_append(args: argparse.Namespace) -> int:
    asked = request_of(AppendEntry, args)
    home = home_of(args)
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            print_id((await client.call("POST", asked.api_path(), asked.to_json()))["id"])
        return 0
    print_id((await write_here(home, key, lambda w: w.append(asked.build))).id)
    return 0


async def cmd_log(args: argparse.Namespace) -> int:
    ledger = parse_cid(args.ledger)
    author = public_key_from_did(args.author) if args.author else None
    store = await open_store(home_of(args))
    try:
        if not await store.has_ledger(ledger):
            raise LocalError("unknown_ledger", f"no ledger {ledger} is stored here")
        async with contextlib.aclosing(store.log(ledger, author)) as entries:
            async for entry in entries:
                if args.json:
                    print(json.dumps(entry_row(entry), ensure_ascii=False, separators=(",", ":")))
                else:
                    body = json.dumps(to_json_value(entry.body), ensure_ascii=False, separators=(",", ":"))
                    print(f"{entry.author}\t{entry.seq}\t{entry.header.ts}\t{entry.kind}\t{entry.id}\t{body}")
    finally:
        await store.close()
    return 0


async def cmd_verify(args: argparse.Namespace) -> int:
    home = home_of(args)
    store = await open_store(home)
    bad: list[str] = []
    try:
        total = await store.count()
        async for problem in store.verify():
            bad.append(problem.entry_id)
            print(f"bad\t{problem.entry_id}\t{problem.code}\t{problem.message}")
        if bad and getattr(args, "repair", False):
            peers = [*args.peer, *settings.load(home.path).peers]
            bad = [entry_id for entry_id in bad if not await _repaired(store, entry_id, peers)]
        forks = await store.forks()
    finally:
        await store.close()
    for proof in forks:
        print(f"fork\t{proof.author}\t{proof.a.ledger_id}\tseq {proof.seq}\t{proof.a.id}\t{proof.b.id}")
    if bad:
        raise LocalError("store_corrupt", f"{len(bad)} problem(s) found in {total} stored entries"
                         + ("" if getattr(args, "repair", False) else "; `tally verify --repair` fetches good "
                            "copies from your peers"))
    print(f"ok\t{total} entries verified\t{len(forks)} known fork(s)")
    return 0


async def _repaired(store: Store, entry_id: str, peers: list[str]) -> bool:
    """Fetch a good copy of a damaged entry from the first peer that has one (`GET /api/v1/entries/{id}`); any
    peer's copy can be trusted once it is verified, since the id is the hash of the header."""
    import aiohttp  # here: every other command starts without aiohttp's client (~0.1 s)

    try:
        wanted = CID.parse(entry_id)
    except TallyError:
        return False
    for peer in peers:
        url = peer.replace("ws://", "http://", 1).replace("wss://", "https://", 1).rstrip("/")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
                    session.get(f"{url}/api/v1/entries/{wanted}") as resp:
                data = await resp.json(content_type=None) if resp.status == 200 else None
            if not isinstance(data, dict):
                continue
            payload = data.get("payload_raw")
            entry = decode_entry(base64.b64decode(data["header_raw"]),
                                 None if payload is None else base64.b64decode(payload))
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError, TypeError, TallyError):
            continue
        if entry.id == wanted and entry.payload_raw is not None and await store.repair(entry):
            print(f"repaired\t{wanted}\tfrom {peer}")
            return True
    print(f"unrepaired\t{wanted}\tno peer gave a good copy")
    return False


async def cmd_follow(args: argparse.Namespace) -> int:
    ledger = request_of(Follow, args).ledger
    home = home_of(args)
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            await client.follow(ledger)
    else:
        store = await open_store(home)
        try:
            await store.follow(ledger)
        finally:
            await store.close()
    print_id(ledger)
    return 0


async def cmd_forks(args: argparse.Namespace) -> int:
    store = await open_store(home_of(args))
    try:
        proofs = await store.forks()
    finally:
        await store.close()
    for proof in proofs:
        row = fork_row(proof)
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print("\t".join(str(row[k]) for k in ("author", "ledger", "seq", "a", "b", "proof")))
    return 0


async def cmd_peers(args: argparse.Namespace) -> int:
    home = home_of(args)
    node = await required_node(home)
    async with node_client(home, node) as client:
        peers = await client.peers()
    for peer in peers:
        if args.json:
            print(json.dumps(peer, ensure_ascii=False))
        else:
            state = "connected" if peer.get("connected") else "disconnected"
            fields = (peer.get("id") or "-", peer.get("address") or "-", peer.get("found") or "-", state,
                      f"last sync {_when(peer.get('last_sync'))}", f"{peer.get('entries_behind', 0)} behind")
            print("\t".join(str(f) for f in fields))
    return 0


async def cmd_open(args: argparse.Namespace) -> int:
    """A one-time login link to the running node's dashboard, as the last line of stdout."""
    home = home_of(args)
    node = await required_node(home)
    async with node_client(home, node) as client:
        link = await client.call("POST", "/login-links", {})
    base = (args.address or node.address).rstrip("/")
    url = f"{base}{link['path']}"
    print(f"Open this link in your browser within 5 minutes; it works once and logs you in as this node's owner"
          f" ({_when(link['expires'])} is its deadline):", file=sys.stderr)
    if args.browser:
        if _has_display():
            import webbrowser

            if not webbrowser.open(url):
                print("no browser could be started: open the link yourself", file=sys.stderr)
        else:
            print("no display here: open the link in a browser yourself", file=sys.stderr)
    print(url, flush=True)
    return 0


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _when(ms: object) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
