"""Whether an entry is valid where it applies (SPEC.md §16): membership, admissions, endorsements, corrections,
distributions and erasures checked against its causal past, which is applied before it."""

from __future__ import annotations

from .authorization import authorize, check_key_event
from .cid import CID
from .contributions import FINAL, contributions_of
from .distribution import DistributionRecord, Payout, RecordedDistribution, check_lines, conflicting, distribute
from .erasure import Erase, erasable
from .errors import InvalidData
from .governance import RulesInEffect, merge
from .governing import govern, rules_in_effect
from .keys import KeyEvent
from .prepared import NO_CLOSINGS, NO_MEMBERS, Prepared, union
from .rules import Rules
from .valueflows import Admission, Endorsement, Event, Leave, needs_membership


def recorded_distribution(node: Prepared) -> RecordedDistribution:
    assert node.payout is not None
    e = node.entry
    return RecordedDistribution(e.id, node.agent, e.header.ts, node.payout, e.seq, node.reach or {})


def apply_node(
    node: Prepared, nodes: dict[bytes, Prepared], ledger: CID, rules: Rules, founders: frozenset[str],
    book: RulesInEffect, unions: dict[tuple[frozenset[str], frozenset[str]], frozenset[str]] | None = None,
) -> None:
    """Apply an entry after its causal past. `unions`: the member sets united so far, by the two sets (a fold's,
    for one arrival): the sets of one chain and of what it names recur, so each pair is compared once."""
    entry = node.entry
    header = entry.header
    prev_raw = None if header.prev is None else header.prev.raw
    known: frozenset[str] = founders if entry.id.raw == ledger.raw else NO_MEMBERS
    gone: frozenset[str] = NO_MEMBERS
    closings = NO_CLOSINGS  # one shared empty set: most entries know no closing
    prev: Prepared | None = None
    # One pass over the dependencies: what they knew (most know what the others knew: the same sets, skipped
    # without a call), and the prev among them (its first, but an erased entry's).
    for dep in node.deps:
        raw = dep.raw
        d = nodes[raw]
        if raw == prev_raw:
            prev = d
        if d.known is not known:
            if not known:  # nothing known yet: theirs, as union would
                known = d.known
            elif unions is None:
                known = union(known, d.known)
            else:
                pair = (known, d.known)
                united = unions.get(pair)
                if united is None:
                    united = unions[pair] = union(known, d.known)
                known = united
        if d.gone is not gone:
            gone = union(gone, d.gone)
        if d.closings is not closings:
            closings = merge(closings, d.closings)
    if prev is None and prev_raw is not None:
        prev = nodes[prev_raw]
    node.left_chain = prev is not None and prev.left_chain
    node.known, node.gone = known, gone
    if prev is not None and prev.key_ok and node.key_link is None:  # what `authorize` finds for most entries
        node.key_ok, node.main, node.incepted = True, prev.main, prev.incepted
    else:
        try:
            authorize(node, nodes, prev)
        except InvalidData as exc:
            node.error = node.error or exc
    rules_in_effect(node, closings, ledger, rules, book)
    record = node.record
    if node.erased is not None or node.error is not None or (record is None and not needs_membership(entry.kind)):
        return
    author = node.agent
    try:
        _check_member(node, nodes, ledger, founders)
        # The kinds most entries are first; no record is of two of these types.
        if isinstance(record, Endorsement):
            target = nodes[record.event.raw]
            if not isinstance(target.record, Event) or target.error is not None:
                raise InvalidData("bad_reference", "an endorsement names a contribution (a valid vf.event)")
            if target.agent == author:
                raise InvalidData("self_endorsement", "members cannot endorse their own contributions")
            if not node.refs.rules:  # nothing for `govern` to check
                return
        elif isinstance(record, Event):
            if record.corrects is not None:
                target = nodes[record.corrects.raw]
                if not isinstance(target.record, Event) or target.error is not None or target.agent != author:
                    raise InvalidData("bad_correction", "a correction names an earlier vf.event of its own author")
            if record.fulfills is None and not node.refs.rules:  # nothing for `govern` to check
                return
        elif isinstance(record, Admission):
            _admit(node, record, nodes, node.rules or rules)
        elif isinstance(record, Leave):
            node.left_chain = True
            node.gone = gone | {author}
        elif isinstance(record, DistributionRecord):
            node.payout, node.reach = _recompute(record, nodes, ledger, node.rules or rules)
        elif isinstance(record, KeyEvent):
            check_key_event(node, record, nodes, node.rules or rules)
        elif isinstance(record, Erase):
            _erase(node, record, nodes)
        govern(node, nodes, book)
    except InvalidData as exc:
        node.error = exc


