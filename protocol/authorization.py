"""Keys (SPEC.md §19; the payloads are in protocol/keys.py): whether an entry's key may write as its identity,
the checks of key events, and each identity's keys from its valid key events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from .entry import GENESIS_KIND
from .errors import InvalidData
from .identity import did_from_public_key
from .keys import REVOKED, ROTATED, DeviceState, IdentityKeys, Incept, KeyEvent, Recover, Revoke, Rotate, next_digest
from .keys import Device as DeviceGrant
from .prepared import Prepared
from .rules import Rules
from .valueflows import Admission


def authorize(node: Prepared, nodes: dict[bytes, Prepared], prev: Prepared | None) -> None:
    """May the entry's key write as its agent? Decided on a chain's first entry, inherited after."""
    entry = node.entry
    if prev is not None:
        node.key_ok, node.main, node.incepted = prev.key_ok, prev.main, prev.incepted
        if node.key_link is not None:
            raise InvalidData("bad_key_event", "only a key's first entry in a ledger names its authorization")
        if not prev.key_ok:
            raise InvalidData("key_not_authorized", f"{entry.author} is not a key of {node.agent}")
        return
    if node.agent == entry.author or entry.kind == GENESIS_KIND:
        # An identity's inception key; or the key its rules' `creator` log proves (§19.9: claimed_agents gives the
        # genesis another agent than its author only then).
        node.main = True
        if node.key_link is not None:
            raise InvalidData("key_not_authorized", "grant names no device grant or recovery of this key")
        return
    node.key_ok = False
    if isinstance(node.record, Rotate):
        return  # a rotation authorizes its own key once its checks pass (check_key_event)
    grant = nodes[node.key_link.raw] if node.key_link is not None else None
    if grant is None or grant.error is not None or getattr(grant.record, "key", None) != entry.header.author:
        raise InvalidData("key_not_authorized", "a key's first entry names the key.device or key.recover "
                          "entry that authorizes it as key")
    if isinstance(grant.record, DeviceGrant) and grant.agent == node.agent:
        node.key_ok = True
    elif isinstance(grant.record, Recover) and grant.complete and grant.record.identity == node.agent:
        node.key_ok = node.main = True
    else:
        raise InvalidData("key_not_authorized", "key names no device grant or completed recovery of this key")


def check_key_event(node: Prepared, record: KeyEvent, nodes: dict[bytes, Prepared], rules: Rules) -> None:
    entry, agent = node.entry, node.agent
    if isinstance(record, Incept):
        if not node.main or node.incepted:
            raise InvalidData("bad_key_event", "an identity incepts once per ledger, from its own or recovered key")
        node.incepted = True
    elif isinstance(record, Rotate):
        if entry.header.prev is not None:
            raise InvalidData("bad_key_event", "a rotation is the first entry of the new key in this ledger")
        prior, last = nodes[record.prior.raw], nodes[record.last.raw]
        if (not isinstance(prior.record, Incept | Rotate) or prior.error is not None
                or prior.agent != record.identity):
            raise InvalidData("bad_key_event", "prior names a valid key.incept or key.rotate of the identity")
        if next_digest(entry.header.author) != prior.record.next:
            raise InvalidData("bad_key_event", "this key is not the next key the identity committed to")
        if last.entry.header.author != prior.entry.header.author or last.entry.seq < prior.entry.seq:
            raise InvalidData("bad_key_event", "last names an entry of the retiring key, at or after prior")
        node.key_ok = node.main = node.incepted = True
    elif isinstance(record, DeviceGrant):
        if record.key == entry.header.author or did_from_public_key(record.key) == agent:
            raise InvalidData("bad_key_event", "a device is another key than the identity's own")
    elif isinstance(record, Revoke):
        device = nodes[record.device.raw]
        if not isinstance(device.record, DeviceGrant) or device.error is not None or device.agent != agent:
            raise InvalidData("bad_key_event", "device names a valid key.device of the same identity")
        if record.last is not None and nodes[record.last.raw].entry.header.author != device.record.key:
            raise InvalidData("bad_key_event", "last names an entry of the revoked device, or is null")
    elif isinstance(record, Recover):
        if record.identity == agent:
            raise InvalidData("self_recovery", "a member cannot approve the recovery of their own identity")
        current = node.known - node.gone
        if record.identity not in current:
            raise InvalidData("not_member", f"{record.identity} is not a member here")
        if record.last is not None and not _of_identity(nodes[record.last.raw], record.identity):
            raise InvalidData("bad_key_event", "last names an entry of the identity to recover (or the admission "
                              "of one who wrote nothing), or is null")
        approvers = {agent}
        for cid in record.with_:
            other = nodes[cid.raw]
            if (isinstance(other.record, Recover) and other.error is None
                    and (other.record.identity, other.record.key) == (record.identity, record.key)):
                approvers.add(other.agent)
        # Never fewer approvers than the quorum: a coop too small for it cannot recover anyone.
        node.complete = len((approvers & current) - {record.identity}) >= rules.recovery


def _of_identity(node: Prepared, identity: str) -> bool:
    """An entry a recovery may name as `last`: the identity's own, or its completing admission (§19.2)."""
    admitted = isinstance(node.record, Admission) and node.record.agent == identity and node.complete
    return node.agent == identity or (admitted and node.error is None)


