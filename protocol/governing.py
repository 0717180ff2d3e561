"""Governance and pledges in a state (SPEC.md §18; the logic is in protocol/governance.py and
protocol/pledges.py): the rules in effect at an entry, the checks of motions, ballots, closings, pledges and
payments against what they name, and what the state shows of them."""

from __future__ import annotations

from collections import defaultdict

from .cid import CID
from .contributions import CORRECTED, REJECTED, Contribution
from .errors import InvalidData
from .governance import (
    Ballot,
    Closing,
    Motion,
    MotionState,
    RulesInEffect,
    check_ballot,
    check_closer,
    motion_states,
    passed,
    rules_heads,
)
from .keys import take_key_link
from .pledges import Payment, Pledge, PledgeState, check_payment, check_pledge, payment_day
from .prepared import Prepared, latest_of
from .references import split
from .rules import Rules
from .score_voting import count
from .valueflows import EVENT_KIND, Event, parse_event


def rules_in_effect(node: Prepared, closings: frozenset[bytes], ledger: CID, genesis: Rules,
                    book: RulesInEffect) -> None:
    """The closings in the entry's causal past (`closings`: its dependencies', merged) and the rules they give it;
    an event is read again under amended rules (a unit they added, log_for_others)."""
    node.closings = closings
    node.rules = book.rules(closings)
    entry = node.entry
    if node.rules is not genesis and entry.kind == EVENT_KIND and entry.body is not None:
        try:
            body, _ = split(entry.body)
            body, _ = take_key_link(body)
            node.record, node.error = parse_event(body, author=node.agent, ledger=ledger, rules=node.rules), None
        except InvalidData as exc:
            node.record, node.error = None, exc


def govern(node: Prepared, nodes: dict[bytes, Prepared], book: RulesInEffect) -> None:
    """Checks of motions, ballots, closings, pledges and payments against what they name."""
    for link in node.refs.rules:
        if not isinstance(nodes[link.raw].record, Closing) or nodes[link.raw].error is not None:
            raise InvalidData("bad_reference", "rules names the closing entries (gov.close) of amendments")
    record, entry = node.record, node.entry
    rules = node.rules
    assert rules is not None
    if isinstance(record, Motion) and record.amend is not None:
        record.amend.apply(rules)
    elif isinstance(record, Ballot | Closing):
        target = nodes[record.motion.raw]
        motion = target.record
        if not isinstance(motion, Motion) or target.error is not None:
            raise InvalidData("bad_reference", "motion names a motion (a valid gov.motion)")
        if book.closes(node.closings, record.motion.raw):
            raise InvalidData("motion_closed", "this motion was closed before this entry was made")
        voting = (target.rules or rules).voting
        timed = book.genesis.version > 1  # the closing time binds everyone, ballots too (SPEC.md §18.1)
        if isinstance(record, Ballot):
            check_ballot(record, motion, voting, ts=entry.header.ts, timed=timed)
            return
        check_closer(motion, target.agent, node.agent, entry.header.ts, timed=timed)
        latest: dict[str, tuple[int, Ballot]] = {}
        for link in record.ballots:
            ballot = nodes[link.raw]
            if (not isinstance(ballot.record, Ballot) or ballot.error is not None
                    or ballot.record.motion != record.motion):
                raise InvalidData("bad_reference", "ballots names valid ballots (gov.vote) of this motion")
            voter, seq = ballot.agent, latest_of(ballot)
            if voter not in latest or seq > latest[voter][0]:
                latest[voter] = (seq, ballot.record)
        tally = count(motion.options, voting, [latest[v][1].scores for v in sorted(latest)],
                      totals_first=book.genesis.version > 1)
        book.add(entry.id.raw, record.motion.raw, motion.amend if passed(motion, tally) else None)
        node.closings = node.closings | {entry.id.raw}
    elif isinstance(record, Pledge):
        check_pledge(record, rules)
    elif isinstance(record, Event) and record.fulfills is not None:
        target = nodes[record.fulfills.raw]
        if not isinstance(target.record, Pledge) or target.error is not None:
            raise InvalidData("unknown_pledge", "fulfills names no pledge (vf.commitment) of this ledger")
        check_payment(target.record, action=record.action, provider=record.provider, receiver=record.receiver,
                      unit=record.quantity.unit)


def governance_of(
    valid: list[Prepared], book: RulesInEffect, contributions: tuple[Contribution, ...]
) -> tuple[tuple[MotionState, ...], tuple[PledgeState, ...], tuple[CID, ...], tuple[CID, ...], frozenset[bytes]]:
    """Motions, pledges, the applied amendments, the rules heads, and every valid closing."""
    closings = [n for n in valid if isinstance(n.record, Closing)]
    everything = frozenset(n.entry.id.raw for n in closings)
    applied = book.applied(everything)
    motions = motion_states(
        [(n.entry.id, n.agent, n.entry.header.ts, n.record, (n.rules or book.genesis).voting)
         for n in valid if isinstance(n.record, Motion)],
        # A voter's latest ballot is their last in the canonical order, from whichever of their keys (§19.4).
        [(n.entry.id, n.agent, n.entry.seq, n.record) for n in valid if isinstance(n.record, Ballot)],
        [(n.entry.id, n.agent, n.entry.header.ts, n.record) for n in closings if isinstance(n.record, Closing)],
        frozenset(applied),
        book.genesis.version > 1,
    )
    amending = {m.id.raw for m in motions if m.motion.amend is not None}
    heads = rules_heads((n.entry.id, n.closings) for n in closings
                        if isinstance(n.record, Closing) and n.record.motion.raw in amending)
    paid: dict[bytes, list[Payment]] = defaultdict(list)
    for c in contributions:
        if c.event.fulfills is not None and c.status not in (REJECTED, CORRECTED):
            day = payment_day(c.event.point, c.ts, utc=book.genesis.version > 1)
            paid[c.event.fulfills.raw].append(Payment(c.id, day, c.event.quantity.value))
    pledges = tuple(
        PledgeState(n.entry.id, n.agent, n.entry.header.ts, n.record,
                    tuple(sorted(paid[n.entry.id.raw], key=lambda p: (p.day, p.id.raw))))
        for n in valid if isinstance(n.record, Pledge)
    )
    return motions, pledges, tuple(CID(raw) for raw in applied), heads, everything
