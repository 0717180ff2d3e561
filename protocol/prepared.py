"""An entry as the state's rules read it (`Prepared`): its payload parsed once, its dependencies listed, and
what its checks find where it applies (protocol/validity.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .cid import CID
from .distribution import DISTRIBUTION_KIND, DistributionRecord, Payout, parse_distribution
from .entry import GENESIS_KIND, Entry
from .erasure import ERASE_KIND, Erase, parse_erase
from .errors import InvalidData
from .governance import (
    CLOSE_KIND,
    MOTION_KIND,
    VOTE_KIND,
    Ballot,
    Closing,
    Motion,
    parse_ballot,
    parse_closing,
    parse_motion,
)
from .keys import KEY_KINDS, KEY_LINK, KeyEvent, key_event_deps, parse_key_event, take_key_link
from .pledges import PLEDGE_KIND, Pledge, parse_pledge
from .references import CITES_KEY, NO_REFERENCES, RULES_KEY, References, split
from .rules import Rules
from .valueflows import (
    ABOUT_KIND,
    ADMIT_KIND,
    ENDORSE_KIND,
    EVENT_KIND,
    LEAVE_KIND,
    About,
    Admission,
    Endorsement,
    Event,
    Leave,
    needs_membership,
    parse_about,
    parse_admission,
    parse_endorsement,
    parse_event,
    parse_leave,
)

NO_MEMBERS: Final[frozenset[str]] = frozenset()
_Governed = Motion | Ballot | Closing | Pledge
NO_CLOSINGS: Final[frozenset[bytes]] = frozenset()


@dataclass(slots=True)
class Prepared:
    entry: Entry
    record: Event | Endorsement | Admission | Leave | About | DistributionRecord | _Governed | KeyEvent | Erase | None \
        = None
    agent: str = ""  # the identity the entry's key writes as (SPEC.md §19); its author's did:key by default
    deps: tuple[CID, ...] = ()
    error: InvalidData | None = None
    known: frozenset[str] = NO_MEMBERS  # members admitted in this entry's causal past (and itself)
    gone: frozenset[str] = NO_MEMBERS  # members who left in its causal past
    left_chain: bool = False  # its author left at or before this entry in their own chain
    complete: bool = False  # an admission that completed at this entry
    payout: Payout | None = None  # a valid distribution's recomputed payout
    reach: Mapping[str, int] | None = None  # a distribution's counted chains: author -> seq of the named head
    rules: Rules | None = None  # the rules in effect at this entry (genesis rules + amendments in its past)
    closings: frozenset[bytes] = NO_CLOSINGS  # valid gov.close entries in its causal past (and itself)
    refs: References = NO_REFERENCES  # its `rules` and `cites` links (protocol/references.py)
    key_link: CID | None = None  # what authorizes its key for `agent`, on a chain's first entry (§19)
    key_ok: bool = True  # its key may write as `agent` here
    main: bool = False  # its key is its identity's inception, rotated-in or recovered key (not a device)
    incepted: bool = False  # its chain holds a valid key.incept or key.rotate at or before it
    erased: CID | None = None  # the valid ledger.erase that erased its payload (SPEC.md §20)
    pos: int = 0  # its place in the canonical order: the later of two entries of one identity is the latest
    #: a fold's (protocol/fold.py) while it places the entry: its row and its dependencies' rows (-1: not held yet),
    #: each id looked up once
    row: int = -1
    dep_rows: list[int] | None = None


def union(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    # Reuse a set when it already holds the other: most entries know what their prev knew (the same set, most
    # often: no need to compare them member by member).
    if a is b or a >= b:
        return a
    if b >= a:
        return b
    return a | b


def is_ignored(entry: Entry) -> bool:
    return not needs_membership(entry.kind) and entry.kind != GENESIS_KIND


def prepare(entry: Entry, ledger: CID, rules: Rules, agent: str) -> Prepared:
    """Parse the payload and list the entry's dependencies."""
    node = Prepared(entry, None, agent)  # positional: keywords cost more, once per entry of a fold
    header = entry.header
    prev = header.prev
    deps: list[CID] = [] if prev is None else [prev]
    kind = header.kind
    if kind != EVENT_KIND and kind != ENDORSE_KIND and (kind == GENESIS_KIND or not needs_membership(kind)):
        node.deps = tuple(deps)
        return node
    body = entry.body or {}
    try:
        if entry.body is None:
            raise InvalidData("bad_payload", "the payload of this entry was erased")
        if RULES_KEY in body or CITES_KEY in body:  # most payloads have neither (nor a key link): no calls for them
            body, node.refs = split(body)
            deps += node.refs.rules  # amendments it was written under; `cites` are never dependencies
        if KEY_LINK in body:
            body, node.key_link = take_key_link(body)
            if node.key_link is not None:
                deps.append(node.key_link)
        if kind == EVENT_KIND:
            # Its links are dependencies even when the genesis rules refuse it: amended rules may accept it.
            try:
                event = node.record = parse_event(body, author=agent, ledger=ledger, rules=rules)
            except InvalidData:
                for link in (body.get("member"), body.get("corrects"), body.get("fulfills")):
                    if isinstance(link, CID):
                        deps.append(link)
                raise
            deps.append(event.member)  # the links it parsed are those very values
            if event.corrects is not None:
                deps.append(event.corrects)
            if event.fulfills is not None:
                deps.append(event.fulfills)
        elif kind == ENDORSE_KIND:
            endorsement = parse_endorsement(body)
            node.record = endorsement
            deps += [endorsement.member, endorsement.event]
        elif kind == ADMIT_KIND:
            admission = parse_admission(body, ledger)
            node.record = admission
            deps += [admission.member, *admission.with_]
        elif kind == LEAVE_KIND:
            leave = parse_leave(body)
            node.record = leave
            deps.append(leave.member)
        elif kind == ABOUT_KIND:
            about = parse_about(body)
            node.record = about
            deps.append(about.member)
        elif kind == DISTRIBUTION_KIND:
            distribution = parse_distribution(body, ledger=ledger)
            node.record = distribution
            deps += [distribution.member, *distribution.counted]  # it waits for every chain it counts
        elif kind in _GOVERNANCE_KINDS:
            governed = _parse_governed(kind, body, agent, ledger)
            node.record = governed
            deps += _governance_deps(governed)
        elif kind in KEY_KINDS:
            key_event = parse_key_event(kind, body)
            node.record = key_event
            deps += key_event_deps(key_event)
        elif kind == ERASE_KIND:
            erase = parse_erase(body)
            node.record = erase
            deps += [erase.member, erase.entry, *erase.keep]
        else:
            # A membership kind this version does not interpret (later issues add them):
            # it still needs its author's membership to be valid.
            member = body.get("member")
            if not isinstance(member, CID):
                raise InvalidData("not_member", f"{kind} must name the author's admission as member")
            deps.append(member)
    except InvalidData as exc:
        node.error = exc
    # Most name each entry once: told by their bytes (hashed once each), not by CIDs' hash and equality.
    node.deps = tuple(deps) if _distinct(deps) else tuple(dict.fromkeys(deps))
    return node


