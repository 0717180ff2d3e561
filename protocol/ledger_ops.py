"""Building the ledger's entries for a local member, checked against the state first.

Shared by the CLI (no node running) and the API (a node running): each function
takes the ledger's current state and what the member asked for, and returns the
AppendRequest to make, or raises the code the member sees. Nothing is appended
when a check fails. The state machine checks the same rules again when the
entry arrives anywhere (protocol/state.py).
"""

from __future__ import annotations

from typing import Any

from protocol import CID, MAX_PAYLOAD_BYTES, InvalidData, LocalError, dagcbor, references
from protocol.amounts import parse_amount, parse_day
from protocol.decimals import format_decimal, parse_decimal
from protocol.distribution import DISTRIBUTION_KIND, distribute, distribution_body, parse_distribution
from protocol.entry import Entry
from protocol.erasure import ERASE_KIND, erasable, kept_links, parse_erase
from protocol.names import check_not_confusable, normalize
from protocol.payouts import Payout
from protocol.pledges import check_payment
from protocol.state import ERASED, FINAL, LedgerState
from protocol.valueflows import (
    ABOUT_KIND,
    ADMIT_KIND,
    EFFORT_ACTIONS,
    ENDORSE_KIND,
    EVENT_KIND,
    LEAVE_KIND,
    MAX_NAME_CHARS,
    Event,
    parse_about,
    parse_admission,
    parse_endorsement,
    parse_event,
    parse_leave,
)
from protocol.writes import AppendRequest


def membership(state: LedgerState, me: str) -> CID:
    """What a new entry of `me` names as `member`: the genesis (founders) or their admission."""
    proof = state.admissions.get(me)
    if proof is not None:
        return proof
    if me in state.left:
        raise LocalError("not_member", f"you left ledger {state.ledger}")
    raise LocalError("not_member", f"you are not a member of ledger {state.ledger} (yet)")


def acknowledge(state: LedgerState, body: dict[str, Any], *, cites: tuple[CID, ...] = ()) -> dict[str, Any]:
    """`body` naming the closings of the amendments the state knows (`rules`), so that the entry is checked
    under the rules this node applied, and citing `cites` (SPEC.md §18.4, §18.6)."""
    return references.add(body, rules=state.rules_heads, cites=cites)


def check_fulfills(state: LedgerState, event: Event) -> None:
    """A payment names a pledge of this ledger and is a transfer of its unit from its pledger to the ledger."""
    pledge = next((p for p in state.pledges if p.id == event.fulfills), None)
    if pledge is None:
        raise LocalError("unknown_pledge", f"{event.fulfills} is not a pledge in ledger {state.ledger}")
    try:
        check_payment(pledge.pledge, action=event.action, provider=event.provider, receiver=event.receiver,
                      unit=event.quantity.unit)
    except InvalidData as exc:
        raise LocalError.of(exc) from None


def admit(state: LedgerState, me: str, agent: str, ts: int) -> AppendRequest:
    if agent in state.members:
        raise LocalError("already_member", f"{agent} is already a member")
    body: dict[str, Any] = {"agent": agent, "member": membership(state, me)}
    named = [c for c in state.sponsorships.get(agent, ()) if c is not None]
    if named:
        body["with"] = named
    parse_admission(body, state.ledger)
    return AppendRequest(state.ledger, ADMIT_KIND, acknowledge(state, body), ts)


def leave(state: LedgerState, me: str, ts: int) -> AppendRequest:
    body = {"member": membership(state, me)}
    parse_leave(body)
    return AppendRequest(state.ledger, LEAVE_KIND, body, ts)


def about(state: LedgerState, me: str, name: str, ts: int) -> AppendRequest:
    """A member.about: the name the other members see for `me` in this ledger (the latest one counts); NFC,
    trimmed, and not one that reads as another member's (`confusable_name`)."""
    if len(name) > MAX_NAME_CHARS:  # counted as given (as the API's schema counts), then trimmed
        raise LocalError("bad_field", f"name must be text of 1 to {MAX_NAME_CHARS} characters")
    body: dict[str, Any] = {"name": normalize(name), "member": membership(state, me)}
    try:
        parse_about(body)
        check_not_confusable(body["name"], me, state.names)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, ABOUT_KIND, body, ts)


