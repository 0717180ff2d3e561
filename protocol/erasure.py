"""Erasing a payload (SPEC.md §20): the header stays, so every chain still verifies; the bytes go.

A `ledger.erase` entry names an earlier entry of its own key's chain in the same ledger.
Once it is valid, the named entry is **erased** on every node, whether that node still
holds its payload or not: it counts for nothing, its only dependency is its `prev`, and
nodes drop its payload bytes. This module parses the payload and answers, from headers
alone, whether an entry may be erased; protocol/state.py applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .cid import CID
from .entry import Entry
from .errors import InvalidData
from .valueflows import check_keys, member_link, needs_membership

ERASE_KIND: Final = "ledger.erase"
#: Membership kinds whose payloads may be erased: what they say counts for nothing once erased, and nothing
#: else of the state (membership, keys, rules, distributions, motions) rests on them alone.
ERASABLE_KINDS: Final = frozenset({"vf.event", "vf.endorse", "member.about"})


MAX_KEPT_LINKS: Final = 64


@dataclass(frozen=True, slots=True)
class Erase:
    entry: CID  # the entry whose payload goes
    member: CID
    #: the `rules` links of the erased payload: they stay its dependencies, so the rules in effect of the
    #: later entries of its chain (§18.3) do not change when it is erased
    keep: tuple[CID, ...] = ()


def parse_erase(body: dict[str, Any]) -> Erase:
    check_keys(body, frozenset({"entry", "member", "keep"}), ERASE_KIND)
    target = body.get("entry")
    if not isinstance(target, CID):
        raise InvalidData("bad_reference", f"{ERASE_KIND}.entry must be a link to the entry to erase")
    keep = body.get("keep", [])
    if (not isinstance(keep, list) or len(keep) > MAX_KEPT_LINKS or not all(isinstance(c, CID) for c in keep)
            or [c.raw for c in keep] != sorted({c.raw for c in keep})):
        raise InvalidData("bad_reference", f"keep: at most {MAX_KEPT_LINKS} links, sorted by their binary CID, "
                          "no duplicates")
    return Erase(target, member_link(body, ERASE_KIND), tuple(keep))


def erasable(target: Entry, ledger: CID, author: bytes, seq: int) -> str | None:
    """Why the entry at `seq` of `author`'s chain in `ledger` may not erase `target`, from headers alone; None
    when it may."""
    if target.ledger_id != ledger:
        return "an erasure names an entry of its own ledger"
    if target.header.author != author or target.seq >= seq:
        return "an erasure names an earlier entry of its own key's chain: only the key that wrote it erases it"
    if target.seq == 1:
        return "the first entry of a chain is not erased: it names what authorizes its key"
    if target.kind == ERASE_KIND or (needs_membership(target.kind) and target.kind not in ERASABLE_KINDS):
        return f"a {target.kind} is not erased: the ledger's membership, keys, rules or accounts rest on it"
    return None


def kept_links(target: Entry) -> list[CID]:
    """What an erasure of `target` names as `keep`: its payload's `rules` links (§18.4), sorted."""
    links = (target.body or {}).get("rules", [])
    if not isinstance(links, list):
        return []
    return sorted({c.raw: c for c in links if isinstance(c, CID)}.values(), key=lambda c: c.raw)[:MAX_KEPT_LINKS]