def _distinct(deps: list[CID]) -> bool:
    """No two name one entry; up to three (most entries) compared pairwise, without a set made."""
    n = len(deps)
    if n < 2:
        return True
    if n == 2:
        return deps[0].raw != deps[1].raw
    if n == 3:
        a, b, c = deps[0].raw, deps[1].raw, deps[2].raw
        return a != b and a != c and b != c
    return len({d.raw for d in deps}) == n


def latest_of(node: Prepared) -> int:
    """Orders one identity's entries, latest last: by canonical position (§19.3), then seq. Within one
    chain both agree; protocol/fold.py leaves `pos` at 0 (it folds only ledgers of one key per
    identity), so there it is the seq."""
    return node.pos << 53 | node.entry.seq


_GOVERNANCE_KINDS: Final = frozenset({MOTION_KIND, VOTE_KIND, CLOSE_KIND, PLEDGE_KIND})


def _parse_governed(kind: str, body: dict[str, Any], author: str, ledger: CID) -> _Governed:
    if kind == MOTION_KIND:
        return parse_motion(body)
    if kind == VOTE_KIND:
        return parse_ballot(body)
    if kind == CLOSE_KIND:
        return parse_closing(body)
    return parse_pledge(body, author=author, ledger=ledger)


def _governance_deps(record: _Governed) -> list[CID]:
    if isinstance(record, Ballot):
        return [record.member, record.motion]
    if isinstance(record, Closing):
        return [record.member, record.motion, *record.ballots]
    return [record.member]

