"""Building a member's key events (SPEC.md §19) from a ledger's state, checked before anything is signed.

Shared by the CLI and the API like protocol/ledger_ops.py: each function takes the
ledger's current state and the member's identity (their did:key as ledgers name
them) and returns the AppendRequest to make, or raises the code the member sees.
"""

from __future__ import annotations

from typing import Any

from .cid import CID
from .errors import InvalidData, LocalError
from .identity import public_key_from_did
from .keys import (
    DEVICE_KIND,
    INCEPT_KIND,
    RECOVER_KIND,
    REVOKE_KIND,
    ROTATE_KIND,
    IdentityKeys,
    next_digest,
    parse_key_event,
)
from .ledger_ops import membership
from .state import LedgerState
from .writes import AppendRequest


def _checked(state: LedgerState, kind: str, body: dict[str, Any], ts: int) -> AppendRequest:
    try:
        parse_key_event(kind, body)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, kind, body, ts)


def keys_of(state: LedgerState, me: str) -> IdentityKeys:
    """The member's keys here; an identity without key events has its implicit inception (§19.4)."""
    return state.identities.get(me) or IdentityKeys(me, me, None, None)


def needs_inception(state: LedgerState, me: str) -> bool:
    """Whether the member has no pre-rotation commitment in this ledger yet."""
    return keys_of(state, me).event is None


def incept(state: LedgerState, me: str, next_key: bytes, ts: int) -> AppendRequest:
    """key.incept: commit to `next_key` (a public key) as the one that may rotate this identity."""
    if not needs_inception(state, me):
        raise LocalError("bad_key_event", f"{me} already committed to a next key in ledger {state.ledger}")
    return _checked(state, INCEPT_KIND, {"next": next_digest(next_key), "member": membership(state, me)}, ts)


def rotate(state: LedgerState, me: str, *, current: str, new_key: bytes, after: bytes, last: CID,
           ts: int) -> AppendRequest:
    """key.rotate, to be signed by `new_key` (the committed next key): the current key's entries up to `last`
    count, and `after` becomes the next key."""
    ident = keys_of(state, me)
    if ident.event is None or ident.next is None:
        raise LocalError("bad_key_event", f"{me} has no key.incept in ledger {state.ledger}: incept first")
    if ident.key != current:
        raise LocalError("bad_key_event", f"this home's key {current} is not {me}'s current key in {state.ledger}")
    if next_digest(new_key) != ident.next:
        raise LocalError("bad_key_event", "next.key is not the key this identity committed to")
    body = {"identity": me, "prior": ident.event, "last": last, "next": next_digest(after),
            "member": membership(state, me)}
    return _checked(state, ROTATE_KIND, body, ts)


def add_device(state: LedgerState, me: str, device: str, name: str, ts: int) -> AppendRequest:
    """key.device: the key `device` (a did:key) writes as `me` from now on."""
    key = public_key_from_did(device)
    ident = keys_of(state, me)
    if device == me or device in ident.writers():
        raise LocalError("bad_key_event", f"{device} already writes as {me} in ledger {state.ledger}")
    return _checked(state, DEVICE_KIND, {"key": key, "name": name, "member": membership(state, me)}, ts)


def revoke_device(state: LedgerState, me: str, device: str, last: CID | None, ts: int) -> AppendRequest:
    """key.revoke: the device's entries after `last` (all of them when None) no longer count."""
    grant = next((d for d in keys_of(state, me).devices if d.key == device and d.revoked is None), None)
    if grant is None:
        raise LocalError("bad_key_event", f"{device} is not a device of {me} in ledger {state.ledger}")
    return _checked(state, REVOKE_KIND, {"device": grant.grant, "last": last, "member": membership(state, me)}, ts)


def approve_recovery(state: LedgerState, me: str, identity: str, new_key: str, last: CID | None,
                     ts: int) -> AppendRequest:
    """key.recover: `me` approves `new_key` as `identity`'s key, naming the approvals so far in `with` and
    the latest entry of `identity` this node holds in `last` (it and what it knew of still count)."""
    key = public_key_from_did(new_key)
    if identity == me:
        raise LocalError("self_recovery", "the other members approve your recovery, not you")
    if identity not in state.members:
        raise LocalError("not_member", f"{identity} is not a member of ledger {state.ledger}")
    body: dict[str, Any] = {"identity": identity, "key": key, "member": membership(state, me)}
    if last is None and state.admissions.get(identity, state.ledger) != state.ledger:
        # An identity that wrote nothing here: its admission puts it among the members of this approval's past.
        last = state.admissions[identity]
    earlier = state.recoveries.get((identity, new_key), ())
    if earlier:
        body["with"] = list(earlier)
    if last is not None:
        body["last"] = last
    return _checked(state, RECOVER_KIND, body, ts)


def grant_for(state: LedgerState, identity: str, key: str) -> CID | None:
    """What the first entry of `key` in this ledger names as `grant` to write as `identity` (§19.2): its
    device grant, or the recovery that made it the identity's key; None when nothing authorizes it."""
    ident = state.identities.get(identity)
    if ident is None or key == identity:
        return None
    if ident.recovered is not None and ident.key == key:
        return ident.recovered
    return next((d.grant for d in ident.devices if d.key == key and d.revoked is None), None)
