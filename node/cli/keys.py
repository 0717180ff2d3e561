"""`tally key …`, `tally device …`, `tally recover …`: the member's keys in every ledger they belong to (SPEC.md
§19); `tally erase`: drop one of their entries' payload (§20).

Key events are written in each ledger the identity is a member of (one command, every ledger), on the
home's own store through the one local write path (node/store/writes.py): these commands refuse while
`tally run` serves the home (`already_running`), since a rotation changes the key the running node signs with.
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from functools import partial

from node.cli.context import open_store, print_id, print_rows, serving_node, write_here
from node.cli.ledger import ledger_state, write_entry
from node.cli.options import request_of
from node.cli.parsing import home_of
from node.home import Home
from node.ledger_views import device_rows
from node.store.ledgers import load_state
from node.store.store import Store, wall_clock_ms
from node.store.writes import FoldedStates, LocalWrites
from protocol import CID, Entry, LocalError, SigningKey, key_ops, public_key_from_did
from protocol.requests import Erase, RecoverApprove
from protocol.state import LedgerState
from protocol.writes import AppendRequest

Build = Callable[[LedgerState, str, int], AppendRequest | None]


async def _offline(home: Home) -> SigningKey:
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        raise LocalError("already_running", f"a node (pid {node.pid}) serves {home.path}: stop it (Ctrl-C on "
                         "`tally run`) before changing its keys, then start it again")
    return key


async def _my_ledgers(store: Store, me: str) -> list[LedgerState]:
    """The states of the ledgers stored here where `me` is a current member."""
    states = [await ledger_state(store, info.id) for info in await store.ledgers()]
    return [s for s in states if me in s.members]


async def _in_every_ledger(writes: LocalWrites, build: Build) -> list[Entry]:
    """Append, through the one local write path, what `build` makes in each of the member's ledgers (None:
    nothing there); the entries."""
    written = []
    for state in await _my_ledgers(writes.store, writes.me):
        made = build(state, writes.me, writes.wall_ms())
        if made is not None:
            written.append(await writes.append(partial(_made, made)))
    return written


def _made(made: AppendRequest, ts: int) -> AppendRequest:
    """What was built already (its timestamp taken when it was)."""
    return made


async def _write(args: argparse.Namespace, build: Build) -> int:
    home = home_of(args)
    key = await _offline(home)
    written = await write_here(home, key, lambda writes: _in_every_ledger(writes, build))
    if not written:
        raise LocalError("not_member", "you are a member of no ledger stored here: nothing was written")
    for entry in written:
        print_id(entry.id)
    return 0


async def cmd_key_incept(args: argparse.Namespace) -> int:
    """Commit to next.key in every ledger that has no commitment of this identity yet."""
    home = home_of(args)
    following = home.load_next_key()
    if following is None:  # a home made before pre-rotation (§19.4)
        following = SigningKey(secrets.token_bytes(32))
        home.add_next_key(following)
    home.ensure_key_log()

    def build(state: LedgerState, me: str, ts: int) -> AppendRequest | None:
        if not key_ops.needs_inception(state, me):
            return None
        return key_ops.incept(state, me, following.public_key, ts)

    return await _write(args, build)


async def cmd_key_rotate(args: argparse.Namespace) -> int:
    """Sign with next.key from now on, in every ledger; the old key's later entries are refused everywhere."""
    home = home_of(args)
    key = await _offline(home)
    me = home.identity()
    home.ensure_key_log()  # before the key changes: the log starts with the identity's own key
    new = home.load_next_key()
    if new is None:  # a home made before pre-rotation (§19.4): make its next key now
        new = SigningKey(secrets.token_bytes(32))
    after = SigningKey(secrets.token_bytes(32))
    store = await open_store(home, key)
    try:
        states = await _my_ledgers(store, me)
        if not states:
            raise LocalError("not_member", "you are a member of no ledger stored here: nothing to rotate")
        uncommitted = [s for s in states if key_ops.needs_inception(s, me)]
        if uncommitted:
            # Peers let the new key in only once they hold the commitment (§19.8): commit now, rotate later.
            writes = LocalWrites(store, FoldedStates(store), me, wall_clock_ms)
            for state in uncommitted:
                print_id((await writes.append(partial(key_ops.incept, state, me, new.public_key))).id)
            if home.load_next_key() is None:
                home.add_next_key(new)
            print(f"committed to next.key in {len(uncommitted)} ledger(s) first: start `tally run` until your "
                  "peers have these entries, then run `tally key rotate` again", flush=True)
            return 0
        lasts: dict[bytes, CID] = {}
        for state in states:
            head = await store.head(state.ledger, key.public_key)
            assert head is not None  # a member who incepted here has written here
            lasts[state.ledger.raw] = head.id
            await store.follow(state.ledger)  # the new key founded nothing: keep replicating what the old one did
    finally:
        await store.close()

    async def rotate_everywhere(writes: LocalWrites) -> None:  # signed with the new key
        for ledger in [s.ledger for s in states]:
            state = await writes.state(ledger)

            def rotation(ts: int, state: LedgerState = state, last: CID = lasts[ledger.raw]) -> AppendRequest:
                return key_ops.rotate(state, me, current=key.did, new_key=new.public_key, after=after.public_key,
                                      last=last, ts=ts)

            print_id((await writes.append(rotation)).id)

    await write_here(home, new, rotate_everywhere)
    home.rotate(new, after, me)
    print(f"rotated: {me} now signs with {new.did}; the old key's entries after now are refused", flush=True)
    return 0


