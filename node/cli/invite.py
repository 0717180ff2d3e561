"""`tally invite`, `tally invites`, `tally join`: joining a ledger by invitation, no id typed (node/http/invites.py).

Invitations live in the home's store and are not cached by a running node, so `invite` and `invites` work on
the store whether or not `tally run` serves the home; `join` goes through the running node when there is one
(it then dials the inviter at once), else writes the store, and the next `tally run` dials the inviter.
"""

from __future__ import annotations

import argparse
import secrets

import segno

from node import config as settings
from node.cli.context import init_home, iso_time, node_client, open_store, print_id, print_rows, serving_node
from node.cli.ledger import ledger_state
from node.cli.options import request_of
from node.cli.parsing import home_of
from node.http import invites
from node.listen import local_address
from node.store.store import wall_clock_ms
from protocol import LocalError, SigningKey, ledger_ops
from protocol.requests import Invite, InviteRevoke, Join


async def cmd_invite(args: argparse.Namespace) -> int:
    home = home_of(args)
    asked = request_of(Invite, args)
    key = home.load_key()
    node = await serving_node(home, key)
    if asked.address is not None:
        address = asked.address
    elif node is not None:
        address = node.address
    else:
        address = local_address(*settings.load(home.path).listen)
    store = await open_store(home)
    try:
        ledger_ops.membership(await ledger_state(store, asked.ledger), home.identity())  # only a member sponsors
        link, invitation = invites.new_invitation(asked.ledger, asked.uses, asked.expires, wall_clock_ms(),
                                                  invites.check_address(address))
        await store.add_invitation(invitation)
    finally:
        await store.close()
    if args.qr:
        segno.make(str(link), error="m").terminal(compact=True)
    print(f"invitation {invites.invitation_id(invitation.hash)}: {invitation.uses} use(s) until "
          f"{iso_time(invitation.expires)}; give this link to the newcomer (it is shown only once):", flush=True)
    print_id(link)
    return 0


async def cmd_invites(args: argparse.Namespace) -> int:
    home = home_of(args)
    store = await open_store(home)
    try:
        if args.invitation is not None:  # --revoke ID
            asked = request_of(InviteRevoke, args)
            revoked = await store.revoke_invitation(asked.invitation)
            if revoked is None:
                raise LocalError("unknown_invitation", f"no open invitation's id starts with {asked.invitation!r}")
            print_id(invites.invitation_id(revoked.hash))
            return 0
        rows = [invites.invitation_row(i, wall_clock_ms()) for i in await store.invitations()]
    finally:
        await store.close()
    print_rows(rows, args.json, lambda row: f"{row['id']}\t{row['ledger']}\t{row['state']}\t{row['uses']} use(s) "
               f"left\texpires {iso_time(row['expires'])}")
    return 0


async def cmd_join(args: argparse.Namespace) -> int:
    home = home_of(args)
    link = invites.Link.parse(request_of(Join, args).link)
    if not home.has_identity():  # a newcomer's first command may be this one
        key = SigningKey(secrets.token_bytes(32))
        await init_home(home, key)
        print(f"made this home's identity: {key.did}", flush=True)
    key = home.load_key()
    node = await serving_node(home, key)
    if node is not None:
        async with node_client(home, node) as client:
            answer = await client.call("POST", Join.PATH, Join(link=str(link)).to_json())
    else:
        answer = await invites.redeem_there(link, key, home.identity())
        store = await open_store(home, key)
        try:
            await invites.joined(store, link, answer)
        finally:
            await store.close()
    state = "you are a member" if answer["member"] else "waiting for more members to sponsor you"
    print(f"joined {answer['name']!r}, sponsored by {answer['sponsor']}: {state}; "
          + ("syncing with the inviter's node now" if node is not None else "start `tally run` to sync it"),
          flush=True)
    print_id(answer["ledger"])
    return 0