def _check_member(node: Prepared, nodes: dict[bytes, Prepared], ledger: CID, founders: frozenset[str]) -> None:
    entry = node.entry
    author = node.agent
    if node.left_chain or author in node.gone:
        raise InvalidData("not_member", f"{author} left this ledger earlier in their chain")
    record = node.record
    member = getattr(record, "member", None)
    if member is None:
        member = (entry.body or {}).get("member")
    assert isinstance(member, CID)
    proof = nodes[member.raw]
    if member.raw == ledger.raw:
        if author not in founders:
            raise InvalidData("not_member", f"{author} is not a founder; name the admission that made you a member")
        return
    admission = proof.record
    if not isinstance(admission, Admission) or proof.error is not None or admission.agent != author:
        raise InvalidData("not_member", "member must name an admission of the author (or the genesis, for founders)")
    if not proof.complete:
        raise InvalidData("not_member", "the named admission had not enough sponsors where it was made")


def _admit(node: Prepared, record: Admission, nodes: dict[bytes, Prepared], rules: Rules) -> None:
    author = node.agent
    current = node.known - node.gone
    if record.agent in current:
        raise InvalidData("already_member", f"{record.agent} is already a member")
    sponsors = {author}
    for cid in record.with_:
        other = nodes[cid.raw]
        if isinstance(other.record, Admission) and other.error is None and other.record.agent == record.agent:
            sponsors.add(other.agent)
    threshold = min(rules.validation.accept, len(current))
    if len(sponsors & current) >= threshold:
        node.complete = True
        node.known = node.known | {record.agent}


def _recompute(record: DistributionRecord, nodes: dict[bytes, Prepared], ledger: CID,
               rules: Rules) -> tuple[Payout, dict[str, int]]:
    """A distribution's payout from exactly what it counts: each named chain up to its named head.

    Its contributions' statuses come from the endorsements and corrections in those
    chains only, and the earlier distributions that reduce debt and once claims are
    the valid ones among them; so entries that arrive later cannot change it.
    """
    counted: list[Prepared] = []
    authors: set[bytes] = set()
    reach: dict[str, int] = {}
    for head in record.counted:
        chain: list[Prepared] = []
        node: Prepared | None = nodes[head.raw]
        assert node is not None
        if node.entry.header.author in authors:
            raise InvalidData("bad_reference", "counted names two heads of one chain")
        authors.add(node.entry.header.author)
        reach[node.entry.author] = node.entry.seq
        while node is not None:
            if node.error is None and node.record is not None:
                chain.append(node)
            prev = node.entry.header.prev
            node = None if prev is None else nodes[prev.raw]
        counted += reversed(chain)  # each chain in seq order: a correction comes after what it corrects
    final = [c for c in contributions_of(counted, rules, {}) if c.status == FINAL]
    seen = [recorded_distribution(n) for n in counted if n.payout is not None]
    clashing = conflicting(seen) if rules.version > 1 else frozenset()  # as the state it counts saw them
    earlier = [d.payout for d in seen if d.id.raw not in clashing]
    payout = distribute(rules, ledger, record.amount, record.unit, final, earlier, record.since, record.until)
    check_lines(record, payout)
    return payout, reach


def _erase(node: Prepared, record: Erase, nodes: dict[bytes, Prepared]) -> None:
    """A ledger.erase (SPEC.md §20): an earlier entry of its own chain, of an erasable kind, that no valid
    distribution in its causal past counted (that distribution would no longer recompute)."""
    target = nodes[record.entry.raw].entry
    why = erasable(target, node.entry.ledger_id, node.entry.header.author, node.entry.seq)
    if why is not None:
        raise InvalidData("not_erasable", why)
    seen: set[bytes] = set()
    stack = list(node.deps)
    while stack:
        raw = stack.pop().raw
        if raw in seen:
            continue
        seen.add(raw)
        past = nodes[raw]
        if past.payout is not None and past.error is None and (past.reach or {}).get(target.author, 0) >= target.seq:
            raise InvalidData("not_erasable", f"distribution {past.entry.id} counted it")
        stack.extend(past.deps)

