"""Building governance entries and pledges for a local member, checked against the state first.

Shared by the CLI (no node running) and the API (a node running), like protocol/ledger_ops.py:
each function takes the ledger's current state and what the member asked for and returns
the AppendRequest to make, or raises the code the member sees. Every entry names the
closings of the amendments this node applied (`rules`), so it is checked under the same
rules on every node (SPEC.md §18.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from protocol import CID, InvalidData, LocalError
from protocol.governance import (
    CLOSE_KIND,
    MOTION_KIND,
    VOTE_KIND,
    Amendment,
    MotionState,
    check_ballot,
    check_closer,
    parse_ballot,
    parse_motion,
)
from protocol.ledger_ops import acknowledge, membership
from protocol.pledges import PLEDGE_KIND, check_pledge, parse_pledge
from protocol.rules import format_decimal, parse_decimal
from protocol.state import LedgerState
from protocol.writes import AppendRequest

DEFAULT_OPTIONS = ("yes", "no")  # an amendment motion's options when none are given: "yes" adopts it


def find_motion(state: LedgerState, motion: CID) -> MotionState:
    found = next((m for m in state.motions if m.id == motion), None)
    if found is None:
        raise LocalError("bad_reference", f"{motion} is not a motion in ledger {state.ledger}")
    return found


def create_motion(
    state: LedgerState,
    me: str,
    *,
    title: str,
    options: Sequence[str],
    ts: int,
    closes: str | None = None,
    amend: Mapping[str, Any] | None = None,
    note: str | None = None,
) -> AppendRequest:
    """A gov.motion. `amend` is a partial rules table (an amendment file); it must fit the rules now."""
    if not options and amend is not None:
        options = DEFAULT_OPTIONS
    body: dict[str, Any] = {"title": title.strip(), "options": [o.strip() for o in options],
                            "member": membership(state, me)}
    if closes is not None:
        body["closes"] = closes
    if note:
        body["note"] = note
    try:
        if amend is not None:
            amendment = Amendment.from_config(amend)
            amendment.apply(state.rules)
            body["amend"] = amendment.to_body()
        parse_motion(body)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, MOTION_KIND, acknowledge(state, body), ts)


def vote(state: LedgerState, me: str, motion: CID, scores: Mapping[str, int], ts: int) -> AppendRequest:
    """A gov.vote: a whole score per option; an option left out is blank. A later ballot replaces it."""
    found = find_motion(state, motion)
    if found.closed:
        raise LocalError("motion_closed", f"motion {motion} is closed")
    body: dict[str, Any] = {"motion": motion, "scores": dict(scores), "member": membership(state, me)}
    try:
        check_ballot(parse_ballot(body), found.motion, found.voting, ts=ts, timed=state.rules.version > 1)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, VOTE_KIND, acknowledge(state, body), ts)


def close_motion(state: LedgerState, me: str, motion: CID, ts: int) -> AppendRequest:
    """A gov.close listing the latest ballot of every voter this node knows."""
    found = find_motion(state, motion)
    if found.closed:
        raise LocalError("motion_closed", f"motion {motion} is already closed")
    try:
        check_closer(found.motion, found.author, me, ts, timed=state.rules.version > 1)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    ballots = sorted((b.id for b in found.counted), key=lambda c: c.raw)
    body: dict[str, Any] = {"motion": motion, "ballots": ballots, "member": membership(state, me)}
    return AppendRequest(state.ledger, CLOSE_KIND, acknowledge(state, body), ts)


def pledge(
    state: LedgerState,
    me: str,
    *,
    amount: object,
    unit: str,
    every: str,
    start: str,
    ts: int,
    per: str | None = None,
    basis: object | None = None,
    until: str | None = None,
    escalate: str | None = None,
    note: str | None = None,
) -> AppendRequest:
    """A vf.commitment: `amount` of `unit` (per `per` unit of a basis of `basis`) every period from `start`."""
    body: dict[str, Any] = {
        "action": "transfer", "provider": me, "receiver": str(state.ledger),
        "resourceQuantity": {"hasNumericalValue": format_decimal(parse_decimal(amount, "amount")), "hasUnit": unit},
        "every": every, "start": start, "member": membership(state, me),
    }
    if per is not None or basis is not None:
        body["per"] = per
        body["basis"] = None if basis is None else format_decimal(parse_decimal(basis, "basis"))
    if until is not None:
        body["until"] = until
    if escalate is not None:
        body["escalate"] = format_decimal(parse_decimal(parse_escalation(escalate), "escalate"))
    if note:
        body["note"] = note
    try:
        check_pledge(parse_pledge(body, author=me, ledger=state.ledger), state.rules)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, PLEDGE_KIND, acknowledge(state, body), ts)


def parse_escalation(text: str) -> str:
    """`+0.05/year`, `0.05/year` or `0.05`: the yearly step of the rate, as a decimal string."""
    value = text.strip()
    if value.endswith("/year"):
        value = value[: -len("/year")]
    return value.removeprefix("+")
