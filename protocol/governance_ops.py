"""Building governance entries and pledges for a local member, checked against the state first.

Shared by the CLI (no node running) and the API (a node running), like protocol/ledger_ops.py:
each function takes the ledger's current state and what the member asked for and returns
the AppendRequest to make, or raises the code the member sees. Every entry names the
closings of the amendments this node applied (`rules`), so it is checked under the same
rules on every node (SPEC.md §18.3).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from protocol import CID, InvalidData, LocalError
from protocol.amendments import Amendment
from protocol.decimals import format_decimal, parse_decimal
from protocol.governance import (
    CLOSE_KIND,
    MOTION_KIND,
    VOTE_KIND,
    MotionState,
    check_ballot,
    check_closer,
    parse_ballot,
    parse_motion,
)
from protocol.ledger_ops import acknowledge, membership
from protocol.pledges import PLEDGE_KIND, check_pledge, parse_pledge
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


def close_motion(state: LedgerState, me: str, motion: CID, ts: int, *, early: bool = False) -> AppendRequest:
    """A gov.close listing the latest ballot of every voter this node knows. Before the closing time the members
    were told (which version 1 rules let the proposer do) only when the caller says `early`: the members then
    see it was closed early (`MotionState.closed_early`)."""
    found = find_motion(state, motion)
    if found.closed:
        raise LocalError("motion_closed", f"motion {motion} is already closed")
    try:
        check_closer(found.motion, found.author, me, ts, timed=state.rules.version > 1)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    if found.motion.closes is not None and ts < found.motion.closes and not early:
        raise LocalError("motion_not_closed", "the members were told this vote closes later; to close it before "
                         "then (version 1 rules let its proposer), say so: --early, or \"early\": true")
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
        key, step = parse_escalation(escalate, unit)
        body[key] = step
    if note:
        body["note"] = note
    try:
        check_pledge(parse_pledge(body, author=me, ledger=state.ledger), state.rules)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, PLEDGE_KIND, acknowledge(state, body), ts)


_PERCENT_A_YEAR: Final = re.compile(r"\+?\s*([0-9.]+)\s*%\s*(?:/\s*year)?")
_STEP_A_YEAR: Final = re.compile(r"\+?\s*([0-9.]+)\s*([a-z][a-z0-9_-]*)\s*/\s*year")


def parse_escalation(text: str, unit: str) -> tuple[str, str]:
    """How a pledge rises each year, said so it cannot be misread: `+5%/year` (indexation: 5 % a year,
    compounded) or `+0.05 euro/year` (a fixed step in the pledge's unit). Returns the payload key and its
    canonical decimal; a bare `+0.05/year` is `bad_pledge` (0.05 on 0.10 reads like 5 % but is +50 %)."""
    value = text.strip()
    if match := _PERCENT_A_YEAR.fullmatch(value):
        return "indexation", format_decimal(parse_decimal(match.group(1), "escalate"))
    if match := _STEP_A_YEAR.fullmatch(value):
        if match.group(2) != unit:
            raise LocalError("bad_pledge", f"escalate {text!r:.40}: the step is in the pledge's unit, {unit}: "
                             f"+{match.group(1)} {unit}/year")
        return "escalate", format_decimal(parse_decimal(match.group(1), "escalate"))
    raise LocalError("bad_pledge", f"escalate {text!r:.40}: say +5%/year (5 % a year, compounded) or "
                     f"+0.05 {unit}/year (a fixed step in {unit})")