async def cmd_device_add(args: argparse.Namespace) -> int:
    public_key_from_did(args.key)  # bad_did before anything is written
    return await _write(args, lambda state, me, ts: key_ops.add_device(state, me, args.key, args.name, ts))


async def cmd_device_revoke(args: argparse.Namespace) -> int:
    home = home_of(args)

    def build(state: LedgerState, me: str, ts: int) -> AppendRequest | None:
        if not any(d.key == args.key and d.revoked is None for d in key_ops.keys_of(state, me).devices):
            return None
        # The device's entries held here count; whatever it writes from now on does not.
        return key_ops.revoke_device(state, me, args.key, lasts.get(state.ledger.raw), ts)

    key = await _offline(home)
    device = public_key_from_did(args.key)
    lasts = {}

    async def revoke_everywhere(writes: LocalWrites) -> list[Entry]:
        for state in await _my_ledgers(writes.store, writes.me):
            head = await writes.store.head(state.ledger, device)
            if head is not None:
                lasts[state.ledger.raw] = head.id
        return await _in_every_ledger(writes, build)

    written = await write_here(home, key, revoke_everywhere)
    if not written:
        raise LocalError("bad_key_event", f"{args.key} is not a device of yours in any ledger stored here")
    for entry in written:
        print_id(entry.id)
    return 0


async def cmd_device_list(args: argparse.Namespace) -> int:
    home = home_of(args)
    store = await open_store(home)
    try:
        states = await _my_ledgers(store, home.identity())
    finally:
        await store.close()
    print_rows(device_rows(states, home.identity()), args.json,
               lambda row: f"{row['key']}\t{row['name'] or '-'}\tadded {row['added']}\t"
               f"{'revoked ' + row['revoked'] if row['revoked'] else 'active'}")
    return 0


async def cmd_device_join(args: argparse.Namespace) -> int:
    """On a new device: write as the member DID, once they added this device's key."""
    home = home_of(args)
    await _offline(home)
    public_key_from_did(args.identity)
    home.write_as(args.identity)
    print(f"this home writes as {args.identity} where it is a device of theirs; its key:", flush=True)
    print_id(home.load_key().did)
    return 0


async def cmd_recover_request(args: argparse.Namespace) -> int:
    """On a new home, for a member who lost their keys: follow LEDGER and write as OLD_DID once recovered."""
    home = home_of(args)
    key = await _offline(home)
    public_key_from_did(args.identity)
    ledger = CID.parse(args.ledger.strip())
    home.write_as(args.identity)
    store = await open_store(home, key)
    try:
        await store.follow(ledger)
    finally:
        await store.close()
    print(f"ask other members of {ledger} to run (as many as the ledger's recovery quorum):", flush=True)
    print(f"  tally recover approve {ledger} {args.identity} {key.did}", flush=True)
    print_id(key.did)
    return 0


async def cmd_recover_approve(args: argparse.Namespace) -> int:
    """Approve NEW_DID as the key of OLD_DID, a member who lost theirs."""
    home = home_of(args)
    key = await _offline(home)
    request = request_of(RecoverApprove, args)
    public_key_from_did(request.key)  # refused before the store opens
    print_id((await write_here(home, key, lambda w: w.submit(request))).id)
    return 0


async def cmd_erase(args: argparse.Namespace) -> int:
    """Erase the payload of ENTRY_ID, an entry this home's key wrote; the header stays (SPEC.md §20)."""
    request = request_of(Erase, args)

    async def build(w: LocalWrites) -> Entry:
        written = await w.submit(request)
        await load_state(w.store, written.ledger_id)  # computing the state drops the bytes (node/store/ledgers.py)
        return written

    return await write_entry(args, request.api_path(), request.to_json(), build)