def identity_keys(valid: list[Prepared], nodes: dict[bytes, Prepared], agents: Mapping[bytes, str]
          ) -> tuple[dict[str, IdentityKeys], dict[bytes, tuple[int, str]]]:
    """Each identity's keys from its valid key events in canonical order, and the keys cut off
    (public key -> (the last seq that counts, code))."""
    idents: dict[str, IdentityKeys] = {}
    cut: dict[bytes, tuple[int, str]] = {}
    founding = next((n for n in valid if n.entry.kind == GENESIS_KIND), None)
    if founding is not None and founding.agent != founding.entry.author:  # founded by a later key (§19.9)
        idents[founding.agent] = IdentityKeys(founding.agent, founding.entry.author, None, None)

    def stop(key: bytes, seq: int, code: str) -> None:
        if key not in cut or seq < cut[key][0]:
            cut[key] = (seq, code)

    for n in valid:
        record, agent, entry = n.record, n.agent, n.entry
        if not isinstance(record, KeyEvent):
            continue
        ident = idents.get(agent) or IdentityKeys(agent, agent, None, None)
        if isinstance(record, Incept):
            ident = replace(ident, key=entry.author, event=entry.id, next=record.next)
        elif isinstance(record, Rotate):
            ident = replace(ident, key=entry.author, event=entry.id, next=record.next, recovered=None)
            stop(nodes[record.prior.raw].entry.header.author, nodes[record.last.raw].entry.seq, ROTATED)
        elif isinstance(record, DeviceGrant):
            device = DeviceState(did_from_public_key(record.key), record.name, entry.id, entry.header.ts)
            ident = replace(ident, devices=(*(d for d in ident.devices if d.key != device.key), device))
        elif isinstance(record, Revoke):
            grant = nodes[record.device.raw].record
            assert isinstance(grant, DeviceGrant)
            stop(grant.key, 0 if record.last is None else nodes[record.last.raw].entry.seq, REVOKED)
            ident = replace(ident, devices=tuple(
                replace(d, revoked=entry.id, revoked_at=entry.header.ts) if d.grant == record.device else d
                for d in ident.devices))
        elif isinstance(record, Recover):
            if not n.complete:
                continue
            agent = record.identity
            # The recovered key replaces every other key of the identity here, devices included:
            # each counts up to its last entry this recovery knew of.
            reach = _reach(n, nodes)
            for key, claimed in agents.items():
                if claimed == agent and key != record.key:
                    stop(key, reach.get(key, 0), ROTATED)
            ident = IdentityKeys(agent, did_from_public_key(record.key), None, None, recovered=entry.id)
        idents[agent] = ident
    return dict(sorted(idents.items())), cut


def _reach(node: Prepared, nodes: dict[bytes, Prepared]) -> dict[bytes, int]:
    """Per key, the highest seq of its entries in the node's causal past."""
    seen: set[bytes] = set()
    stack = [node.entry.id.raw]
    reach: dict[bytes, int] = {}
    while stack:
        raw = stack.pop()
        if raw in seen or raw not in nodes:
            continue
        seen.add(raw)
        entry = nodes[raw].entry
        reach[entry.header.author] = max(reach.get(entry.header.author, 0), entry.seq)
        stack += [d.raw for d in nodes[raw].deps]
    return reach
