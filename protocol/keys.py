"""Identities that outlive their keys (SPEC.md §19): key events are entries of each ledger.

An identity is the did:key of its first key (its **inception key**). Its key events
live in every ledger it belongs to, as entries of that ledger (never in one shared
log: a member of two coops would otherwise show one coop's records to the other):

- `key.incept`: the inception key commits to the digest of the next key (pre-rotation);
- `key.rotate`: the committed next key takes over; it is seq 1 of its own chain and
  names the last entry of the retiring key that still counts;
- `key.device`, `key.revoke`: another key writes as the identity (its own chain), or
  no longer does after a named last entry;
- `key.recover`: other members approve a new key for a member who lost theirs.

A key that is not the identity's inception key names what authorizes it in the
`grant` link of its chain's first entry (the rotation is itself that first entry), so
the authorization is in the causal past of everything the key writes. This module
parses payloads and answers the questions the fold (protocol/state.py) asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .cid import CID
from .entry import Entry
from .errors import InvalidData
from .identity import did_from_public_key, public_key_from_did
from .valueflows import check_keys as _only
from .valueflows import member_link

INCEPT_KIND: Final = "key.incept"
ROTATE_KIND: Final = "key.rotate"
DEVICE_KIND: Final = "key.device"
REVOKE_KIND: Final = "key.revoke"
RECOVER_KIND: Final = "key.recover"
KEY_KINDS: Final = frozenset({INCEPT_KIND, ROTATE_KIND, DEVICE_KIND, REVOKE_KIND, RECOVER_KIND})
#: The optional link, on a chain's first entry, to what authorizes its key for an identity.
KEY_LINK: Final = "grant"
MAX_DEVICE_NAME_CHARS: Final = 64
MAX_APPROVALS_NAMED: Final = 64
#: Rounds of the fold that settle which keys are cut off (SPEC.md §19.6); the last one stands.
MAX_KEY_ROUNDS: Final = 8
ROTATED, REVOKED = "key_rotated", "key_revoked"


def next_digest(public_key: bytes) -> bytes:
    """What a key event commits to: sha2-256 of the next key's 32 public-key bytes."""
    return hashlib.sha256(public_key).digest()


@dataclass(frozen=True, slots=True)
class Incept:
    next: bytes
    member: CID


@dataclass(frozen=True, slots=True)
class Rotate:
    identity: str
    prior: CID  # the identity's key event that committed to this entry's author (a key.incept or key.rotate)
    last: CID  # the retiring key's last entry that still counts
    next: bytes
    member: CID


@dataclass(frozen=True, slots=True)
class Device:
    key: bytes
    name: str
    member: CID


@dataclass(frozen=True, slots=True)
class Revoke:
    device: CID  # the key.device entry that authorized the key
    last: CID | None  # the device's last entry that still counts; None: none of them
    member: CID


@dataclass(frozen=True, slots=True)
class Recover:
    identity: str
    key: bytes
    with_: tuple[CID, ...]  # earlier approvals of the same identity and key the author saw
    member: CID
    last: CID | None = None  # the latest entry of the identity the author holds: it and its past still count


KeyEvent = Incept | Rotate | Device | Revoke | Recover


def _link(body: Mapping[str, Any], key: str, kind: str) -> CID:
    value = body.get(key)
    if not isinstance(value, CID):
        raise InvalidData("bad_reference", f"{kind}.{key} must be a link to an entry")
    return value


def _maybe_link(body: Mapping[str, Any], key: str, kind: str) -> CID | None:
    return None if body.get(key) is None else _link(body, key, kind)


def _bytes32(body: dict[str, Any], key: str, kind: str) -> bytes:
    value = body.get(key)
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidData("bad_key_event", f"{kind}.{key} must be 32 bytes")
    return value


def _identity(body: dict[str, Any], kind: str) -> str:
    value = body.get("identity")
    if not isinstance(value, str):
        raise InvalidData("bad_agent", f"{kind}.identity must be a did:key")
    public_key_from_did(value)  # bad_did when it is not one
    return value


def parse_key_event(kind: str, body: dict[str, Any]) -> KeyEvent:
    """The record of a key-event payload, or InvalidData with the code a member sees."""
    if kind == INCEPT_KIND:
        _only(body, frozenset({"next", "member"}), kind)
        return Incept(_bytes32(body, "next", kind), member_link(body, kind))
    if kind == ROTATE_KIND:
        _only(body, frozenset({"identity", "prior", "last", "next", "member"}), kind)
        return Rotate(_identity(body, kind), _link(body, "prior", kind), _link(body, "last", kind),
                      _bytes32(body, "next", kind), member_link(body, kind))
    if kind == DEVICE_KIND:
        _only(body, frozenset({"key", "name", "member"}), kind)
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_DEVICE_NAME_CHARS or not name.isprintable():
            raise InvalidData("bad_field", f"name must be printable text of at most {MAX_DEVICE_NAME_CHARS} "
                              "characters")
        return Device(_bytes32(body, "key", kind), name, member_link(body, kind))
    if kind == REVOKE_KIND:
        _only(body, frozenset({"device", "last", "member"}), kind)
        return Revoke(_link(body, "device", kind), _maybe_link(body, "last", kind), member_link(body, kind))
    if kind == RECOVER_KIND:
        _only(body, frozenset({"identity", "key", "with", "last", "member"}), kind)
        named = body.get("with", [])
        if (not isinstance(named, list) or len(named) > MAX_APPROVALS_NAMED
                or not all(isinstance(c, CID) for c in named)):
            raise InvalidData("bad_reference", f"with must list at most {MAX_APPROVALS_NAMED} links to approvals")
        raws = [c.raw for c in named]
        if raws != sorted(set(raws)):
            raise InvalidData("bad_reference", "with: sorted by their binary CID, no duplicates")
        return Recover(_identity(body, kind), _bytes32(body, "key", kind), tuple(named), member_link(body, kind),
                       _maybe_link(body, "last", kind))
    raise ValueError(f"not a key event kind: {kind}")