def erase(state: LedgerState, me: str, target: Entry, key: bytes, ts: int) -> AppendRequest:
    """A ledger.erase of `target` (SPEC.md §20), written by `key`, the key that wrote it: its payload is dropped
    by every node that applies the erasure, and it counts for nothing."""
    if state.status.get(target.id.raw) == ERASED:
        raise LocalError("not_erasable", f"{target.id} is erased already")
    why = erasable(target, state.ledger, key, target.seq + 1)  # a later entry of this chain writes it
    if why is not None:
        raise LocalError("not_erasable", why)
    for d in (*state.distributions, *state.conflicting):
        if d.reach.get(target.author, 0) >= target.seq:
            raise LocalError("not_erasable", f"distribution {d.id} counted {target.id}: erasing it would leave "
                             "that distribution unrecomputable")
    body: dict[str, Any] = {"entry": target.id, "member": membership(state, me)}
    keep = kept_links(target)
    if keep:
        body["keep"] = keep
    parse_erase(body)
    return AppendRequest(state.ledger, ERASE_KIND, body, ts)


def contribute(
    state: LedgerState,
    me: str,
    *,
    action: str,
    quantity: str | int,
    unit: str,
    ts: int,
    resource: str | None = None,
    provider: str | None = None,
    receiver: str | None = None,
    at: str | None = None,
    start: str | None = None,
    end: str | None = None,
    note: str | None = None,
    corrects: CID | None = None,
    fulfills: CID | None = None,
    cites: tuple[CID, ...] = (),
) -> AppendRequest:
    """A vf.event: effortQuantity for work and use, resourceQuantity otherwise. `fulfills` names a pledge it
    pays (a transfer to the ledger), `cites` entries of other ledgers (SPEC.md §18)."""
    value = format_decimal(parse_decimal(quantity, "quantity"))
    key = "effortQuantity" if action in EFFORT_ACTIONS else "resourceQuantity"
    body: dict[str, Any] = {
        "action": action,
        key: {"hasNumericalValue": value, "hasUnit": unit},
        "member": membership(state, me),
    }
    for name, item in (("provider", provider), ("receiver", receiver), ("hasPointInTime", at),
                       ("hasBeginning", start), ("hasEnd", end), ("note", note)):
        if item is not None:
            body[name] = item
    if resource is not None:
        body["resourceClassifiedAs"] = [resource]
    if corrects is not None:
        target = state.contribution(corrects)
        if target is None or target.author != me:
            raise LocalError("bad_correction", f"{corrects} is not a contribution of yours in this ledger")
        body["corrects"] = corrects
    if fulfills is not None:
        body["fulfills"] = fulfills
    event = parse_event(body, author=me, ledger=state.ledger, rules=state.rules)
    if fulfills is not None:
        check_fulfills(state, event)
    return AppendRequest(state.ledger, EVENT_KIND, acknowledge(state, body, cites=cites), ts)


def endorse(state: LedgerState, me: str, event: CID, *, accept: bool, note: str | None, ts: int) -> AppendRequest:
    target = state.contribution(event)
    if target is None:
        raise LocalError("not_contribution", f"{event} is not a contribution in ledger {state.ledger}")
    if target.author == me:
        raise LocalError("self_endorsement", "you cannot endorse your own contribution")
    if me in (target.accepts if accept else target.rejects):
        verdict = "accepted" if accept else "rejected"
        raise LocalError("duplicate_endorsement", f"you have already {verdict} {event}")
    body: dict[str, Any] = {"event": event, "verdict": "accept" if accept else "reject",
                            "member": membership(state, me)}
    if note:
        body["note"] = note
    try:
        parse_endorsement(body)
    except InvalidData as exc:
        raise LocalError.of(exc) from None
    return AppendRequest(state.ledger, ENDORSE_KIND, body, ts)


def preview_distribution(
    state: LedgerState, *, amount: object, unit: str, since: str | None = None, until: str | None = None
) -> Payout:
    """The ledger's value equation over its final contributions now (SPEC.md §17); nothing is written."""
    if unit not in state.rules.units:
        units = ", ".join(state.rules.units)
        raise LocalError("unknown_unit", f"{unit!r:.40} is not one of this ledger's units: {units}")
    value = parse_amount(amount, unit)
    start = None if since is None else parse_day(since, "since")
    end = None if until is None else parse_day(until, "until")
    final = list(state.contributions.of_status(FINAL))
    return distribute(state.rules, state.ledger, value, unit, final, [d.payout for d in state.distributions],
                      start, end)


def record_distribution(state: LedgerState, me: str, payout: Payout, ts: int) -> AppendRequest:
    """A `ledger.distribution` entry of `payout`, counting every chain of the state up to its head."""
    body = distribution_body(payout, state.heads, membership(state, me))
    parse_distribution(body, ledger=state.ledger)
    size = len(dagcbor.encode(body))
    if size > MAX_PAYLOAD_BYTES:
        raise LocalError(
            "oversize", f"this distribution ({len(payout.lines)} lines, {len(state.heads)} chains counted) takes "
            f"{size} bytes, more than one entry holds ({MAX_PAYLOAD_BYTES})"
        )
    return AppendRequest(state.ledger, DISTRIBUTION_KIND, body, ts)