def key_event_deps(record: KeyEvent) -> list[CID]:
    """The links of a key event that are dependencies (SPEC.md §16.2)."""
    if isinstance(record, Rotate):
        return [record.member, record.prior, record.last]
    if isinstance(record, Revoke):
        return [record.member, record.device] + ([record.last] if record.last is not None else [])
    if isinstance(record, Recover):
        return [record.member, *record.with_] + ([record.last] if record.last is not None else [])
    return [record.member]


def take_key_link(body: dict[str, Any]) -> tuple[dict[str, Any], CID | None]:
    """The payload without its `grant` link (the same dict when it has none), and the link."""
    if KEY_LINK not in body:
        return body, None
    link = body[KEY_LINK]
    if not isinstance(link, CID):
        raise InvalidData("bad_reference", "key must be a link to the entry that authorizes the author's key")
    return {k: v for k, v in body.items() if k != KEY_LINK}, link


def has_key_events(entry: Entry) -> bool:
    """Whether an entry is a key event or names one in `grant` (SPEC.md §19)."""
    return entry.kind in KEY_KINDS or (entry.body is not None and KEY_LINK in entry.body)


def claimed_agents(entries: Mapping[bytes, Entry]) -> dict[bytes, str]:
    """Which identity each key of the ledger claims to write as (public key -> did:key).

    Read from the first entry of each chain: a key.rotate names its identity; a `grant`
    link names a key.device (the identity its author writes as) or a key.recover (its
    identity). Keys without a claim write as themselves. Whether a claim holds is
    checked when the entry is applied; this only says whom to check it against.
    """
    firsts = {e.header.author: e for e in entries.values() if e.header.prev is None}
    memo: dict[bytes, str] = {}

    def resolve(public_key: bytes, depth: int) -> str:
        if public_key in memo:
            return memo[public_key]
        agent: str = did_from_public_key(public_key)
        first = firsts.get(public_key)
        body = first.body if first is not None else None
        if first is not None and body is not None and depth < MAX_KEY_ROUNDS:
            identity = body.get("identity")
            link = body.get(KEY_LINK)
            grant = entries.get(link.raw) if isinstance(link, CID) else None
            grant_body = grant.body if grant is not None else None
            if first.kind == ROTATE_KIND and isinstance(identity, str):
                agent = identity
            elif first.is_genesis:
                agent = founding_identity(body, public_key) or agent
            elif grant is not None and grant_body is not None and grant_body.get("key") == public_key:
                if grant.kind == DEVICE_KIND:
                    agent = resolve(grant.header.author, depth + 1)
                elif grant.kind == RECOVER_KIND and isinstance(grant_body.get("identity"), str):
                    agent = grant_body["identity"]
        memo[public_key] = agent
        return agent

    return {public_key: resolve(public_key, 0) for public_key in firsts}


def founding_identity(genesis: Mapping[str, Any], public_key: bytes) -> str | None:
    """The identity a genesis's rules name as `creator` when its key log ends at the genesis's author (the rules
    checked the log's signatures: a ledger whose rules do not parse has no state at all)."""
    creator = genesis.get("creator")
    if not isinstance(creator, dict) or not isinstance(creator.get("identity"), str):
        return None
    steps = creator.get("keys")
    if not isinstance(steps, list) or not steps or not isinstance(steps[-1], list) or not steps[-1]:
        return None
    return str(creator["identity"]) if steps[-1][0] == public_key else None


@dataclass(frozen=True, slots=True)
class DeviceState:
    key: str  # the device's did:key
    name: str
    grant: CID  # the key.device entry
    added: int  # its ts (ms)
    revoked: CID | None = None  # the key.revoke entry, if any
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class IdentityKeys:
    """One identity's keys in one ledger, as its valid key events say."""

    identity: str
    key: str  # its main key: the inception key, the latest rotated-in key, or a recovered one
    event: CID | None  # its latest key.incept or key.rotate: what the next rotation names as `prior`
    next: bytes | None  # the digest that event committed to
    devices: tuple[DeviceState, ...] = ()
    recovered: CID | None = None  # the completing key.recover that made `key` its main key, if so

    def writers(self) -> tuple[str, ...]:
        """The keys that may write as the identity: its main key and devices not revoked."""
        return (self.key, *(d.key for d in self.devices if d.revoked is None))


